from django.urls import path

from rooms import views

app_name = "pm"
urlpatterns = [
    path("", views.conversations, name="list"),
    path("<str:username>/", views.conversation, name="conversation"),
]
