"""Incoming webhooks' pages: the room's hooks (owner and staff) and the hook URL itself."""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from rooms import hooks, services
from rooms.models import Room, Webhook
from rooms.views import SignedInRequest


def _managed_room(slug: str, user: Any) -> Room:
    """The room whose hooks `user` manages. A room they may not see is a 404 (as
    everywhere: nothing tells it apart from a missing one); one they see but do not own,
    a 403."""
    room = Room.objects.filter(slug=slug).first() if services.is_room_name(slug) else None
    if room is None or not (services.can_enter(room, user) or hooks.may_manage(room, user)):
        raise Http404("No such room.")
    if not hooks.may_manage(room, user):
        raise PermissionDenied("Only the room's owner (or staff) manages its webhooks.")
    return room


@login_required
@require_http_methods(["GET", "POST"])
def room_hooks(request: SignedInRequest, slug: str) -> HttpResponse:
    """The room's hooks, and the form that makes one. The new hook's URL is in the
    answer to that POST only: its token is not kept."""
    room = _managed_room(slug, request.user)
    form = hooks.HookForm(request.POST or None)
    created, token, status = None, "", 200
    if form.is_bound:
        if form.is_valid():
            created, token = hooks.create_hook(room, request.user, form.cleaned_data["name"])
            form, status = hooks.HookForm(), 201
        else:
            status = 400
    context = {
        "room": room,
        "hooks": room.webhooks.select_related("bot", "created_by"),
        "form": form,
        "created": created,
        "hook_url": request.build_absolute_uri(f"/hooks/{token}/") if token else "",
    }
    response = render(request, "rooms/hooks.html", context, status=status)
    response["Cache-Control"] = "private, no-store"  # (the token, once)
    return response


@login_required
@require_POST
def revoke_hook(request: SignedInRequest, slug: str, hook_id: int) -> HttpResponse:
    room = _managed_room(slug, request.user)
    hooks.revoke_hook(get_object_or_404(Webhook, pk=hook_id, room=room), request.user)
    return redirect("room_hooks", slug=room.slug)


@csrf_exempt
@require_POST
def hook(request: HttpRequest, token: str) -> HttpResponse:
    """`POST /hooks/<token>/`: no session, no CSRF token, the token is the key."""
    answer = hooks.deliver(token, request.content_type or "", request.body, request.POST)
    response = JsonResponse(answer.body, status=answer.status)
    if answer.retry_after is not None:
        response["Retry-After"] = str(answer.retry_after)
    return response
