"""Feeds and posts over the API. Output shapes list their fields; write shapes are separate and
name exactly what a client may set (owner, created_at and the rest are never writable)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxLengthValidator
from rest_framework import serializers

from agents.models import AgentRun
from feeds.models import Source
from processing.models import Feed, Post, Story

MAX_KEYWORDS = 200
MAX_SOURCES_PER_FEED = 500


class KeywordLinesField(serializers.ListField[Any]):
    """A rule list: JSON strings in the API, one keyword or phrase per line in the model."""

    child = serializers.CharField(max_length=200)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_KEYWORDS)
        super().__init__(**kwargs)
        # ListField's length validator would run on the joined text; the count is checked on
        # the list instead (max_length still documents maxItems in the schema).
        self.validators = [v for v in self.validators if not isinstance(v, MaxLengthValidator)]

    def to_representation(self, data: Any) -> list[str]:
        return [line.strip() for line in str(data or "").splitlines() if line.strip()]

    def to_internal_value(self, data: Any) -> str:
        words: list[str] = super().to_internal_value(data)
        if self.max_length is not None and len(words) > self.max_length:
            raise serializers.ValidationError(f"At most {self.max_length} keywords.")
        if any("\n" in word or "\r" in word for word in words):
            raise serializers.ValidationError("A keyword cannot contain a line break.")
        # Order kept, duplicates dropped: the model keeps what the user typed.
        return "\n".join(dict.fromkeys(word.strip() for word in words if word.strip()))


class FeedSerializer(serializers.ModelSerializer[Feed]):
    sources = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    include_keywords = KeywordLinesField(
        read_only=True, help_text="A post must contain at least one (when any are set)."
    )
    exclude_keywords = KeywordLinesField(
        read_only=True, help_text="A post containing any is skipped."
    )

    class Meta:
        model = Feed
        fields = (
            "id",
            "name",
            "description",
            "sources",
            "include_keywords",
            "exclude_keywords",
            "summaries",
            "tags",
            "language",
            "token_budget_daily",
            "active",
            "created_at",
        )
        read_only_fields = fields


class FeedInputSerializer(serializers.Serializer[None]):
    """Create (POST, name required) or change (PUT, PATCH) a feed."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    sources = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        max_length=MAX_SOURCES_PER_FEED,
        required=False,
        help_text="Ids of existing sources; replaces the feed's sources.",
    )
    include_keywords = KeywordLinesField(required=False)
    exclude_keywords = KeywordLinesField(required=False)
    summaries = serializers.BooleanField(required=False, help_text="Summarize posts (AI agents).")
    tags = serializers.BooleanField(required=False, help_text="Tag posts (AI agents).")
    language = serializers.RegexField(
        r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        max_length=16,
        required=False,
        allow_blank=True,
        help_text="Language of summaries, e.g. 'en' (blank: as the post is).",
    )
    token_budget_daily = serializers.IntegerField(
        min_value=0,
        required=False,
        allow_null=True,
        help_text="LLM tokens this feed may spend per UTC day before its agents fall back to the "
        "offline default; null: the server's default; 0: never call a model. At most the "
        "server's AGENT_FEED_TOKEN_BUDGET_MAX.",
    )
    active = serializers.BooleanField(required=False)

    def validate_token_budget_daily(self, value: int | None) -> int | None:
        # Checked here rather than with max_value so the bound follows the running settings.
        limit = settings.AGENT_FEED_TOKEN_BUDGET_MAX
        if value is not None and value > limit:
            raise serializers.ValidationError(f"At most {limit} tokens per day.")
        return value


class PostSourceSerializer(serializers.ModelSerializer[Source]):
    class Meta:
        model = Source
        fields = ("id", "kind", "title", "url")
        read_only_fields = fields


class PostSerializer(serializers.ModelSerializer[Post]):
    """The same fields as a posts.created WebSocket message (realtime.broadcast.post_payload),
    plus the raw post's own URL, the relevance reason and whether the post is hidden."""

    feed_id = serializers.IntegerField(read_only=True)
    raw_post_id = serializers.IntegerField(read_only=True)
    story_id = serializers.IntegerField(read_only=True, allow_null=True)
    raw_url = serializers.CharField(source="raw_post.url", read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    source = PostSourceSerializer(source="raw_post.source", read_only=True)

    class Meta:
        model = Post
        fields = (
            "id",
            "feed_id",
            "raw_post_id",
            "story_id",
            "title",
            "summary",
            "url",
            "raw_url",
            "tags",
            "relevance",
            "relevance_reason",
            "hidden",
            "hidden_reason",
            "published_at",
            "created_at",
            "source",
        )
        read_only_fields = fields


class WsTicketSerializer(serializers.Serializer[None]):
    ticket = serializers.CharField(help_text="Connect with /ws/?ticket=<ticket>; works once.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")


class TokenRequestSerializer(serializers.Serializer[None]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer[None]):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`.")


class DecisionSerializer(serializers.ModelSerializer[AgentRun]):
    """One agent decision on one raw post for the feed: why a post was kept, hidden or dropped."""

    raw_post_id = serializers.IntegerField(read_only=True, allow_null=True)
    raw_post_title = serializers.CharField(source="raw_post.title", read_only=True, default="")

    class Meta:
        model = AgentRun
        fields = (
            "id",
            "agent",
            "model",
            "prompt_version",
            "raw_post_id",
            "raw_post_title",
            "output",
            "error_code",
            "error",
            "cached",
            "degraded",
            "input_tokens",
            "output_tokens",
            "latency_ms",
            "cost",
            "created_at",
        )
        read_only_fields = fields


class StorySourceSerializer(serializers.ModelSerializer[Source]):
    class Meta:
        model = Source
        fields = ("id", "title", "url")
        read_only_fields = fields


class StorySerializer(serializers.ModelSerializer[Story]):
    first_source = StorySourceSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Story
        fields = (
            "id",
            "title",
            "first_source",
            "source_count",
            "raw_post_count",
            "created_at",
            "last_seen_at",
        )
        read_only_fields = fields
