"""The search page (rooms/search.py does the searching)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.time_zones import in_viewer_time_zone
from rooms import search
from rooms.views import SignedInRequest


@login_required
@in_viewer_time_zone
@require_GET
def search_page(request: SignedInRequest) -> HttpResponse:
    """`GET /search/?q=...`: a plain form and a page of results, with or without
    JavaScript. Days in the query are the viewer's."""
    results = search.search(request.user, request.GET, timezone.get_current_timezone())
    status = 400 if results.criteria.errors else 200
    return render(request, "rooms/search.html", {"results": results}, status=status)
