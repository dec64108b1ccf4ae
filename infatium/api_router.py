"""Every REST endpoint under /api/: one router for the viewsets, plus the plain views.

Agent decisions are per feed (`feeds/{id}/decisions/`, filterable by raw post), because a
rejected raw post has no post of its own: that is where "why is this not in my feed" is answered.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from feeds.api.views import SourceOpmlView, SourceViewSet
from processing.api.views import (
    DecisionViewSet,
    FeedViewSet,
    ObtainTokenView,
    PostViewSet,
    StoryViewSet,
    WsTicketView,
)

app_name = "api"

# SimpleRouter, in DEBUG too: no browsable root or format-suffix routes, the same URLs
# everywhere; /api/docs/ is the index.
router = SimpleRouter()
router.register("sources", SourceViewSet, basename="source")
router.register("feeds", FeedViewSet, basename="feed")
router.register(r"feeds/(?P<feed_id>\d+)/posts", PostViewSet, basename="feed-post")
router.register(r"feeds/(?P<feed_id>\d+)/decisions", DecisionViewSet, basename="feed-decision")
router.register("stories", StoryViewSet, basename="story")

urlpatterns = [
    # Before the router: "sources/{pk}/" would otherwise take "opml" for an id.
    path("sources/opml/", SourceOpmlView.as_view(), name="source-opml"),
    *router.urls,
    path("auth/token/", ObtainTokenView.as_view(), name="auth-token"),
    path("ws-ticket/", WsTicketView.as_view(), name="ws-ticket"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
