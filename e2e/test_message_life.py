"""A message's life in real browsers: edited, deleted, reacted to, replied to (issue 12).

Each change is made the way a person makes it (the message's Edit, Delete, React and
Reply controls, or their plain pages without JavaScript) and must reach every other open
page in place, live or after a reconnect, with no console errors, and with user text
shown as text wherever it appears (a reaction, an edit, a reply's quote).
"""

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from e2e import servers
from e2e.accessibility import ConsoleWatch, assert_no_axe_violations
from e2e.chat import (
    NO_JAVASCRIPT,
    PHONE,
    Chatter,
    SocketLink,
    expect_message,
    expect_socket,
    messages,
    screenshot,
    wait_until,
)

pytestmark = pytest.mark.e2e

# After a dropped socket comes back (the reconnect backoff is capped at 5 s).
RECOVERY_TIMEOUT_MS = 20_000

# Elements no user text may ever become (rooms/formatting.py makes only a, br, code, pre).
FOREIGN_ELEMENTS = ".message b, .message i, .message img, .message script, .message svg"


# What a person does to a message ---------------------------------------------------------


def message(page: Page, pk: int) -> Locator:
    return page.locator(f"#message-{pk}")


def message_id(page: Page, author: str, body: str) -> int:
    """The id of the message by `author` with exactly this text, once the page shows it."""
    expect_message(page, author, body)
    return next(m["id"] for m in messages(page) if m["author"] == author and m["body"] == body)


def post(person: Chatter, text: str, page: Page | None = None) -> int:
    """Send `text` from the composer; the new message's id (on the sender's page)."""
    page = page or person.page
    person.send(text, page)
    return message_id(page, person.username, text)


def open_action(page: Page, pk: int, action: str) -> Locator:
    """Click the message's Edit, React or Delete control; its panel, once the form is in it."""
    target = message(page, pk)
    address = page.url
    target.hover()  # (the actions show on hover; a click would reach them anyway)
    target.locator(f".message-{action}").click()
    panel = target.locator(".message-panel")
    expect(panel.locator("form").first).to_be_visible()
    assert page.url == address, "opening a message's panel changed the page's address"
    return panel


def start_reply(page: Page, pk: int) -> Locator:
    """Click the message's Reply; the composer's "Replying to" part, once it is there."""
    address = page.url
    message(page, pk).hover()
    message(page, pk).locator(".message-reply").click()
    answering = page.locator(f'input[name="reply_to"][value="{pk}"]')
    replying = page.locator("#composer .composer-reply").filter(has=answering)
    expect(replying).to_contain_text("Replying to")
    assert page.url == address, "starting a reply changed the page's address"
    return replying


def edit(page: Page, pk: int, text: str) -> None:
    panel = open_action(page, pk, "edit")
    panel.get_by_label("New text").fill(text)
    panel.get_by_role("button", name="Save").click()
    expect(message(page, pk).locator(".message-body")).to_have_text(text)


def react(page: Page, pk: int, emoji: str) -> None:
    """Pick `emoji` from the message's palette."""
    panel = open_action(page, pk, "react")
    panel.locator(".reaction-palette").get_by_role("button", name=emoji, exact=True).click()
    expect(panel).to_be_empty()  # the message came back without its picker


def react_with_text(page: Page, pk: int, text: str) -> None:
    panel = open_action(page, pk, "react")
    panel.get_by_label("Or type one").fill(text)
    panel.locator(".reaction-text").get_by_role("button", name="React").click()
    expect(panel).to_be_empty()


def reaction(page: Page, pk: int, emoji: str) -> Locator:
    assert '"' not in emoji and "\\" not in emoji, "(use reactions_shown for these)"
    return message(page, pk).locator(f'.reaction[data-emoji="{emoji}"]')


