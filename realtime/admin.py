"""Read-only views of the outbox (with its size and lag) and of ingest dead letters."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from realtime.models import DeadLetter, IngestedEvent, OutboxEvent
from realtime.outbox import outbox_stats


class _ReadOnly(admin.ModelAdmin):
    # These rows are written by the bridge and the services only; editing one would break the
    # relay's bookkeeping or hide a failure.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PendingFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "Pending"), ("failing", "Pending, failed before"), ("sent", "Sent")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "pending":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "failing":
            return queryset.filter(published_at__isnull=True, attempts__gt=0)
        if self.value() == "sent":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(_ReadOnly):
    list_display = [
        "id",
        "subject",
        "ordering_key",
        "created_at",
        "published_at",
        "lag",
        "attempts",
        "short_error",
    ]
    list_filter = [PendingFilter, "subject"]
    search_fields = ["=id", "=ordering_key"]
    ordering = ["-id"]
    show_full_result_count = False  # COUNT(*) over a large outbox on every page is wasted work
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]

    @admin.display(description="lag")
    def lag(self, obj: OutboxEvent) -> str:
        end = obj.published_at or timezone.now()
        seconds = (end - obj.created_at).total_seconds()
        return f"{seconds:.1f} s" + ("" if obj.published_at else " (pending)")

    @admin.display(description="last error")
    def short_error(self, obj: OutboxEvent) -> str:
        return obj.last_error[:80]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "outbox_stats": outbox_stats()}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(DeadLetter)
class DeadLetterAdmin(_ReadOnly):
    list_display = ["id", "stream", "stream_seq", "subject", "event_id", "num_delivered", "error"]
    list_filter = ["stream", "consumer"]
    search_fields = ["=event_id"]
    ordering = ["-id"]
    readonly_fields = [f.name for f in DeadLetter._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a dead letter is how an operator marks it dealt with.
        return bool(request.user.is_superuser)


@admin.register(IngestedEvent)
class IngestedEventAdmin(_ReadOnly):
    list_display = ["event_id", "raw_post", "created", "received_at"]
    list_select_related = ["raw_post"]
    raw_id_fields = ["raw_post"]
    search_fields = ["=event_id"]
    ordering = ["-received_at"]
