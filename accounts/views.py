from typing import TYPE_CHECKING, Any

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_http_methods
from django.views.generic import CreateView

from accounts import services, time_zones
from accounts.addresses import client_address
from accounts.forms import PreferencesForm, SignUpForm

# The backend that checks passwords (the first one, django-axes's, only refuses).
PASSWORD_BACKEND = "django.contrib.auth.backends.ModelBackend"


def throttled_response(request: HttpRequest, throttled: services.Throttled) -> HttpResponse:
    """429, a page saying what was refused and when to try again, and Retry-After."""
    response = render(
        request,
        "registration/throttled.html",
        {"throttled": throttled, "minutes_left": throttled.minutes_left()},
        status=429,
    )
    response["Retry-After"] = str(throttled.seconds_left())
    return response


def login_locked_out(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """django-axes's AXES_LOCKOUT_CALLABLE, for our log-in page and the admin's alike.

    What axes passes besides the request differs between its sync and async paths; all we
    need is on the request.
    """
    return throttled_response(request, services.login_lockout(request))


if TYPE_CHECKING:
    # django-stubs make CreateView generic in its model and form; Django's own class cannot
    # be subscripted at run time (only django_stubs_ext.monkeypatch() would make it so).
    _CreateUserView = CreateView[User, SignUpForm]
else:
    _CreateUserView = CreateView


class SignUpView(_CreateUserView):
    """Create an account and log straight in: the next page is the room list.

    Counted per address (SIGNUPS_PER_HOUR): past the limit the answer is 429 before the
    form is even read, so a refused sign-up costs no password hash.
    """

    form_class = SignUpForm
    template_name = "registration/signup.html"
    success_url = reverse_lazy("rooms:list")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.address = client_address(request)
        throttled = services.signup_throttle(self.address)
        if throttled is not None:
            return throttled_response(request, throttled)
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: SignUpForm) -> HttpResponse:
        try:
            self.object = services.sign_up(form, self.address)
        except services.NameTaken as taken:
            form.add_error("username", taken.error)
            return self.form_invalid(form)
        login(self.request, self.object, backend=PASSWORD_BACKEND)
        return HttpResponseRedirect(self.get_success_url())


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    """The settings page: the time zone pages are rendered in. A plain form; with
    JavaScript, a first visit preselects the browser's zone (static/js/chat.js)."""
    chosen = time_zones.has_chosen_time_zone(request.user)
    form = PreferencesForm(
        request.POST or None, initial={"time_zone": time_zones.time_zone_of(request.user)}
    )
    if form.is_valid():
        time_zones.choose_time_zone(request.user, form.cleaned_data["time_zone"])
        return HttpResponseRedirect(reverse("preferences") + "?saved=1")
    context = {
        "form": form,
        "chosen": chosen,
        "saved": "saved" in request.GET and not form.is_bound,
    }
    return render(
        request, "accounts/preferences.html", context, status=400 if form.is_bound else 200
    )
