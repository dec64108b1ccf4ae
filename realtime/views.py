from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@login_required
@ensure_csrf_cookie
def live(request: HttpRequest) -> HttpResponse:
    """The live page: pick a feed, see its posts arrive. Data comes from /api/ and /ws/."""
    feeds = request.user.feeds.order_by("name").values("id", "name")  # type: ignore[union-attr]
    return render(request, "realtime/live.html", {"feeds": list(feeds)})
