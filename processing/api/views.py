"""Feeds (owner only), their posts (read-only), and access: API tokens and WebSocket tickets.

Every queryset here starts from the caller's own feeds, so another user's feed, post or id is
a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import permissions, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import AgentRun
from feeds.models import Source
from feeds.services import QuotaExceeded
from infatium.api_policy import AuthThrottle
from processing import services
from processing.api import tickets
from processing.api.filters import PostFilter
from processing.api.serializers import (
    DecisionSerializer,
    FeedInputSerializer,
    FeedSerializer,
    PostSerializer,
    StorySerializer,
    TokenRequestSerializer,
    TokenSerializer,
    WsTicketSerializer,
)
from processing.models import Feed, Post, Story

# Input field → service keyword (the API says `sources`, the service takes ids).
_FEED_FIELDS = {
    "name": "name",
    "description": "description",
    "sources": "source_ids",
    "include_keywords": "include_keywords",
    "exclude_keywords": "exclude_keywords",
    "summaries": "summaries",
    "tags": "tags",
    "language": "language",
    "token_budget_daily": "token_budget_daily",
    "active": "active",
}


class FeedViewSet(viewsets.ModelViewSet[Feed]):
    """The caller's feeds: what to collect (sources, rules) and how to process it (options)."""

    serializer_class = FeedSerializer

    def get_queryset(self) -> QuerySet[Feed]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Feed.objects.none()
        return (
            Feed.objects.filter(owner=self.request.user)
            .prefetch_related(Prefetch("sources", queryset=Source.objects.only("id")))
            .order_by("-id")
        )

    @extend_schema(request=FeedInputSerializer, responses={201: FeedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        changes = _feed_input(request.data, partial=False)
        try:
            feed = services.create_feed(owner=request.user, **changes)
        except QuotaExceeded as exc:
            raise PermissionDenied(str(exc)) from exc
        except (services.FeedNameTaken, services.UnknownSources) as exc:
            raise _feed_error(exc) from exc
        return Response(self._output(feed.pk), status=status.HTTP_201_CREATED)

    @extend_schema(request=FeedInputSerializer, responses=FeedSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        feed = self.get_object()
        changes = _feed_input(request.data, partial=bool(kwargs.get("partial")))
        try:
            services.update_feed(feed=feed, **changes)
        except (services.FeedNameTaken, services.UnknownSources) as exc:
            raise _feed_error(exc) from exc
        return Response(self._output(feed.pk))

    @extend_schema(request=FeedInputSerializer, responses=FeedSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_feed(feed=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _output(self, feed_id: int) -> dict[str, Any]:
        # Re-read through the scoped queryset: the response shows what was committed.
        return dict(FeedSerializer(self.get_queryset().get(pk=feed_id)).data)


def _feed_input(data: Any, *, partial: bool) -> dict[str, Any]:
    serializer = FeedInputSerializer(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return {_FEED_FIELDS[name]: value for name, value in serializer.validated_data.items()}


def _feed_error(exc: Exception) -> ValidationError:
    field = "name" if isinstance(exc, services.FeedNameTaken) else "sources"
    return ValidationError({field: [str(exc)]})


FEED_ID = OpenApiParameter("feed_id", OpenApiTypes.INT, OpenApiParameter.PATH)


@extend_schema(tags=["posts"])
@extend_schema_view(
    list=extend_schema(parameters=[FEED_ID]), retrieve=extend_schema(parameters=[FEED_ID])
)
class PostViewSet(viewsets.ReadOnlyModelViewSet[Post]):
    """A feed's posts, newest first, in pages that stay stable while new posts arrive."""

    serializer_class = PostSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = PostFilter

    def get_queryset(self) -> QuerySet[Post]:
        if getattr(self, "swagger_fake_view", False):
            return Post.objects.none()
        feed_id = int(self.kwargs["feed_id"])
        # One query for ownership so another user's feed is a 404, not an empty list.
        if not Feed.objects.filter(id=feed_id, owner=self.request.user).exists():
            raise NotFound()
        posts = Post.objects.filter(feed_id=feed_id)
        # Hidden posts (no longer wanted after a description change) only when asked for.
        if self.request.query_params.get("include_hidden") not in ("1", "true"):
            posts = posts.filter(hidden=False)
        return (
            posts.select_related("raw_post__source")
            # Not the raw post's text and HTML: they can be large and are not shown here.
            .only(
                "id",
                "feed_id",
                "story_id",
                "title",
                "summary",
                "url",
                "tags",
                "relevance",
                "relevance_reason",
                "hidden",
                "hidden_reason",
                "published_at",
                "created_at",
                "raw_post__id",
                "raw_post__url",
                "raw_post__source__id",
                "raw_post__source__kind",
                "raw_post__source__title",
                "raw_post__source__url",
            )
            .order_by("-id")
        )


@extend_schema(tags=["access"])
class WsTicketView(APIView):
    """A single-use ticket for opening the WebSocket (`/ws/?ticket=...`) as the caller."""

    @extend_schema(request=None, responses={201: WsTicketSerializer})
    def post(self, request: Request) -> Response:
        ticket = tickets.issue_ticket(request.user)
        body = {"ticket": ticket, "expires_in": tickets.ttl_seconds()}
        return Response(WsTicketSerializer(body).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["access"])
class ObtainTokenView(APIView):
    """Exchange a user name and password for the user's API token (created on first use)."""

    # Anonymous by nature; sign-in attempts are throttled per client address.
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [AuthThrottle]

    @extend_schema(request=TokenRequestSerializer, responses=TokenSerializer)
    def post(self, request: Request) -> Response:
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response(TokenSerializer({"token": token.key}).data)


def _owned_feed_id(request: Request, kwargs: dict[str, Any]) -> int:
    feed_id = int(kwargs["feed_id"])
    if not Feed.objects.filter(id=feed_id, owner=request.user).exists():
        raise NotFound()
    return feed_id


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("agent", str, description="relevance, summarize or tag"),
            OpenApiParameter("raw_post", int, description="Decisions on one raw post."),
        ]
    )
)
class DecisionViewSet(viewsets.ReadOnlyModelViewSet[AgentRun]):
    """Every agent decision taken for a feed, newest first, including on raw posts the feed
    did not keep: the answer to "why is this post not in my feed?"."""

    serializer_class = DecisionSerializer

    def get_queryset(self) -> QuerySet[AgentRun]:
        if getattr(self, "swagger_fake_view", False):
            return AgentRun.objects.none()
        runs = AgentRun.objects.filter(feed_id=_owned_feed_id(self.request, self.kwargs))
        agent = self.request.query_params.get("agent")
        if agent:
            runs = runs.filter(agent=agent)
        raw_post = self.request.query_params.get("raw_post")
        if raw_post:
            if not raw_post.isdigit():
                raise ValidationError({"raw_post": "an integer id"})
            runs = runs.filter(raw_post_id=int(raw_post))
        return (
            runs.select_related("raw_post")
            .defer("raw_post__text", "raw_post__html")
            .order_by("-id")
        )


class StoryViewSet(viewsets.ReadOnlyModelViewSet[Story]):
    """Stories (one real-world event, reported by one or more sources) that appear in the
    caller's feeds."""

    serializer_class = StorySerializer

    def get_queryset(self) -> QuerySet[Story]:
        if getattr(self, "swagger_fake_view", False):
            return Story.objects.none()
        visible = Post.objects.filter(feed__owner=self.request.user).values("story_id")
        return Story.objects.filter(id__in=visible).select_related("first_source").order_by("-id")
