"""App configuration that belongs to the wiring: the admin with its health dashboard."""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class InfatiumAdminConfig(AdminConfig):
    """django.contrib.admin, whose default site (`admin.site`, where every app registers) is
    infatium.admin_site.InfatiumAdminSite."""

    default_site = "infatium.admin_site.InfatiumAdminSite"
