from __future__ import annotations

from django.contrib import admin

from processing.models import Feed, Post


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "active", "token_budget_daily", "created_at")
    list_select_related = ("owner",)
    list_filter = ("active",)
    search_fields = ("name", "description", "owner__username")
    raw_id_fields = ("owner",)
    filter_horizontal = ("sources",)
    fieldsets = (
        (None, {"fields": ("name", "owner", "active", "description", "sources")}),
        ("Rules", {"fields": ("include_keywords", "exclude_keywords")}),
        ("Options", {"fields": ("summaries", "tags", "language", "token_budget_daily")}),
    )


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ("__str__", "feed", "published_at", "created_at")
    list_select_related = ("feed",)
    list_filter = ("feed",)
    search_fields = ("title", "url")
    raw_id_fields = ("feed", "raw_post")
    readonly_fields = ("created_at", "batch")
