from django.urls import path, re_path

from rooms import attachment_views, converters, views  # noqa: F401 (converters: <username:>)

app_name = "rooms"
urlpatterns = [
    path("", views.room_list, name="list"),
    path("<str:slug>/", views.room_detail, name="detail"),
    path("<str:slug>/messages/", views.post_message, name="post"),
    path("<str:slug>/online/", views.online, name="online"),
    path("<str:slug>/messages/<int:message_id>/", views.message_permalink, name="message"),
    path("<str:slug>/messages/<int:message_id>/edit/", views.edit_message, name="edit_message"),
    path(
        "<str:slug>/messages/<int:message_id>/delete/",
        views.delete_message,
        name="delete_message",
    ),
    path("<str:slug>/messages/<int:message_id>/reactions/", views.reactions, name="reactions"),
    # A day as yyyy/mm/dd (zero-padded, so each day has one address); the view 404s a
    # day that is no date (2026/02/30).
    re_path(
        r"^(?P<slug>[^/]+)/(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/(?P<day>[0-9]{2})/$",
        views.day_transcript,
        name="transcript",
    ),
    # Files, access-checked (rooms/attachment_views.py): never a public address.
    path(
        "<str:slug>/attachments/<int:attachment_id>/",
        attachment_views.attachment_file,
        name="attachment",
    ),
    path(
        "<str:slug>/attachments/<int:attachment_id>/thumbnail/",
        attachment_views.attachment_thumbnail,
        name="attachment_thumbnail",
    ),
    path("<str:slug>/members/", views.invite_member, name="invite"),
    path("<str:slug>/notifications/", views.notification_level, name="notification_level"),
    path(
        "<str:slug>/members/<username:username>/remove/", views.remove_member, name="remove_member"
    ),
]
