from django.contrib import admin

from rooms.models import Connection, Message, PrivateMessage, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "visibility", "owner", "created_at"]
    list_filter = ["visibility"]
    search_fields = ["slug", "owner__username"]
    autocomplete_fields = ["owner"]
    filter_horizontal = ["members"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "author", "short_body", "created_at"]
    list_filter = ["room"]
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
