"""The short tables: medians over rounds, from the JSON results."""

from collections import defaultdict
from statistics import median
from typing import Any

from bench import storm


def step_line(r: dict[str, Any]) -> str:
    flags = ""
    if not r["passed"]:
        flags += " FAIL"
    if r.get("loadgen_limited"):
        flags += " GEN-LIMITED"
    renders = f" renders/msg {r['renders_per_message']}" if "renders_per_message" in r else ""
    return (
        f"{r['server']:<10} N={r['n']:<5} offered {r['offered']:>8.0f}/s "
        f"got {r['deliveries_per_s']:>7}/s loss {r['loss']:<6} ooo {r['out_of_order']} "
        f"p50 {r['p50_ms']:>8.2f} p99 {r['p99_ms']:>8.2f} max {r['max_ms']:>8.2f} ms "
        f"cpu {r['server_cpu_us_per_delivery']:>7.2f} us/deliv ({r['server_cpu_share']:.2f} core) "
        f"gen {r['loadgen_cpu_share']:.2f} core{renders}{flags}"
    )


def _med(rows: list[dict[str, Any]], key: str) -> float:
    values = [row[key] for row in rows if key in row]
    return median(values) if values else float("nan")


def _fmt(value: float, digits: int = 1) -> str:
    if value != value:  # nan
        return "-"
    return f"{value:,.{digits}f}"


def render(results: dict[str, Any]) -> str:
    lines = [f"Fan-out benchmark, started {results['started']} ({results['duration_s']} s)"]
    if results.get("label"):
        lines.append(results["label"])
    fanout = results.get("fanout")
    if fanout:
        lines += ["", *fanout_table(fanout, results["settings"])]
    if results.get("idle"):
        lines += ["", *idle_table(results["idle"])]
        lines += ["", *storm.connect_table(results["idle"])]
    if results.get("held"):
        lines += ["", *held_table(results["held"])]
    if results.get("reconnect"):
        lines += ["", *storm.table(results["reconnect"])]
    return "\n".join(lines)


def fanout_table(fanout: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    by_key: dict[tuple[str, int, float], list[dict[str, Any]]] = defaultdict(list)
    for step in fanout["steps"]:
        by_key[(step["server"], step["n"], step["offered"])].append(step)
    knees = {
        (k["server"], k["n"]): f"{k['knee']:,.0f}" if k["knee"] else f"< {k['below']:,.0f}"
        for k in fanout.get("knees", [])
    }
    ref = settings["reference_rate"]
    rounds = settings["rounds"]
    out = [
        f"Load steps: median of {rounds} round(s); a step passes with zero loss, order kept "
        f"and p99 <= 100 ms. knee = highest rate held {settings['knee_hold']:.0f} s "
        f"(ladder: highest rate passed in the median round).",
        "",
        f"| server | N | knee (deliveries/s) | ladder knee | p50 / p99 ms at {ref:,.0f}/s "
        "| at ladder knee: deliveries/s, p50 / p99 / max ms | server CPU us/delivery "
        "| load-gen CPU | renders/msg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    seen = []
    for step in fanout["steps"]:
        key = (step["server"], step["n"])
        if key not in seen:
            seen.append(key)
    for server, n in seen:
        rates = sorted(rate for (s, nn, rate) in by_key if s == server and nn == n)
        passed_rates = [
            rate
            for rate in rates
            if sum(r["passed"] for r in by_key[(server, n, rate)])
            > len(by_key[(server, n, rate)]) / 2
        ]
        ladder = max(passed_rates, default=0.0)
        at_ref = by_key.get((server, n, ref), [])
        at_knee = by_key.get((server, n, ladder), [])
        renders = [
            r["renders_per_message"]
            for rr in by_key.values()
            for r in rr
            if r["server"] == server and r["n"] == n and "renders_per_message" in r
        ]
        gen = _med(at_knee, "loadgen_cpu_share")
        limited = any(r.get("loadgen_limited") for r in at_knee)
        out.append(
            f"| {server} | {n:,} | {knees.get((server, n), '-')} "
            f"| {_fmt(ladder, 0)} "
            f"| {_fmt(_med(at_ref, 'p50_ms'), 2)} / {_fmt(_med(at_ref, 'p99_ms'), 2)} "
            f"| {_fmt(_med(at_knee, 'deliveries_per_s'), 0)}: "
            f"{_fmt(_med(at_knee, 'p50_ms'), 2)} / {_fmt(_med(at_knee, 'p99_ms'), 2)} / "
            f"{_fmt(_med(at_knee, 'max_ms'), 1)} "
            f"| {_fmt(_med(at_knee, 'server_cpu_us_per_delivery'), 1)} "
            f"| {_fmt(gen, 2)}{' (limit)' if limited else ''} "
            f"| {_fmt(max(renders), 2) if renders else 'n/a'} |"
        )
    out += ["", "Connect phase (sockets joining the room, N growing):", ""]
    out.append(
        "| server | sockets | handshakes s | all in room s | quiet s | server CPU s "
        "| frames (presence) | MiB received |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for c in fanout["connects"]:
        out.append(
            f"| {c['server']} | {c['from']:,} to {c['to']:,} | {c['handshakes_s']} "
            f"| {c.get('barrier_s', 'never')} | {c['quiet_s']} | {c['server_cpu_s']} "
            f"| {c['other_frames']:,} | {c['bytes_received'] / 2**20:,.1f} |"
        )
    return out


def idle_table(idle: list[dict[str, Any]]) -> list[str]:
    out = [
        "| server | connect: sockets, s (per s) | all in room s | quiet s | "
        "held idle | RSS per idle socket KiB | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in idle:
        if "error" in r:
            out.append(f"| {r['server']} | {r['error']} | | | | | |")
            continue
        first = r["connects"][0]
        out.append(
            f"| {r['server']} | {first['to']:,} in {first['handshakes_s']} s "
            f"({first['connected_per_s']:,.0f}/s) | {first.get('barrier_s', 'never')} "
            f"| {first['quiet_s']} | {r['held']:,} | {r['rss_per_socket_kib']} "
            f"| {r['errors']} |"
        )
    return out


def held_table(held: list[dict[str, Any]]) -> list[str]:
    """The idle sockets held on one process (bench/measure.py `hold_idle`)."""
    out = [
        "Idle sockets held on one process (a fresh one each): RSS per idle socket, before "
        "and after returning freed heap (malloc_trim); /healthz every 0.1 s while held.",
        "",
        "| server | idle sockets (rooms) | opened in s | held | RSS per idle socket KiB "
        "| after trim | /healthz p50 / max ms (checks) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in held:
        if "error" in r:
            out.append(f"| {r['server']} | {r['error']} | | | | | | |")
            continue
        out.append(
            f"| {r['server']} | {r['sockets']:,} ({r['rooms']}) | {r['handshakes_s']} "
            f"| {r['held']:,} | {r['rss_per_socket_kib']} "
            f"| {r.get('rss_per_socket_kib_after_trim', '')} "
            f"| {r['healthz_p50_ms']} / {r['healthz_max_ms']} ({r['healthz_checks']}, "
            f"{r['healthz_failed']} failed) | {r['errors']} |"
        )
    return out
