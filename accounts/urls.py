from django.contrib.auth import views as auth_views
from django.urls import path

from accounts.views import SignUpView, preferences

urlpatterns = [
    path("settings/", preferences, name="preferences"),
    path("signup/", SignUpView.as_view(), name="signup"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