def reactions_shown(page: Page, pk: int) -> list[tuple[str, str, str | None]]:
    """(data-emoji, data-count, aria-pressed) of each of the message's reactions."""
    shown = (
        message(page, pk)
        .locator(".reaction")
        .evaluate_all("els => els.map(el => [el.dataset.emoji, el.dataset.count, el.ariaPressed])")
    )
    return [tuple(row) for row in shown]


def delete(page: Page, pk: int) -> None:
    """Delete -> "Delete this message?" in the message's panel -> Delete."""
    target = message(page, pk)
    panel = open_action(page, pk, "delete")
    expect(panel).to_contain_text("It will be removed for everyone")
    panel.get_by_role("button", name="Delete").click()
    expect(target.locator(".message-tombstone")).to_have_text("Message deleted")


def assert_each_message_once(page: Page) -> None:
    ids = page.locator("#chat-log [id]").evaluate_all("els => els.map(el => el.id)")
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    assert not repeated, f"ids shown more than once on {page.url}: {repeated}"


@pytest.fixture
def console() -> Iterator[ConsoleWatch]:
    """Console errors, warnings and uncaught exceptions of the contexts given to
    `.watch(context)`: the test fails with them at its end."""
    watch = ConsoleWatch()
    yield watch
    watch.assert_clean()


# Live, with JavaScript ------------------------------------------------------------------


def test_edit_delete_react_and_reply_reach_the_other_page_in_place(sign_up, room_slug, console):
    alice, bob = sign_up("alice"), sign_up("bob")
    page = alice.open_room(room_slug)  # (creates the room: a 404 first)
    bob.open_room(room_slug)
    console.watch(alice.context).watch(bob.context)
    bob.page.evaluate("window.__sameDocument = true")

    typo = post(alice, "Helo everyone", page)
    wrong = post(alice, "this was meant for another room", page)
    expect_message(bob.page, alice.username, "this was meant for another room")
    # Only the author is offered Edit, and Delete (Bob is not staff).
    for control in (".message-edit", ".message-delete"):
        expect(message(page, typo).locator(control)).to_be_visible()
        expect(message(bob.page, typo).locator(control)).to_be_hidden()

    # Edit: Edit -> the form in the message's panel -> Save.
    panel = open_action(page, typo, "edit")
    expect(panel.get_by_label("New text")).to_have_value("Helo everyone")
    panel.get_by_label("New text").fill("Hello everyone")
    panel.get_by_role("button", name="Save").click()
    for seen in (bob.page, page):
        shown = message(seen, typo)
        expect(shown.locator(".message-body")).to_have_text("Hello everyone")
        expect(shown).to_have_attribute("data-edited", re.compile(r"^\d{4}-\d\d-\d\dT"))
        expect(shown.locator(".message-edited")).to_have_text("(edited)")
        expect(shown.locator(".message-edited")).to_have_attribute("title", re.compile("^Edited "))
    expect(message(page, typo).locator(".message-panel")).to_be_empty()

    # Delete: asked in the message's panel first; then a tombstone in place everywhere.
    delete(page, wrong)
    tombstone = message(bob.page, wrong)
    expect(tombstone.locator(".message-tombstone")).to_have_text("Message deleted")
    expect(tombstone).to_have_attribute("data-deleted", "")
    expect(tombstone.locator(".message-body")).to_have_count(0)
    assert [m["id"] for m in messages(bob.page)] == [typo, wrong]  # in place, not moved

    # React: Bob picks 👍 from the palette; pressed on his page only.
    react(bob.page, typo, "👍")
    on_alices = reaction(page, typo, "👍")
    expect(on_alices).to_have_attribute("data-count", "1")
    expect(on_alices).to_have_attribute("aria-pressed", "false")
    expect(on_alices).to_have_attribute("title", bob.username)
    on_bobs = reaction(bob.page, typo, "👍")
    expect(on_bobs).to_have_attribute("aria-pressed", "true")
    expect(on_bobs.locator(".reaction-count")).to_have_text("1")
    # The pressed look is per viewer, from one rendering (base.html's rule, chat.css).
    background = "el => getComputedStyle(el).backgroundColor"
    assert on_bobs.evaluate(background) != on_alices.evaluate(background)
    # Bob clicks it again: taken back, on both pages.
    on_bobs.click()
    for seen in (page, bob.page):
        expect(message(seen, typo).locator(".reaction")).to_have_count(0)

    # A typed reaction.
    react_with_text(bob.page, typo, "+1")
    assert reactions_shown(bob.page, typo) == [("+1", "1", "true")]
    expect(reaction(page, typo, "+1")).to_have_attribute("data-count", "1")
    assert reactions_shown(page, typo) == [("+1", "1", "false")]

    # Reply: the composer says what it answers; the reply quotes it, linked.
    replying = start_reply(bob.page, typo)
    expect(replying.locator(".message-quote")).to_contain_text("Hello everyone")
    bob.send("Hello Alice!")
    expect(replying).to_have_count(0)  # the composer is fresh again
    permalink = f"/rooms/{room_slug}/messages/{typo}/#message-{typo}"
    for seen in (page, bob.page):
        expect_message(seen, bob.username, "Hello Alice!")
        reply = seen.locator(f'.message[data-author="{bob.username}"]')
        quote = reply.locator(".message-quote a")
        expect(quote).to_have_attribute("href", permalink)
        expect(quote.locator(".message-quote-author")).to_have_text(alice.username)
        expect(quote.locator(".message-quote-text")).to_have_text("Hello everyone")
        assert_each_message_once(seen)
    # The quote follows its original: deleted, its text leaves the reply too.
    delete(page, typo)
    for seen in (page, bob.page):
        reply = seen.locator(f'.message[data-author="{bob.username}"]')
        expect(reply.locator(".message-quote")).to_have_text("The original message was deleted.")
        expect(reply.locator(".message-body")).to_have_text("Hello Alice!")
    assert bob.page.evaluate("window.__sameDocument") is True
    assert alice.dialogs == [] and bob.dialogs == []


