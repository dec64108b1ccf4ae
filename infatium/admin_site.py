"""The admin site: Django's, with the system's health on its index page."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django.template.response import TemplateResponse


class InfatiumAdminSite(AdminSite):
    index_template = "admin/infatium_index.html"

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        # Only staff get here (the site wraps index in admin_view).
        from infatium.metrics import dashboard

        context = {"dashboard": dashboard(), **(extra_context or {})}
        return super().index(request, extra_context=context)
