"""Measure a password-guessing flood against a real Daphne.

    python -m bench.login_flood [--attempts 200] [--project DIR]

Starts Daphne (production settings, so Django's real PBKDF2 hasher) on a fresh SQLite
database of the project in DIR (default: this checkout; give an older checkout, e.g.
from `git archive`, for a before figure), makes one user, then sends wrong passwords for
that user from one address, one after another, and prints the wall time, the status
codes, and the server's CPU time per attempt beside the CPU time of one password hash.
Not a test: it asserts nothing (the limits are tested in accounts/tests/).
"""

import argparse
import collections
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from e2e import servers

HASH_COST_SCRIPT = (
    "import time\n"
    "from django.contrib.auth.hashers import make_password\n"
    "make_password('warm-up')\n"
    "start = time.process_time()\n"
    "for _ in range(5): make_password('x')\n"
    "print((time.process_time() - start) / 5)\n"
)


def manage(project: Path, env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--project", type=Path, default=servers.PROJECT_DIR)
    options = parser.parse_args()
    project = options.project.resolve()

    root = Path(tempfile.mkdtemp(prefix="login-flood-"))
    env = servers.server_env(
        DATABASE_URL=f"sqlite:///{root / 'db.sqlite3'}", STATIC_ROOT=str(root / "static")
    )
    manage(project, env, "collectstatic", "--noinput", "-v0")
    manage(project, env, "migrate", "--noinput", "-v0")
    manage(project, env, "shell", "-c", HASH_COST_SCRIPT)  # warms the page cache
    hash_seconds = float(manage(project, env, "shell", "-c", HASH_COST_SCRIPT).split()[-1])
    create = (
        "from django.contrib.auth.models import User\n"
        "User.objects.create_user('alice', password='Right-pw-0123456789')\n"
    )
    manage(project, env, "shell", "-c", create)

    port = servers.free_port()
    with (root / "daphne.log").open("wb") as log:
        daphne = subprocess.Popen(
            servers.daphne_command(port, "site_config.asgi:application"),
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            servers.wait_for(lambda: servers.port_open(port), 30, "daphne")
            client = servers.HttpClient(base, follow_redirects=False)
            page = client.get("/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert token, page.status
            headers = {"Origin": base, "Referer": base + "/accounts/login/"}
            form = {"csrfmiddlewaretoken": token[1], "username": "alice", "password": "wrong"}
            server = psutil.Process(daphne.pid)
            costs: dict[int, list[float]] = collections.defaultdict(list)  # status -> CPU s
            started = time.monotonic()
            for _ in range(options.attempts):
                cpu_before = sum(server.cpu_times()[:2])
                reply = client.request("POST", "/accounts/login/", form=form, headers=headers)
                costs[reply.status].append(sum(server.cpu_times()[:2]) - cpu_before)
            wall = time.monotonic() - started
        finally:
            daphne.terminate()
            daphne.wait(15)

    every = [cost for status_costs in costs.values() for cost in status_costs]
    # An attempt that hashed costs at least a hash; one refused before hashing, a page.
    hashed = sum(cost >= hash_seconds / 2 for cost in every)
    print(f"project: {project}")
    print(f"{options.attempts} wrong passwords for one user from one address: {wall:.1f} s")
    print(f"one password hash (PBKDF2, this machine): {hash_seconds * 1000:.0f} ms of CPU")
    print(f"server CPU: {sum(every):.2f} s in all")
    for status, status_costs in sorted(costs.items()):
        median = statistics.median(status_costs) * 1000
        print(f"  {status}: {len(status_costs)} answers, median {median:.1f} ms of CPU each")
    print(f"attempts that cost at least half a hash of CPU: {hashed}")


if __name__ == "__main__":
    main()
