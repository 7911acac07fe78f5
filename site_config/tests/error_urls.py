"""The site's URLs plus one view that fails: for the 500 page's test (test_pages.py)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from site_config.urls import urlpatterns as site_urlpatterns


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug, on purpose (site_config/tests/test_pages.py)")


urlpatterns = [*site_urlpatterns, path("fail/", fail)]