def test_an_edit_being_typed_survives_a_reaction_to_its_message(sign_up, room_slug):
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    pk = post(alice, "see you at 5")
    open_action(alice.page, pk, "edit").get_by_label("New text").fill("see you at 6, not 5")
    react(bob.page, pk, "👍")
    expect(reaction(alice.page, pk, "👍")).to_have_attribute("data-count", "1")
    # (Once the reaction is shown, the push was swapped in: what it did is done.)
    field = message(alice.page, pk).locator(".edit-form textarea")
    assert field.count() == 1 and field.input_value() == "see you at 6, not 5"


def test_a_burst_of_reactions_ends_with_the_same_count_everywhere(
    room_with_history, make_users, log_in, server_db, console
):
    room = room_with_history(1, people=("author",))
    reactors = make_users("r1", "r2", "r3", "r4", "r5")
    author = log_in(room.owner)
    people = [log_in(account) for account in reactors]
    target = room.message_ids[0]
    for person in (author, *people):
        console.watch(person.context)
        person.open_room(room.slug)

    # The first picks 🎉 from the palette; once its pill is on every page, the other
    # four press it as fast as Playwright clicks, waiting for no answer in between.
    first, *others = people
    react(first.page, target, "🎉")
    for person in others:
        expect(reaction(person.page, target, "🎉")).to_have_attribute("data-count", "1")
    for person in others:
        reaction(person.page, target, "🎉").click()

    everyone = sorted(person.username for person in people)
    for person in (author, *people):
        shown = reaction(person.page, target, "🎉")
        expect(shown).to_have_attribute("data-count", "5")
        assert sorted((shown.get_attribute("data-by") or "").split()) == everyone
        pressed = "false" if person is author else "true"
        expect(shown).to_have_attribute("aria-pressed", pressed)
        expect(message(person.page, target).locator(".reaction")).to_have_count(1)
    stored = server_db.query(
        "SELECT COUNT(*) FROM rooms_reaction WHERE message_id = ? AND emoji = ?", target, "🎉"
    )
    assert stored == [(5,)]


