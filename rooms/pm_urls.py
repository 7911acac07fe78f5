from django.urls import path

from rooms import converters, views  # noqa: F401 (converters registers <username:>)

app_name = "pm"
urlpatterns = [
    path("", views.conversations, name="list"),
    path("<username:username>/", views.conversation, name="conversation"),
    path("<username:username>/<int:pm_id>/", views.private_message_permalink, name="message"),
]
