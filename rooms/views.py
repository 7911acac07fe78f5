import re
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import InvalidPage, Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import push_url, reswap, retarget

from accounts.time_zones import in_viewer_time_zone
from rooms import attachments, attention, changes, presence, services
from rooms.forms import (
    ComposerForm,
    InviteForm,
    MessageEditForm,
    PrivateMessageForm,
    RoomNameForm,
)
from rooms.models import Message, PrivateMessage, ReadPosition, Room

# The room page's sidebar lists at most this many of the user's rooms ("All rooms…" has
# the rest): a page's size must not grow with how many rooms someone is in.
SIDEBAR_ROOMS = 20
# People per page of a room's /online/ (everyone online, past the room page's list).
ONLINE_PAGE_SIZE = 200
# A message id in a URL: digits, short enough for a 64-bit integer column.
MESSAGE_ID = re.compile(r"[0-9]{1,18}")


class SignedInRequest(HttpRequest):
    """What a @login_required view is given (for the type checker): a signed-in user."""

    user: User


def _room_or_404(slug: str, user: Any) -> Room:
    try:
        return services.find_room(slug, user)
    except Room.DoesNotExist:
        raise Http404("No such room.") from None


@login_required
@require_http_methods(["GET", "POST"])
def room_list(request: SignedInRequest) -> HttpResponse:
    """The rooms the user may enter, a page at a time, and the form that opens or
    creates one by name (the only way rooms are made: a POST)."""
    form = RoomNameForm(request.POST or None)
    status = 400 if form.is_bound else 200
    if form.is_valid():
        try:
            room = services.open_room_by_name(
                form.cleaned_data["name"], request.user, private=form.cleaned_data["private"]
            )
        except services.RoomNotCreated as refusal:
            form.add_error("name", str(refusal))
            status = refusal.status
        else:
            return redirect(room)
    try:
        page = services.room_list_page(request.user, request.GET.get("page"))
    except InvalidPage:
        raise Http404("No such page of rooms.") from None
    context = {
        "page": page,
        "form": form,
        # The rooms listed, whose activity the page's socket follows (their counts).
        "activity_rooms": ",".join(room.slug for room in page.object_list),
        "unread_total": attention.unread_total(request.user),
    }
    return render(request, "rooms/room_list.html", context, status=status)


@login_required
@in_viewer_time_zone
@require_GET
def room_detail(request: SignedInRequest, slug: str) -> HttpResponse:
    """The room; for a valid name with no room this user may enter, a 404 page that
    offers to create it. That page is the same whether the room is missing or private
    (or staff only): nothing tells them apart."""
    if not services.is_room_name(slug):
        raise Http404("No such room.")
    try:
        room = services.find_room(slug, request.user)
    except Room.DoesNotExist:
        context = {"name": slug, "form": RoomNameForm(initial={"name": slug})}
        return render(request, "rooms/room_create.html", context, status=404)
    if "reply" in request.GET:
        return _start_reply(request, room)
    if "before" not in request.GET:
        # After a /pm without JavaScript (post_message): what was sent, and to whom.
        sent_pm = services.sent_private_message(request.user, request.GET.get("sent"))
        return _render_room(request, room, ComposerForm(), sent_pm=sent_pm)
    try:
        before = _message_id(request.GET["before"])
        history = services.messages_before(room, before)
    except Message.DoesNotExist:
        raise Http404("No such message in this room.") from None
    if request.headers.get("HX-Request") == "true":
        # htmx asks for the page before the oldest message it shows: just those messages
        # (and the link to the page before them), swapped in place of its link; the day
        # of the message below them says whether its day divider is still needed.
        following = room.messages.filter(pk=before).values_list("created_at", flat=True).get()
        context = {
            "room": room,
            "history": history,
            "following_pk": before,
            "following_day": timezone.localtime(following).strftime("%Y-%m-%d"),
        }
        response = render(request, "rooms/room.html#older-page", context)
    else:
        response = _render_room(request, room, ComposerForm(), history=history)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@in_viewer_time_zone
