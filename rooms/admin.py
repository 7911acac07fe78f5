from typing import Any

from django.contrib import admin

from rooms.models import Connection, Message, MessageRevision, PrivateMessage, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "visibility", "owner", "created_at"]
    list_filter = ["visibility"]
    search_fields = ["slug", "owner__username"]
    autocomplete_fields = ["owner"]
    filter_horizontal = ["members"]


class RevisionInline(admin.TabularInline):
    """Earlier versions of an edited message: staff see what it said before."""

    model = MessageRevision
    fields = ("written_at", "replaced_at", "body")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "author", "short_body", "created_at", "edited_at", "deleted_at"]
    list_filter = ["room"]
    # Edits and deletions go through the chat (rooms/changes.py): they take the room's
    # sequence number and reach every open page. Saved here they would do neither.
    readonly_fields = ["seq", "changed_seq", "edited_at", "deleted_at"]
    inlines = [RevisionInline]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        return [*self.readonly_fields, "body", "room", "author", "reply_to"] if obj else []

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    search_fields = ["body", "author__username", "room__slug"]
    list_select_related = ["room", "author"]
    autocomplete_fields = ["room", "author"]
    date_hierarchy = "created_at"

    @admin.display(description="Text")
    def short_body(self, message: Message) -> str:
        return message.body[:80]


@admin.register(PrivateMessage)
class PrivateMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "sender", "recipient", "short_body", "created_at"]
    search_fields = ["body", "sender__username", "recipient__username"]
    list_select_related = ["sender", "recipient"]
    autocomplete_fields = ["sender", "recipient"]
    date_hierarchy = "created_at"

    @admin.display(description="Text")
    def short_body(self, pm: PrivateMessage) -> str:
        return pm.body[:80]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ["user", "room", "server", "seen_at"]
    list_filter = ["server"]
    search_fields = ["user__username", "room__slug"]
    list_select_related = ["room", "user"]
