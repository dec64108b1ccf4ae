"""OPML in the Source admin: an import page (upload, report as messages), an export of every
source and an export action. Hooked into SourceAdmin by feeds.admin; parsing, the rules of an
import and the file format are feeds.opml's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from feeds import opml
from feeds.models import Source

# Items listed one by one in the messages; the rest are counted.
MAX_LISTED = 20


class OpmlImportForm(forms.Form):
    file = forms.FileField(
        label="OPML file",
        help_text="Folders become categories; URLs already there are kept as they are.",
    )


def urls(model_admin: ModelAdmin[Source]) -> list[URLPattern]:
    """The import and export-all views, behind the admin's login and staff check."""
    site = model_admin.admin_site
    info = (model_admin.opts.app_label, model_admin.opts.model_name)
    return [
        path(
            "opml/import/",
            site.admin_view(lambda request: import_view(model_admin, request)),
            name="{}_{}_opml_import".format(*info),
        ),
        path(
            "opml/export/",
            site.admin_view(lambda request: export_all_view(model_admin, request)),
            name="{}_{}_opml_export".format(*info),
        ),
    ]


def import_view(model_admin: ModelAdmin[Source], request: HttpRequest) -> HttpResponse:
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    form = OpmlImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            if upload.size is not None and upload.size > settings.OPML_MAX_BYTES:
                raise opml.too_large()
            report = opml.import_opml(user=request.user, data=opml.read_limited(upload))
        except opml.OpmlError as exc:
            form.add_error("file", str(exc))
        else:
            _report(model_admin, request, report)
            return HttpResponseRedirect(reverse("admin:feeds_source_changelist"))
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Import OPML",
        "form": form,
        "max_bytes": settings.OPML_MAX_BYTES,
        "max_outlines": settings.OPML_MAX_OUTLINES,
    }
    return TemplateResponse(request, "admin/feeds/source/opml_import.html", context)


def export_all_view(model_admin: ModelAdmin[Source], request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    return export_response(Source.objects.all())


def export_response(sources: QuerySet[Source]) -> HttpResponse:
    fields = ("id", "kind", "url", "title", "site_url", "category")
    response = HttpResponse(
        opml.export_opml(sources.only(*fields)), content_type=opml.OPML_CONTENT_TYPE
    )
    response["Content-Disposition"] = 'attachment; filename="infatium-sources.opml"'
    return response


def _report(
    model_admin: ModelAdmin[Source], request: HttpRequest, report: opml.ImportReport
) -> None:
    level = messages.SUCCESS if report.created or report.existing else messages.WARNING
    model_admin.message_user(request, f"OPML import: {report.summary()}.", level)
    for label, items, item_level in (
        ("Skipped", report.skipped, messages.WARNING),
        ("Invalid", report.invalid, messages.ERROR),
    ):
        for item in items[:MAX_LISTED]:
            name = f"{item.title} ({item.url})" if item.title else item.url or "(no URL)"
            model_admin.message_user(request, f"{label}: {name}: {item.reason}", item_level)
        if len(items) > MAX_LISTED:
            more = len(items) - MAX_LISTED
            model_admin.message_user(request, f"{label}: {more} more not listed.", item_level)