@require_GET
def message_permalink(request: SignedInRequest, slug: str, message_id: int) -> HttpResponse:
    """The room around one message, that message marked: the link on each message's time."""
    room = _room_or_404(slug, request.user)
    if _is_htmx(request):
        # The message alone (an action's Cancel puts it back as it is).
        message = _message_or_404(room, message_id)
        response = render(request, "rooms/room.html#message", {"message": message})
        patch_vary_headers(response, ["HX-Request"])
        return response
    try:
        history = services.messages_around(room, _message_id(str(message_id)))
    except Message.DoesNotExist:
        raise Http404("No such message in this room.") from None
    response = _render_room(request, room, ComposerForm(), history=history)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def online(request: SignedInRequest, slug: str) -> HttpResponse:
    """Everyone online in the room, by name, ONLINE_PAGE_SIZE a page (`?page=N`): where
    the room's capped online list ("and N more") links. Private rooms as for the room
    (404); a page that is not there, 404."""
    room = _room_or_404(slug, request.user)
    paginator = Paginator(presence.online_people(room), ONLINE_PAGE_SIZE)
    try:
        page = paginator.page(request.GET.get("page") or 1)
    except InvalidPage:
        raise Http404("No such page of people.") from None
    return render(request, "rooms/online.html", {"room": room, "page": page})


@login_required
@in_viewer_time_zone
@require_GET
def day_transcript(
    request: SignedInRequest, slug: str, year: str, month: str, day: str
) -> HttpResponse:
    """A whole day of the room, in the viewer's zone, as one plain page: no socket, no
    composer; the page to print or cite. Private rooms as for the room (404); a day that
    is no date, 404."""
    room = _room_or_404(slug, request.user)
    try:
        when = date(int(year), int(month), int(day))
    except ValueError:
        raise Http404("No such day.") from None
    zone = timezone.get_current_timezone()
    transcript = services.day_transcript(room, when, zone)
    context = {"room": room, "transcript": transcript, "transcript_zone": str(zone)}
    return render(request, "rooms/transcript.html", context)


def _start_reply(request: SignedInRequest, room: Room) -> HttpResponse:
    """The composer replying to `?reply=<id>`: alone for htmx (it replaces the page's
    composer), else the room page with it. `?reply=` (empty) is the composer without one."""
    reply = services.reply_target(room, request.GET["reply"])
    if _is_htmx(request):
        context = {"room": room, "form": ComposerForm(), "error": "", "reply": reply}
        # (A boosted link: the page's address stays; see _stay.)
        response = _stay(render(request, "rooms/room.html#composer", context))
    else:
        response = _render_room(request, room, ComposerForm(), reply=reply)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _kept(posted: QueryDict) -> dict[str, str]:
    """What a composer refused before validation (too fast) shows again: its text, and
    its send id (ComposerForm.token: nothing was stored, so the same send may go again)."""
    return {name: posted.get(name, "") for name in ("body", "token")}


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _message_id(value: str) -> int:
    """A message id from the URL; Message.DoesNotExist (a 404) for anything else,
    including numbers too big for the database's integers."""
    if not MESSAGE_ID.fullmatch(value):
        raise Message.DoesNotExist(f"not a message id: {value[:40]!r}")
    return int(value)


@login_required
@in_viewer_time_zone
@require_POST
def post_message(request: SignedInRequest, slug: str) -> HttpResponse:
    """The composer without JavaScript: post, then back to the room (POST/redirect/GET).
    With a file (multipart), also with JavaScript: htmx posts the form here when a file
    is chosen (static/js/chat.js), and is answered with the composer alone."""
    room = _room_or_404(slug, request.user)
    reply = services.reply_target(room, request.POST.get("reply_to"))
    if too_fast := services.sending_too_fast(request.user.pk):
        form = ComposerForm(initial=_kept(request.POST))
        return _composer_again(
            request, room, form, error=too_fast.error, status=too_fast.status, reply=reply
        )
    upload = request.FILES.get("file")
    if upload is not None and upload.name:
        submitted = attachments.submit_with_file(room, request.user, request.POST, upload)
        if submitted.posted is None:
            return _composer_again(
                request,
                room,
                submitted.form,
                error=submitted.error,
                status=submitted.status,
                reply=reply,
            )
        if _is_htmx(request):
            # The message reaches this page as every other, over its socket.
            return _composer_again(request, room, ComposerForm(), status=200)
        return redirect(room)
    form, posted = services.submit_composer(room, request.user, request.POST)
    if posted is None:
        return _render_room(request, room, form, status=400, reply=reply)
    if posted.private_message is not None:
        # Back to the room, which confirms what was sent and to whom (its id only: no
        # user text in the URL).
        return redirect(f"{room.get_absolute_url()}?sent={posted.private_message.pk}")
    return redirect(room)