# Without JavaScript ---------------------------------------------------------------------


def test_without_javascript_each_action_is_a_form_that_returns_to_the_room(
    sign_up, room_slug, console
):
    watcher = sign_up("js")
    plain = sign_up("nojs", **NO_JAVASCRIPT)
    watcher.open_room(room_slug)
    console.watch(watcher.context)
    theirs = post(watcher, "Lunch at noon?")
    page = plain.page
    room_url = f"{plain.base_url}/rooms/{room_slug}/"

    def post_plainly(text: str) -> int:
        page.goto(room_url)
        page.locator("#id_body").fill(text)
        page.get_by_role("button", name="Send").click()
        expect(page).to_have_url(room_url)
        return message_id(page, plain.username, text)

    def back_in_the_room(pk: int) -> None:
        expect(page).to_have_url(f"{room_url}#message-{pk}")
        expect(page.locator("#room-title")).to_have_text(f"#{room_slug}")

    # Edit: the link opens a page with the form; Save goes back to the room.
    typo = post_plainly("Sure, see you tehre")
    message(page, typo).locator(".message-edit").click()
    expect(page).to_have_url(f"{room_url}messages/{typo}/edit/")
    expect(page.get_by_role("heading", name="Edit your message")).to_be_visible()
    page.get_by_label("New text").fill("Sure, see you there")
    page.get_by_role("button", name="Save").click()
    back_in_the_room(typo)
    expect(message(page, typo).locator(".message-body")).to_have_text("Sure, see you there")
    expect(message(page, typo).locator(".message-edited")).to_be_visible()
    expect(message(watcher.page, typo).locator(".message-body")).to_have_text("Sure, see you there")

    # Delete: the link asks on a page of its own; Delete there goes back to the room.
    mistake = post_plainly("wrong room, sorry")
    message(page, mistake).locator(".message-delete").click()
    expect(page.get_by_role("heading", name="Delete this message?")).to_be_visible()
    page.get_by_role("button", name="Delete").click()
    back_in_the_room(mistake)
    expect(message(page, mistake)).to_have_count(0)  # history leaves it out
    expect(message(watcher.page, mistake).locator(".message-tombstone")).to_be_visible()

    # React: the palette's button, then a typed one.
    message(page, theirs).locator(".message-react").click()
    expect(page.get_by_role("heading", name="React to this message")).to_be_visible()
    page.locator(".reaction-palette").get_by_role("button", name="👍", exact=True).click()
    back_in_the_room(theirs)
    assert reactions_shown(page, theirs) == [("👍", "1", "true")]
    message(page, theirs).locator(".message-react").click()
    page.get_by_label("Or type one").fill("yum")
    page.locator(".reaction-text").get_by_role("button", name="React").click()
    back_in_the_room(theirs)
    assert reactions_shown(page, theirs) == [("👍", "1", "true"), ("yum", "1", "true")]
    # The pills are buttons of a plain form too: pressing one takes it back.
    reaction(page, theirs, "yum").click()
    back_in_the_room(theirs)
    assert reactions_shown(page, theirs) == [("👍", "1", "true")]
    expect(reaction(watcher.page, theirs, "👍")).to_have_attribute("aria-pressed", "false")
    expect(reaction(watcher.page, theirs, "yum")).to_have_count(0)

    # Reply: the link starts the composer with a quote (?reply=); Send posts the reply.
    message(page, theirs).locator(".message-reply").click()
    expect(page).to_have_url(f"{room_url}?reply={theirs}#composer")
    expect(page.locator("#composer .composer-reply")).to_contain_text("Lunch at noon?")
    page.locator("#id_body").fill("Count me in")
    page.get_by_role("button", name="Send").click()
    expect(page).to_have_url(room_url)
    permalink = f"/rooms/{room_slug}/messages/{theirs}/#message-{theirs}"
    for seen in (page, watcher.page):
        expect_message(seen, plain.username, "Count me in")
        reply = seen.locator(".message").filter(has_text="Count me in")
        expect(reply.locator(".message-quote a")).to_have_attribute("href", permalink)
    expect(page.locator("#composer .composer-reply")).to_have_count(0)


