from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from agents.models import AgentCacheEntry, AgentRun, TokenUsage


class _ReadOnly(admin.ModelAdmin):
    """Records are written by agents.services only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class HasErrorFilter(admin.SimpleListFilter):
    title = "error"
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return [("yes", "With error"), ("no", "Without error")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(error_code="")
        if self.value() == "no":
            return queryset.filter(error_code="")
        return queryset


@admin.register(AgentRun)
class AgentRunAdmin(_ReadOnly):
    list_display = (
        "id",
        "agent",
        "item_key",
        "feed",
        "model",
        "cached",
        "degraded",
        "verdict",
        "why",
        "error_code",
        "tokens",
        "cost",
        "latency_ms",
        "created_at",
    )
    list_select_related = ("feed",)
    list_filter = ("agent", "model", "cached", "degraded", HasErrorFilter, "error_code")
    search_fields = ("item_key", "input_hash", "description_hash")
    raw_id_fields = ("feed", "raw_post")
    date_hierarchy = "created_at"
    ordering = ("-id",)

    @admin.display(description="verdict")
    def verdict(self, obj: AgentRun) -> str:
        out = obj.output or {}
        if obj.agent == "relevance" and "score" in out:
            return f"{'relevant' if out.get('relevant') else 'not relevant'} ({out['score']:.2f})"
        if obj.agent == "tag":
            return ", ".join(out.get("tags") or []) or "—"
        if obj.agent == "summarize":
            return (out.get("title") or "")[:80]
        return "—"

    @admin.display(description="why")
    def why(self, obj: AgentRun) -> str:
        if obj.error:
            return obj.error[:160]
        out = obj.output or {}
        return (out.get("reason") or out.get("summary") or "")[:160]

    @admin.display(description="tokens")
    def tokens(self, obj: AgentRun) -> int:
        return obj.total_tokens


@admin.register(AgentCacheEntry)
class AgentCacheEntryAdmin(_ReadOnly):
    list_display = ("id", "agent", "model", "prompt_version", "state", "answered_by", "updated_at")
    list_filter = ("agent", "model", "state")
    search_fields = ("input_hash", "description_hash")
    raw_id_fields = ("run",)
    ordering = ("-id",)


@admin.register(TokenUsage)
class TokenUsageAdmin(_ReadOnly):
    list_display = ("feed", "day", "tokens")
    list_select_related = ("feed",)
    list_filter = ("day",)
    raw_id_fields = ("feed",)
    ordering = ("-day", "feed")