def _composer_again(
    request: HttpRequest,
    room: Room,
    form: ComposerForm,
    *,
    error: str = "",
    status: int = 400,
    reply: Message | None = None,
) -> HttpResponse:
    """The composer after a POST that did not go back to the room: for htmx (a file
    sent with JavaScript) the composer alone, emptied or with its error and the text
    kept; else the room page with it."""
    if not _is_htmx(request):
        return _render_room(request, room, form, error=error, status=status, reply=reply)
    context = {"room": room, "form": form, "error": error, "reply": reply}
    return _stay(render(request, "rooms/room.html#composer", context, status=status))


# A message's actions: edit, delete, react. Each is a plain form (a page of its own
# without JavaScript, POST then back to the room) and, with htmx, a fragment in the
# message's panel; what they change reaches every page, the actor's too, as a push
# (rooms/changes.py).


def _message_or_404(room: Room, message_id: int) -> Message:
    try:
        return services.find_message(room, _message_id(str(message_id)))
    except Message.DoesNotExist:
        raise Http404("No such message in this room.") from None


def _changed(request: HttpRequest, message: Message) -> HttpResponse:
    if _is_htmx(request):
        # The change itself reaches this page as it reaches every other, over its socket
        # (or its catch-up, if the socket is down): an answer carrying it too would race
        # the push. A form in the message's panel asked for its answer there: nothing is
        # left to show in it, so it closes. Anything else: nothing to swap.
        if request.headers.get("HX-Target") == f"message-panel-{message.pk}":
            return HttpResponse("")
        return HttpResponse(status=204)
    return redirect(f"{message.room.get_absolute_url()}#message-{message.pk}")