# Refusals -------------------------------------------------------------------------------


@pytest.mark.console_errors("refusals are answered 403, and Chromium logs each as a failed load")
def test_refusals_say_why(sign_up, room_slug, e2e_env):
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    pk = post(alice, "only I may change this")
    bob.open_room(room_slug)

    response = bob.page.goto(f"/rooms/{room_slug}/messages/{pk}/edit/")
    assert response is not None and response.status == 403
    expect(bob.page.locator(".message-panel-error")).to_have_text(
        "Only its author can edit a message."
    )
    expect(bob.page.locator("form.edit-form")).to_have_count(0)
    response = bob.page.goto(f"/rooms/{room_slug}/messages/{pk}/delete/")
    assert response is not None and response.status == 403
    expect(bob.page.locator(".message-panel-error")).to_contain_text("Only its author")
    expect(bob.page.locator("form.delete-form")).to_have_count(0)

    # Past the edit window (none at all on this server): said in the panel, and on the page.
    with servers.daphne({**e2e_env, "CHAT_EDIT_WINDOW_MINUTES": "0"}) as strict:
        carol = sign_up("carol", server=strict)
        carol.open_room(room_slug)
        late = post(carol, "too late to fix this")
        panel = message(carol.page, late).locator(".message-panel")
        message(carol.page, late).hover()
        message(carol.page, late).locator(".message-edit").click()
        expect(panel.locator(".message-panel-error")).to_contain_text(
            "This message can no longer be edited"
        )
        expect(panel.locator("form")).to_have_count(0)
        response = carol.page.goto(f"/rooms/{room_slug}/messages/{late}/edit/")
        assert response is not None and response.status == 403
        expect(carol.page.locator(".message-panel-error")).to_have_text(
            "This message can no longer be edited: messages can be edited for 0 minutes "
            "after they are sent."
        )
        expect(carol.page.locator(f"#message-{late} .message-body")).to_have_text(
            "too late to fix this"
        )


# Offline ---------------------------------------------------------------------------------


def test_a_page_that_was_offline_catches_up_edits_deletions_and_reactions(
    sign_up, room_slug, console
):
    alice, bob = sign_up("alice"), sign_up("bob")
    link = SocketLink(bob.page)
    page = alice.open_room(room_slug)
    console.watch(alice.context)
    bob.open_room(room_slug)
    bob.page.evaluate("window.__sameDocument = true")
    to_edit = post(alice, "the meeting is at 3", page)
    to_delete = post(alice, "ignore this", page)
    to_react = post(alice, "who is in?", page)
    expect_message(bob.page, alice.username, "who is in?")

    link.drop()
    expect_socket(bob.page, "reconnecting")
    edit(page, to_edit, "the meeting is at 4")
    delete(page, to_delete)
    react(page, to_react, "🙏")
    # Nothing reached Bob meanwhile.
    wait_until(bob.page, lambda: link.refused >= 1, "Bob's page to try to reconnect (and fail)")
    expect(message(bob.page, to_edit).locator(".message-body")).to_have_text("the meeting is at 3")
    expect(message(bob.page, to_delete).locator(".message-body")).to_have_text("ignore this")
    expect(message(bob.page, to_react).locator(".reaction")).to_have_count(0)

    link.restore()
    expect_socket(bob.page, "open", timeout=RECOVERY_TIMEOUT_MS)
    expect(message(bob.page, to_edit).locator(".message-body")).to_have_text(
        "the meeting is at 4", timeout=RECOVERY_TIMEOUT_MS
    )
    expect(message(bob.page, to_edit)).to_have_attribute("data-edited", re.compile("."))
    expect(message(bob.page, to_delete).locator(".message-tombstone")).to_be_visible()
    expect(reaction(bob.page, to_react, "🙏")).to_have_attribute("data-count", "1")
    expect(reaction(bob.page, to_react, "🙏")).to_have_attribute("aria-pressed", "false")
    assert [m["id"] for m in messages(bob.page)] == [to_edit, to_delete, to_react]
    assert_each_message_once(bob.page)
    assert bob.page.evaluate("window.__sameDocument") is True
    # The cursor moved on over the changes: a later message still arrives once, live.
    alice.send("back to normal", page)
    expect_message(bob.page, alice.username, "back to normal")
    assert_each_message_once(bob.page)


