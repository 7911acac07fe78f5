"""/styleguide/: the designer kit's gallery of every partial (templates/styleguide/).

Shown with DEBUG on (to a signed-in user) or to staff; anyone else gets the 404 any
missing page gets, so that it is not discovered. The page is read-only: its samples are
unsaved instances (site_config/styleguide_samples.py), each rendered by the chat's own
partial, for the signed-in viewer (their per-viewer style applies) or, for what the
socket pushes, as the socket renders it: once for everyone, without a request.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from accounts.time_zones import in_viewer_time_zone
from site_config import styleguide_samples
from site_config.styleguide_samples import Sample


@dataclass(frozen=True)
class Shown:
    """A sample and its rendering."""

    partial: str
    state: str
    frame: str
    socket: str
    pushed: bool
    alone: bool
    invisible: bool
    html: SafeString


def _render(sample: Sample, request: HttpRequest) -> SafeString:
    template = sample.template or sample.partial
    if sample.pushed:
        html = render_to_string(template, sample.context)
    else:
        html = render_to_string(template, sample.context, request=request)
    # A template's rendering (autoescaped): safe as it is.
    return mark_safe(html.strip())


@require_GET
@in_viewer_time_zone
def styleguide(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not (settings.DEBUG or (user.is_authenticated and user.is_staff)):
        raise Http404("No such page.")
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    sections = [
        {
            "slug": section.slug,
            "title": section.title,
            "samples": [
                Shown(
                    sample.partial,
                    sample.state,
                    sample.frame,
                    sample.socket,
                    sample.pushed,
                    sample.alone,
                    sample.invisible,
                    _render(sample, request),
                )
                for sample in section.samples
            ],
        }
        for section in styleguide_samples.sections(user)
    ]
    return render(request, "styleguide/index.html", {"sections": sections})