def _message_action(
    request: HttpRequest, action: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """The action's form: its own page, or with htmx the fragment for the message's panel
    (an error too: answered into the panel, whatever the request targeted)."""
    context = {"action": action, **context}
    if not _is_htmx(request):
        return render(request, "rooms/message_action.html", context, status=status)
    response = render(request, "rooms/message_action.html#action-panel", context, status=status)
    panel = f"#message-panel-{context['message'].pk}"
    return _stay(retarget(reswap(response, "innerHTML"), panel))


def _too_fast(
    request: SignedInRequest, action: str, context: dict[str, Any]
) -> HttpResponse | None:
    """Charge the change to the user's rate limit (posting's): None if it may be made,
    else the action's form again with the refusal (429)."""
    if too_fast := services.sending_too_fast(request.user.pk):
        context["error"] = too_fast.error
        return _message_action(request, action, context, status=too_fast.status)
    return None


def _apply_change(
    request: HttpRequest,
    action: str,
    context: dict[str, Any],
    message: Message,
    change: Callable[[], object],
    *,
    refusal_as: str = "refusal",
) -> HttpResponse:
    """Make the change; a refusal goes back to the action's form (as `refusal_as` in its
    context), a message gone meanwhile is a 404, and a change made is `_changed`."""
    try:
        change()
    except changes.ChangeRefused as refusal:
        context[refusal_as] = str(refusal)
        return _message_action(request, action, context, status=refusal.status)
    except Message.DoesNotExist:
        raise Http404("No such message in this room.") from None
    return _changed(request, message)


def _stay(response: HttpResponse) -> HttpResponse:
    """An answer to a boosted link or form (a message's actions) that leaves the page's
    address alone: htmx 2.0.10 pushes a boosted request's URL whatever hx-push-url says
    (bigskysoftware/htmx#3966), but obeys the HX-Push-Url header."""
    return push_url(response, False)


@login_required
@in_viewer_time_zone
@require_http_methods(["GET", "POST"])
def edit_message(request: SignedInRequest, slug: str, message_id: int) -> HttpResponse:
    """The author rewords their message, within the edit window."""
    room = _room_or_404(slug, request.user)
    message = _message_or_404(room, message_id)
    form = MessageEditForm(request.POST or None, initial={"body": message.body})
    context: dict[str, Any] = {"room": room, "message": message, "form": form, "error": ""}
    try:
        changes.may_edit(message, request.user)
    except changes.ChangeRefused as refusal:
        context["refusal"] = str(refusal)
        return _message_action(request, "edit", context, status=refusal.status)
    if request.method == "GET":
        return _message_action(request, "edit", context)
    if too_fast := _too_fast(request, "edit", context):
        return too_fast
    if not form.is_valid():
        return _message_action(request, "edit", context, status=400)
    # (A refusal now: the window closed meanwhile.)
    edit = partial(changes.edit_message, message, request.user, form.cleaned_data["body"])
    return _apply_change(request, "edit", context, message, edit)


@login_required
@in_viewer_time_zone
@require_http_methods(["GET", "POST"])
def delete_message(request: SignedInRequest, slug: str, message_id: int) -> HttpResponse:
    """The author (or staff) deletes a message; GET asks to confirm (without JavaScript)."""
    room = _room_or_404(slug, request.user)
    message = _message_or_404(room, message_id)
    context: dict[str, Any] = {"room": room, "message": message, "error": ""}
    try:
        changes.may_delete(message, request.user)
    except changes.ChangeRefused as refusal:
        context["refusal"] = str(refusal)
        return _message_action(request, "delete", context, status=refusal.status)
    if request.method == "GET":
        return _message_action(request, "delete", context)
    if too_fast := _too_fast(request, "delete", context):
        return too_fast
    delete = partial(changes.delete_message, message, request.user)
    return _apply_change(request, "delete", context, message, delete)


@login_required
@in_viewer_time_zone
@require_http_methods(["GET", "POST"])
def reactions(request: SignedInRequest, slug: str, message_id: int) -> HttpResponse:
    """Any member toggles a reaction (`emoji`); GET shows the palette and a text field."""
    room = _room_or_404(slug, request.user)
    message = _message_or_404(room, message_id)
    context: dict[str, Any] = {
        "room": room,
        "message": message,
        "error": "",
        "palette": changes.REACTION_PALETTE,
        "max_length": changes.REACTION_MAX_LENGTH,
        "typed": "",
    }
    if request.method == "GET":
        return _message_action(request, "react", context)
    emoji = request.POST.get("emoji", "")
    context["typed"] = emoji
    if too_fast := _too_fast(request, "react", context):
        return too_fast
    # A refused reaction is an error beside the picker, which stays open to try again.
    react = partial(changes.toggle_reaction, message, request.user, emoji)
    return _apply_change(request, "react", context, message, react, refusal_as="error")


def _render_room(
    request: HttpRequest,
    room: Room,
    form: ComposerForm,
    *,
    error: str = "",
    invite_form: InviteForm | None = None,
    status: int = 200,
    history: services.HistoryPage | None = None,
    reply: Message | None = None,
    sent_pm: PrivateMessage | None = None,
) -> HttpResponse:
    first_unread = None
    if history is None:
        view = services.recent_messages(room)
        cursor = view.cursor
        history = services.HistoryPage(view.messages, older=view.older, latest=True)
        # The newest messages are shown: read up to the cursor. The "new messages"
        # divider goes above the first that was past the position before.
        position = attention.mark_read(request.user, room, cursor)
        first_unread = attention.first_unread(history.messages, position, request.user)
    else:
        cursor = services.room_cursor(room)  # (older pages and permalinks stay live too)
        position = attention.position_of(request.user, room)
    is_owner = room.visibility == Room.Visibility.PRIVATE and room.owner_id == request.user.pk
    my_rooms = services.rooms_user_is_in(request.user, SIDEBAR_ROOMS)
    context = {
        "room": room,
        # A page of older history (or around a permalink) keeps the live socket: what
        # arrives is appended after a link to the newest, past the gap.
        "messages": history.messages,
        "history": history,
        "cursor": cursor,
        # The first CHAT_ONLINE_LIST_LIMIT online, the count, "and N more" (OnlineList);
        # the limit also goes to the page's style (room.html's viewer_style).
        **presence.online_list(room).context(),
        "online_limit": settings.CHAT_ONLINE_LIST_LIMIT,
        "my_rooms": my_rooms,
        # The sidebar's other rooms, whose activity the socket follows (their counts).
        "activity_rooms": ",".join(other.slug for other in my_rooms if other.pk != room.pk),
        "unread_total": attention.unread_total(request.user),
        "first_unread": first_unread,
        "level": position.level if position else ReadPosition.Level.EVERYTHING,
        "levels": ReadPosition.Level.choices,
        "form": form,
        "error": error,
        "reply": reply,
        "members": room.members.order_by("username") if is_owner else None,
        "invite_form": invite_form or InviteForm(),
        "sent_pm": sent_pm,
    }
    return render(request, "rooms/room.html", context, status=status)


@login_required
@in_viewer_time_zone
@require_POST
def invite_member(request: SignedInRequest, slug: str) -> HttpResponse:
    room = _owned_private_room_or_404(slug, request.user)
    invite_form = InviteForm(request.POST)
    if not invite_form.is_valid():
        return _render_room(request, room, ComposerForm(), invite_form=invite_form, status=400)
    services.invite(room, request.user, invite_form.cleaned_data["username"])
    return redirect(room)


@login_required
@require_POST
def remove_member(request: SignedInRequest, slug: str, username: str) -> HttpResponse:
    room = _owned_private_room_or_404(slug, request.user)
    member = get_object_or_404(room.members, username=username)
    services.remove_member(room, request.user, member)
    return redirect(room)


def _owned_private_room_or_404(slug: str, user: Any) -> Room:
    return get_object_or_404(Room, slug=slug, owner=user, visibility=Room.Visibility.PRIVATE)


@login_required
@require_GET
def conversations(request: SignedInRequest) -> HttpResponse:
    """Everyone the user has exchanged private messages with, latest first."""
    people = services.conversation_partners(request.user)
    return render(request, "rooms/conversations.html", {"people": people})


@login_required
@in_viewer_time_zone
@require_http_methods(["GET", "POST"])
def conversation(request: SignedInRequest, username: str) -> HttpResponse:
    other = get_object_or_404(get_user_model(), username=username, is_active=True)
    form = PrivateMessageForm()
    error, status = "", 200
    if request.method == "POST":
        if too_fast := services.sending_too_fast(request.user.pk):
            form = PrivateMessageForm(initial=_kept(request.POST))
            error, status = too_fast.error, too_fast.status
        else:
            form = PrivateMessageForm(request.POST)
            if form.is_valid():
                body, token = form.cleaned_data["body"], form.cleaned_data["token"]
                services.send_private_message(request.user, other, body, token=token)
                return redirect("pm:conversation", username=other.username)
            status = 400
    if request.method == "GET" and "before" in request.GET:
        try:
            history = services.private_messages_before(
                request.user, other, _pm_id(request.GET["before"])
            )
        except PrivateMessage.DoesNotExist:
            raise Http404("No such message between you two.") from None
    else:
        history = services.latest_private_messages(request.user, other)
        # Its newest messages shown: what the other sent is read (and the user's other
        # pages get the new count).
        services.read_private_messages(request.user.pk, other.pk)
    return _render_conversation(request, other, history, form, error=error, status=status)


@login_required
@in_viewer_time_zone
@require_GET
def private_message_permalink(request: SignedInRequest, username: str, pm_id: int) -> HttpResponse:
    """The conversation around one private message, that message marked. 404 for one
    that is not between the viewer and `username`."""
    other = get_object_or_404(get_user_model(), username=username, is_active=True)
    try:
        history = services.private_messages_around(request.user, other, _pm_id(str(pm_id)))
    except PrivateMessage.DoesNotExist:
        raise Http404("No such message between you two.") from None
    return _render_conversation(request, other, history, PrivateMessageForm())


def _render_conversation(
    request: SignedInRequest,
    other: Any,
    history: services.ConversationPage,
    form: PrivateMessageForm,
    *,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "other": other,
        "history": history,
        "form": form,
        "error": error,
        "conversation": services.conversation_key(request.user.pk, other.pk),
    }
    return render(request, "rooms/conversation.html", context, status=status)


def _pm_id(value: str) -> int:
    """A private message id from the URL; PrivateMessage.DoesNotExist (a 404) otherwise."""
    if not MESSAGE_ID.fullmatch(value):
        raise PrivateMessage.DoesNotExist(f"not a message id: {value[:40]!r}")
    return int(value)


# Attention: how loudly a room calls, and the mentions of me (rooms/attention.py) ------------


@login_required
@require_POST
def notification_level(request: SignedInRequest, slug: str) -> HttpResponse:
    """Set how loudly the room may call the user (everything, mentions, nothing): back to
    the room without JavaScript, the form again (saved) for htmx."""
    room = _room_or_404(slug, request.user)
    level = request.POST.get("level", "")
    if level not in ReadPosition.Level.values:
        context = {"room": room, "level": "", "levels": ReadPosition.Level.choices}
        return render(request, "rooms/room.html#notification-level", context, status=400)
    attention.set_level(request.user, room, level)
    if not _is_htmx(request):
        return redirect(room)
    context = {
        "room": room,
        "level": level,
        "levels": ReadPosition.Level.choices,
        "level_saved": True,
    }
    response = render(request, "rooms/room.html#notification-level", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@in_viewer_time_zone
@require_GET
def mentions(request: SignedInRequest) -> HttpResponse:
    """The messages that mention the user, newest first, 50 a page (`?before=<message
    id>`), each linking to its permalink; only in rooms they may still enter."""
    before = None
    if "before" in request.GET:
        try:
            before = _message_id(request.GET["before"])
        except Message.DoesNotExist:
            raise Http404("No such page of mentions.") from None
    page = attention.mentions_page(request.user, before)
    return render(request, "rooms/mentions.html", {"page": page, "paged": before is not None})