# Changes to messages a page does not show ------------------------------------------------


def test_a_change_to_a_message_the_page_does_not_show_is_dropped_quietly(
    room_with_history, log_in, make_users, console
):
    room = room_with_history(60)  # the owner wrote the odd-numbered messages
    ids = room.message_ids
    owner = log_in(room.owner)
    old, recent = (log_in(account) for account in make_users("old", "recent"))
    for person in (owner, old, recent):
        console.watch(person.context)
    # One reader on a permalink of the first message (messages 1-26), one on the newest
    # page (messages 11-60).
    old.page.goto(f"/rooms/{room.slug}/messages/{ids[0]}/")
    expect_socket(old.page, "open")
    recent.open_room(room.slug)
    expect(message(old.page, ids[58])).to_have_count(0)
    expect(message(recent.page, ids[2])).to_have_count(0)

    # The owner changes message 3 (on a permalink of it) and messages 59 and 57.
    page = owner.open_room(room.slug)
    edit(page, ids[58], "Message 59, reworded")
    delete(page, ids[56])
    page.goto(f"/rooms/{room.slug}/messages/{ids[2]}/")
    expect_socket(page, "open")
    edit(page, ids[2], "Message 3, reworded")
    # Last, a reaction to message 20, which both readers show: once it is on both pages,
    # every change before it reached them (a socket is ordered).
    react(page, ids[19], "👍")
    for reader in (old, recent):
        expect(reaction(reader.page, ids[19], "👍")).to_have_attribute("data-count", "1")
    expect(message(old.page, ids[2]).locator(".message-body")).to_have_text("Message 3, reworded")
    expect(message(old.page, ids[58])).to_have_count(0)
    expect(message(old.page, ids[56])).to_have_count(0)
    expect(message(recent.page, ids[58]).locator(".message-body")).to_have_text(
        "Message 59, reworded"
    )
    expect(message(recent.page, ids[56]).locator(".message-tombstone")).to_be_visible()
    expect(message(recent.page, ids[2])).to_have_count(0)
    for reader in (old, recent):
        assert_each_message_once(reader.page)
    # (The console fixture fails the test on htmx:oobErrorNoTarget or any other error.)


# User text stays text ---------------------------------------------------------------------


