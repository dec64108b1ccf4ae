"""Query parameters of a feed's post list."""

from __future__ import annotations

import json

import django_filters
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Q, QuerySet

from processing.models import Post

# No stemming: feeds mix languages, and a language's stemmer mangles words of the others.
SEARCH_CONFIG = "simple"


class PostFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(
        method="filter_tag", max_length=100, help_text="Posts carrying this tag (exact)."
    )
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Added to the feed at or after."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Added to the feed before."
    )
    published_since = django_filters.IsoDateTimeFilter(
        field_name="published_at", lookup_expr="gte", help_text="Published at or after."
    )
    published_until = django_filters.IsoDateTimeFilter(
        field_name="published_at", lookup_expr="lt", help_text="Published before."
    )
    min_relevance = django_filters.NumberFilter(
        field_name="relevance",
        lookup_expr="gte",
        help_text="Relevance at least this (posts not scored yet are left out).",
    )
    story = django_filters.NumberFilter(field_name="story_id", help_text="Posts of this story.")
    search = django_filters.CharFilter(
        method="filter_search",
        max_length=200,
        help_text="Full-text search in title and summary (web search syntax: "
        '"exact phrase", -word, or).',
    )

    class Meta:
        model = Post
        fields: list[str] = []

    def filter_tag(self, queryset: QuerySet[Post], name: str, value: str) -> QuerySet[Post]:
        if not value:
            return queryset
        if connection.vendor == "postgresql":
            return queryset.filter(tags__contains=[value])
        # SQLite has no JSON containment; the stored text holds the tag JSON-encoded, quotes
        # included, so this matches whole tags only.
        return queryset.filter(tags__icontains=json.dumps(value))

    def filter_search(self, queryset: QuerySet[Post], name: str, value: str) -> QuerySet[Post]:
        value = value.strip()
        if not value:
            return queryset
        if connection.vendor == "postgresql":
            return queryset.alias(
                search_vector=SearchVector("title", "summary", config=SEARCH_CONFIG)
            ).filter(
                search_vector=SearchQuery(value, config=SEARCH_CONFIG, search_type="websearch")
            )
        return queryset.filter(Q(title__icontains=value) | Q(summary__icontains=value))
