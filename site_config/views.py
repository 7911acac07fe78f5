from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    """`/`: the rooms for a signed-in user; for a visitor, what Hypertalk is and the way in."""
    if request.user.is_authenticated:
        return redirect("rooms:list")
    return render(request, "landing.html")