def test_markup_in_reactions_edits_and_quotes_is_shown_as_text(sign_up, room_slug, console):
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    console.watch(alice.context).watch(bob.context)
    pk = post(alice, "plain words")

    edited = "<b>bold</b> <i>it</i> <img src=x onerror=alert(1)>"
    edit(alice.page, pk, edited)
    expect(message(bob.page, pk).locator(".message-body")).to_have_text(edited)

    for text in ("<b>x</b>", '"><i>'):
        react_with_text(bob.page, pk, text)
    expect(message(alice.page, pk).locator(".reaction")).to_have_count(2)
    for seen in (alice.page, bob.page):
        shown = reactions_shown(seen, pk)
        assert [emoji for emoji, _, _ in shown] == ["<b>x</b>", '"><i>']
        expect(message(seen, pk).locator(".reaction-emoji")).to_have_text(["<b>x</b>", '"><i>'])

    expect(start_reply(bob.page, pk).locator(".message-quote-text")).to_have_text(edited)
    bob.send("<i>quoted</i>")
    for seen in (alice.page, bob.page):
        expect_message(seen, bob.username, "<i>quoted</i>")
        quote = seen.locator(f'.message[data-author="{bob.username}"] .message-quote-text')
        expect(quote).to_have_text(edited)
        expect(seen.locator(FOREIGN_ELEMENTS)).to_have_count(0)
    # And the same after a reload: the page's own render, not the push.
    for seen in (alice.page, bob.page):
        seen.reload()
        expect_message(seen, bob.username, "<i>quoted</i>")
        expect(message(seen, pk).locator(".reaction")).to_have_count(2)
        expect(seen.locator(FOREIGN_ELEMENTS)).to_have_count(0)
    assert alice.dialogs == [] and bob.dialogs == []


# The look ----------------------------------------------------------------------------------

SCREENS = {
    "1280-light": {"viewport": {"width": 1280, "height": 900}},
    "390-light": PHONE,
    "1280-dark": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"},
    "390-dark": {**PHONE, "color_scheme": "dark"},
}


@pytest.mark.parametrize("screen", SCREENS.values(), ids=SCREENS.keys())
def test_a_message_s_life_as_it_looks(sign_up, log_in, room_slug, console, request, screen):
    """Every state at once, screenshotted (e2e/screenshots/12-message-life-*.png) and
    checked by axe-core (contrast in this scheme included)."""
    alice, bob = sign_up("alice"), sign_up("bob")
    page = alice.open_room(room_slug)
    bob.open_room(room_slug)
    viewer = log_in(alice, **screen)  # Alice again, on this screen: open all along
    console.watch(viewer.context)
    shown = viewer.open_room(room_slug)
    question = post(bob, "Has anyone seen the deploy notes for today's release?")
    answer = post(alice, "Their in the wiki, under Releases.", page)
    edit(page, answer, "They're in the wiki, under Releases → 2026-11.")
    start_reply(bob.page, answer)
    thanks = post(bob, "Thanks! Found them, and the rollback steps too.")
    gone = post(alice, "oops, wrong room", page)
    delete(page, gone)
    standup = post(bob, "Standup in 5 minutes, same link as yesterday.")
    lunch = post(alice, "Lunch at 12:30? The new place on Mill Street.", page)
    react(page, question, "👍")
    react(bob.page, answer, "🎉")
    react_with_text(bob.page, answer, "+1")
    react(bob.page, question, "👍")

    expect(reaction(shown, question, "👍")).to_have_attribute("data-count", "2")
    expect(reaction(shown, question, "👍")).to_have_attribute("aria-pressed", "true")
    expect(reaction(shown, answer, "🎉")).to_have_attribute("aria-pressed", "false")
    expect(message(shown, gone).locator(".message-tombstone")).to_be_visible()
    expect(message(shown, answer).locator(".message-edited")).to_be_visible()
    open_action(shown, standup, "react")
    expect(start_reply(shown, standup)).to_contain_text("Standup in 5")
    open_action(shown, lunch, "edit")

    # Nothing is wider than the screen; the quote stays within its message.
    assert shown.evaluate("document.documentElement.scrollWidth <= innerWidth")
    outer = message(shown, thanks).bounding_box()
    inner = message(shown, thanks).locator(".message-quote").bounding_box()
    assert outer and inner and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
    for selector in ("#chat-log", "#composer"):
        assert_no_axe_violations(shown, f"a message's life ({selector})", selector)
    name = f"12-message-life-{request.node.callspec.id}"
    screenshot(shown, name)
    message(shown, question).scroll_into_view_if_needed()  # (the log scrolls on its own)
    screenshot(shown, f"{name}-top")
