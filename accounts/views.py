from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpResponse
from django.urls import reverse_lazy
from django.views.generic import CreateView


class SignUpView(CreateView):
    """Create an account and log straight in: the next page is the room list."""

    form_class = UserCreationForm
    template_name = "registration/signup.html"
    success_url = reverse_lazy("rooms:list")

    def form_valid(self, form: UserCreationForm) -> HttpResponse:
        response = super().form_valid(form)
        login(self.request, self.object)
        return response
