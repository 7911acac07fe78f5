"""Log-in and sign-up limits, over the HTTP test client.

Log-ins: LOGIN_FAILURE_LIMIT failures for one username, or from one address, lock that
username or address out for LOGIN_COOLOFF_MINUTES; a locked-out attempt is answered 429
before any password is hashed (counted with a real hasher, accounts/tests/hashers.py).
Sign-ups: SIGNUPS_PER_HOUR per address. The test client's address is REMOTE_ADDR.
"""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY, get_user_model
from django.utils import timezone
from pytest_django.asserts import assertRedirects

from accounts.addresses import counted_as
from accounts.models import RecentSignUp
from accounts.tests.hashers import CountingHasher
from conftest import PASSWORD, HttpsClient

pytestmark = pytest.mark.django_db

LIMIT = 5
ATTACKER = "203.0.113.66"
ELSEWHERE = "198.51.100.20"
NEW_PASSWORD = "a-long-unusual-passphrase-42"


@pytest.fixture(autouse=True)
def limits(settings):
    """The production defaults, stated here so that the tests read on their own; and a
    hasher that counts (users are made after this, so their passwords use it)."""
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.SIGNUPS_PER_HOUR = 3
    settings.PASSWORD_HASHERS = ["accounts.tests.hashers.CountingHasher"]
    CountingHasher.hashes = 0


def log_in(client, username: str, password: str, address: str = ATTACKER, path: str = ""):
    return client.post(
        path or "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def wrong_password(client, username: str = "alice", address: str = ATTACKER):
    return log_in(client, username, "not-the-password", address)


def assert_refused_login(response, reason: str) -> str:
    assert response.status_code == 429, response.status_code
    page = response.content.decode()
    assert 'id="throttled"' in page
    assert 'data-action="login"' in page and f'data-reason="{reason}"' in page
    assert 900 - 60 < int(response["Retry-After"]) <= 900
    assert "Try again in 15 minutes" in page
    return page


def logged_in(client) -> bool:
    return SESSION_KEY in client.session


# Log-in: per account ---------------------------------------------------------------------


def test_the_fifth_wrong_password_locks_the_account_and_later_attempts_hash_nothing(
    client, alice, bob
) -> None:
    CountingHasher.hashes = 0
    for _ in range(LIMIT - 1):
        response = wrong_password(client)
        assert response.status_code == 200
        assert "Please enter a correct username and password." in response.content.decode()
    assert CountingHasher.hashes == LIMIT - 1  # each failure so far checked a password

    page = assert_refused_login(wrong_password(client), "account")
    assert "A wrong password was entered 5 times for “alice”" in page
    assert CountingHasher.hashes == LIMIT  # the fifth was checked, then locked out

    # Locked: no more hashing, whatever is sent, the right password included.
    assert_refused_login(wrong_password(client), "account")
    assert_refused_login(log_in(client, "alice", PASSWORD), "account")
    assert CountingHasher.hashes == LIMIT
    assert not logged_in(client)

    # Another account from another address is not affected.
    other = HttpsClient()
    assertRedirects(log_in(other, "bob", PASSWORD, address=ELSEWHERE), "/rooms/")
    assert logged_in(other)


def test_an_account_is_locked_whatever_address_the_guesses_come_from(client, alice) -> None:
    for attempt in range(LIMIT - 1):
        assert wrong_password(client, address=f"192.0.2.{attempt + 1}").status_code == 200
    assert_refused_login(wrong_password(client, address="192.0.2.99"), "account")

    honest = HttpsClient()
    assert_refused_login(log_in(honest, "alice", PASSWORD, address=ELSEWHERE), "account")
    assert not logged_in(honest)


def test_unknown_usernames_are_locked_out_too_without_the_dummy_hash(client) -> None:
    # Django hashes once for an unknown username (so that timing tells nothing); locked
    # out, even that is skipped.
    for _ in range(LIMIT):
        wrong_password(client, username="nobody")
    hashes = CountingHasher.hashes
    assert_refused_login(wrong_password(client, username="nobody"), "account")
    assert CountingHasher.hashes == hashes


# Log-in: per address --------------------------------------------------------------------


def test_an_address_is_locked_after_failures_for_many_accounts(client, alice, bob) -> None:
    for name in ["alice", "carol", "dave", "erin"]:
        assert wrong_password(client, username=name).status_code == 200
    page = assert_refused_login(wrong_password(client, username="frank"), "address")
    assert "There were 5 failed log-ins from your network address" in page

    # bob's account is fine, but not from that address.
    hashes = CountingHasher.hashes
    assert_refused_login(log_in(client, "bob", PASSWORD), "address")
    assert CountingHasher.hashes == hashes
    assertRedirects(log_in(HttpsClient(), "bob", PASSWORD, address=ELSEWHERE), "/rooms/")


def test_logging_in_to_ones_own_account_does_not_reset_an_addresss_count(
    client, alice, make_user
) -> None:
    """Else an attacker could guess at others' passwords forever, four at a time,
    logging in to an account of their own in between."""
    make_user("mallory")
    for name in ["alice", "bob", "carol", "dave"]:
        wrong_password(client, username=name)
    assertRedirects(log_in(HttpsClient(), "mallory", PASSWORD), "/rooms/")
    assert_refused_login(wrong_password(client, username="erin"), "address")


def test_behind_a_proxy_the_address_is_the_one_the_proxy_appended(client, settings, bob) -> None:
    """The leftmost X-Forwarded-For entries are the client's to write (and Daphne's
    --proxy-headers would take the leftmost); the rightmost is what our proxy saw."""
    settings.BEHIND_PROXY = True
    for attempt in range(LIMIT):
        response = client.post(
            "/accounts/login/",
            {"username": f"user{attempt}", "password": "wrong"},
            REMOTE_ADDR="10.0.0.1",  # the proxy
            HTTP_X_FORWARDED_FOR=f"192.0.2.{attempt}, {ATTACKER}",
        )
    assert_refused_login(response, "address")
    other_client = client.post(
        "/accounts/login/",
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR=f"{ATTACKER}, {ELSEWHERE}",
    )
    assertRedirects(other_client, "/rooms/")


# Log-in: the lockout ends, and the admin has it too --------------------------------------


def test_a_lockout_ends_once_the_failures_are_older_than_the_cool_off(client, alice) -> None:
    for _ in range(LIMIT):
        wrong_password(client)
    assert_refused_login(log_in(client, "alice", PASSWORD), "account")

    # Fifteen minutes later (the failures' time moved back rather than waiting).
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    assertRedirects(log_in(client, "alice", PASSWORD), "/rooms/")


def test_attempts_during_a_lockout_do_not_extend_it(client, alice) -> None:
    for _ in range(LIMIT):
        wrong_password(client)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=10))
    for _ in range(3):
        wrong_password(client)
    assert 240 < int(wrong_password(client)["Retry-After"]) <= 300


