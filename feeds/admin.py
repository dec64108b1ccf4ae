from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver

from feeds import admin_opml, services
from feeds.models import PollLog, RawPost, Source, silent_source_ids
from feeds.tasks import enqueue_poll

# What a curator reads of a poll, in the source's inline and in the poll log list.
POLL_COLUMNS = (
    "started_at",
    "status",
    "http_status",
    "items_seen",
    "items_new",
    "items_updated",
    "duration_ms",
    "error_class",
    "outage",
)


class PollLogInline(admin.TabularInline):
    model = PollLog
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-started_at",)
    fields = (*POLL_COLUMNS, "error")
    readonly_fields = fields
    verbose_name_plural = "Recent polls"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PollLog]:
        return super().get_queryset(request).order_by("-started_at")


class HealthFilter(admin.SimpleListFilter):
    """Failing (last poll errored), silent (no new item for much longer than usual), healthy."""

    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("failing", "Failing"), ("silent", "Silent"), ("healthy", "Healthy")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Source]) -> QuerySet[Source]:
        if self.value() == "failing":
            return queryset.filter(error_count__gt=0)
        if self.value() == "silent":
            return queryset.filter(id__in=silent_source_ids(queryset))
        if self.value() == "healthy":
            return queryset.filter(error_count=0).exclude(id__in=silent_source_ids(queryset))
        return queryset


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "kind",
        "active",
        "last_polled_at",
        "last_status",
        "error_count",
        "silent",
        "current_interval",
        "next_poll_at",
    )
    list_filter = (HealthFilter, "kind", "active", "last_status", "category")
    search_fields = ("title", "url", "category")
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
        "current_interval",
        "last_new_item_at",
        "mean_item_gap",
        "cursor",
        "tg_channel_id",
    )
    fieldsets = (
        (None, {"fields": ("kind", "url", "title", "site_url", "category", "active")}),
        (
            "Polling",
            {
                "fields": (
                    "poll_interval",
                    "adaptive",
                    "current_interval",
                    "last_new_item_at",
                    "mean_item_gap",
                    "user_agent",
                    "config",
                )
            },
        ),
        ("Telegram", {"classes": ("collapse",), "fields": ("tg_channel_id", "cursor")}),
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
    actions = ["poll_now", "enable", "disable", "export_opml"]
    # Adds "Import OPML" and "Export OPML" to the object tools (views in feeds.admin_opml).
    change_list_template = "admin/feeds/source/change_list.html"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # First: the default "<object_id>/" pattern would take "opml/import/" for an id.
        return [*admin_opml.urls(self), *super().get_urls()]

    @admin.display(boolean=True, description="Silent")
    def silent(self, source: Source) -> bool:
        return source.is_silent

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

    @admin.action(description="Export as OPML")
    def export_opml(self, request: HttpRequest, queryset: QuerySet[Source]) -> HttpResponse:
        return admin_opml.export_response(queryset)


@admin.register(RawPost)
class RawPostAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "source",
        "published_at",
        "fetched_at",
        "processed_at",
        "edited_at",
        "deleted_at",
    )
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
    list_display = ("source", *POLL_COLUMNS)
    list_select_related = ("source",)
    list_filter = ("status", "outage", "error_class")
    raw_id_fields = ("source",)
    readonly_fields = [f.name for f in PollLog._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
