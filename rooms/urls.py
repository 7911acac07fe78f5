from django.urls import path

from rooms import converters, views  # noqa: F401 (converters registers <username:>)

app_name = "rooms"
urlpatterns = [
    path("", views.room_list, name="list"),
    path("<str:slug>/", views.room_detail, name="detail"),
    path("<str:slug>/messages/", views.post_message, name="post"),
    path("<str:slug>/messages/<int:message_id>/", views.message_permalink, name="message"),
    path("<str:slug>/members/", views.invite_member, name="invite"),
    path(
        "<str:slug>/members/<username:username>/remove/", views.remove_member, name="remove_member"
    ),
]