def test_the_admin_log_in_is_locked_out_the_same_way(client, make_user) -> None:
    make_user("root", is_staff=True, is_superuser=True)
    for _ in range(LIMIT - 1):
        response = log_in(client, "root", "wrong", path="/admin/login/")
        assert response.status_code == 200
    assert_refused_login(log_in(client, "root", "wrong", path="/admin/login/"), "account")
    hashes = CountingHasher.hashes
    assert_refused_login(log_in(client, "root", PASSWORD, path="/admin/login/"), "account")
    assert CountingHasher.hashes == hashes
    assert not logged_in(client)


# Sign-up ----------------------------------------------------------------------------------


def sign_up(client, username: str, address: str = ATTACKER):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        REMOTE_ADDR=address,
    )


def test_sign_ups_are_limited_per_address_per_hour(settings) -> None:
    for number in range(settings.SIGNUPS_PER_HOUR):
        assertRedirects(sign_up(HttpsClient(), f"newcomer{number}"), "/rooms/")

    hashes = CountingHasher.hashes
    response = sign_up(HttpsClient(), "one-too-many")
    assert response.status_code == 429
    page = response.content.decode()
    assert 'data-action="signup"' in page
    assert "3 accounts were created from your network address in the last hour" in page
    assert "Try again in 60 minutes" in page
    assert 3540 < int(response["Retry-After"]) <= 3600
    assert CountingHasher.hashes == hashes  # refused before the form was read
    assert not get_user_model().objects.filter(username="one-too-many").exists()
    # The page itself says so before anyone types a password.
    assert HttpsClient().get("/accounts/signup/", REMOTE_ADDR=ATTACKER).status_code == 429

    # Another address signs up as usual.
    assertRedirects(sign_up(HttpsClient(), "from-elsewhere", address=ELSEWHERE), "/rooms/")


def test_the_sign_up_limit_is_a_sliding_hour(settings) -> None:
    for number in range(settings.SIGNUPS_PER_HOUR):
        sign_up(HttpsClient(), f"newcomer{number}")
    assert sign_up(HttpsClient(), "later").status_code == 429

    oldest = RecentSignUp.objects.earliest("created_at")
    oldest.created_at = timezone.now() - timedelta(hours=1, seconds=1)
    oldest.save()
    assertRedirects(sign_up(HttpsClient(), "later"), "/rooms/")
    assert sign_up(HttpsClient(), "even-later").status_code == 429


def test_refused_sign_ups_do_not_count(settings) -> None:
    for _ in range(settings.SIGNUPS_PER_HOUR + 1):
        response = HttpsClient().post(
            "/accounts/signup/",
            {"username": "x", "password1": NEW_PASSWORD, "password2": "different"},
            REMOTE_ADDR=ATTACKER,
        )
        assert response.status_code == 200
    assertRedirects(sign_up(HttpsClient(), "newcomer"), "/rooms/")


def test_old_sign_ups_are_forgotten(settings) -> None:
    RecentSignUp.objects.create(address=ATTACKER, created_at=timezone.now() - timedelta(hours=2))
    assertRedirects(sign_up(HttpsClient(), "newcomer", address=ELSEWHERE), "/rooms/")
    assert list(RecentSignUp.objects.values_list("address", flat=True)) == [ELSEWHERE]


def test_ipv6_sign_ups_count_per_64_network(settings) -> None:
    for number in range(settings.SIGNUPS_PER_HOUR):
        address = f"2001:db8:1:2::{number + 1:x}"
        assertRedirects(sign_up(HttpsClient(), f"newcomer{number}", address=address), "/rooms/")
    assert sign_up(HttpsClient(), "same-network", address="2001:db8:1:2:ffff::1").status_code == 429
    assertRedirects(sign_up(HttpsClient(), "next-network", address="2001:db8:1:3::1"), "/rooms/")


# Addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:51234", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("[2001:db8:1:2::9]:443", "2001:db8:1:2::"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("not an address", None),
        ("", None),
    ],
)
def test_addresses_are_counted_per_ipv4_address_and_ipv6_64(address, counted) -> None:
    assert counted_as(address) == counted


def test_the_page_counts_in_words(client, settings) -> None:
    settings.SIGNUPS_PER_HOUR = 1
    assertRedirects(sign_up(HttpsClient(), "newcomer"), "/rooms/")
    page = sign_up(HttpsClient(), "another").content.decode()
    assert "1 account was created from your network address in the last hour" in page
