from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from feeds import services
from feeds.models import PollLog, RawPost, Source
from feeds.tasks import enqueue_poll


class PollLogInline(admin.TabularInline):
    model = PollLog
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-started_at",)
    fields = ("started_at", "status", "http_status", "items_seen", "items_new", "error")
    readonly_fields = fields
    verbose_name_plural = "Recent polls"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PollLog]:
        return super().get_queryset(request).order_by("-started_at")


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "kind",
        "active",
        "last_polled_at",
        "last_status",
        "error_count",
        "next_poll_at",
    )
    list_filter = ("kind", "active", "last_status")
    search_fields = ("title", "url")
    readonly_fields = (
        "next_poll_at",
        "last_polled_at",
        "last_success_at",
        "last_status",
        "last_error",
        "error_count",
        "etag",
        "last_modified",
        "created_at",
    )
    fieldsets = (
        (None, {"fields": ("kind", "url", "title", "site_url", "active", "poll_interval")}),
        (
            "Last poll",
            {
                "fields": (
                    "last_polled_at",
                    "last_status",
                    "last_error",
                    "error_count",
                    "last_success_at",
                    "next_poll_at",
                )
            },
        ),
        ("HTTP cache", {"classes": ("collapse",), "fields": ("etag", "last_modified")}),
    )
    inlines = [PollLogInline]
    actions = ["poll_now", "enable", "disable"]

    @admin.action(description="Poll now")
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        queued, busy = 0, 0
        for source_id in queryset.values_list("id", flat=True):
            claim = services.claim_source_now(source_id=source_id)
            if claim is None:
                busy += 1
            else:
                enqueue_poll(claim)
                queued += 1
        self.message_user(request, f"Queued {queued} poll(s).", messages.SUCCESS)
        if busy:
            self.message_user(
                request, f"{busy} source(s) skipped: a poll is already running.", messages.WARNING
            )

    @admin.action(description="Enable")
    def enable(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        queryset.update(active=True)

    @admin.action(description="Disable")
    def disable(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        queryset.update(active=False)


@admin.register(RawPost)
class RawPostAdmin(admin.ModelAdmin):
    list_display = ("__str__", "source", "published_at", "fetched_at", "processed_at")
    list_select_related = ("source",)
    list_filter = ("source__kind",)
    search_fields = ("title", "external_id", "url")
    raw_id_fields = ("source", "poll")
    date_hierarchy = "fetched_at"
    readonly_fields = [f.name for f in RawPost._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(PollLog)
class PollLogAdmin(admin.ModelAdmin):
    list_display = ("source", "started_at", "status", "http_status", "items_seen", "items_new")
    list_select_related = ("source",)
    list_filter = ("status",)
    raw_id_fields = ("source",)
    readonly_fields = [f.name for f in PollLog._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
