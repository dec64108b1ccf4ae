"""Sources: every signed-in user reads all of them (they are global by design, one fetch per
URL); staff create and change any, other users add within their quota and retitle their own."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, viewsets
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feeds import opml, services
from feeds.api.serializers import (
    OpmlImportReportSerializer,
    OpmlUploadSerializer,
    SourceCreateSerializer,
    SourceSerializer,
    SourceUpdateSerializer,
)
from feeds.models import Source, SourceKind

STAFF_ONLY_FIELDS = frozenset({"kind", "url", "active", "poll_interval"})


class CanChangeSource(permissions.BasePermission):
    """Reading is for everyone signed in; changing a source is for staff and its creator."""

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        return bool(
            user.is_staff or (obj.created_by_id is not None and obj.created_by_id == user.pk)
        )


class SourceViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Source]
):
    serializer_class = SourceSerializer
    permission_classes = [permissions.IsAuthenticated, CanChangeSource]
    # No PUT (every change is partial) and no DELETE: a source is shared by other users' feeds;
    # staff stop one with `active` or remove it in the admin.
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> Any:
        # Deliberately not scoped to the caller: sources are shared, and reading them is how a
        # user finds what to subscribe to.
        return Source.objects.order_by("-id")

    @extend_schema(
        request=SourceCreateSerializer,
        responses={
            201: SourceSerializer,
            200: OpenApiResponse(SourceSerializer, description="The URL was already a source."),
        },
    )
    def create(self, request: Request) -> Response:
        """Add a source, or get the existing one for this URL (200 instead of 201)."""
        data = _validated(SourceCreateSerializer, request.data)
        staff = bool(request.user.is_staff)
        url = data["url"]
        try:
            if data["kind"] == SourceKind.RSS and data["discover"]:
                url = services.discover_feed_url(url)
            source, created = services.create_source(
                user=request.user,
                kind=data["kind"],
                url=url,
                title=data["title"],
                poll_interval=data["poll_interval"] if staff else None,
                active=data["active"] if staff else True,
            )
        except services.QuotaExceeded as exc:
            raise PermissionDenied(str(exc)) from exc
        except DjangoValidationError as exc:
            raise ValidationError({"url": exc.messages}) from exc
        return Response(SourceSerializer(source).data, status=201 if created else 200)

    @extend_schema(request=SourceUpdateSerializer, responses=SourceSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        source = self.get_object()
        data = _validated(SourceUpdateSerializer, request.data)
        if not request.user.is_staff and STAFF_ONLY_FIELDS & data.keys():
            raise PermissionDenied(
                "Only staff may change a source's kind, url, active or interval."
            )
        try:
            source = services.update_source(source=source, **data)
        except services.SourceExists as exc:
            raise ValidationError({"url": [str(exc)]}) from exc
        except DjangoValidationError as exc:
            raise ValidationError({"url": exc.messages}) from exc
        return Response(SourceSerializer(source).data)


class OpmlBodyParser(BaseParser):
    """The OPML file as the request body: its first OPML_MAX_BYTES + 1 bytes, never more (one
    more so that the import can tell the file is too large)."""

    media_type = "text/x-opml"

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> bytes:
        return opml.read_limited(stream)


class XmlBodyParser(OpmlBodyParser):
    media_type = "application/xml"


class TextXmlBodyParser(OpmlBodyParser):
    media_type = "text/xml"


# Room for the multipart boundaries and headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024
OPML_BODY = {"type": "string", "format": "binary"}


class SourceOpmlView(APIView):
    """Sources as OPML: export all (they are shared), import a file (see feeds.opml)."""

    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [MultiPartParser, OpmlBodyParser, XmlBodyParser, TextXmlBodyParser]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The export is OPML whatever the client accepts (text/x-opml included); the import's
        # report and every error are JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="sources_opml_export",
        responses={
            (200, "text/x-opml"): OpenApiResponse(
                OpenApiTypes.STR,
                description="OPML 2.0: every source, in folders by category; Telegram channels "
                'and web pages as type="link" outlines, each with infatium:kind.',
            )
        },
    )
    def get(self, request: Request) -> HttpResponse:
        """Export every source as an OPML file."""
        sources = Source.objects.only("id", "kind", "url", "title", "site_url", "category")
        response = HttpResponse(opml.export_opml(sources), content_type=opml.OPML_CONTENT_TYPE)
        response["Content-Disposition"] = 'attachment; filename="infatium-sources.opml"'
        return response

    @extend_schema(
        operation_id="sources_opml_import",
        request={
            "multipart/form-data": OpmlUploadSerializer,
            "text/x-opml": OPML_BODY,
            "application/xml": OPML_BODY,
            "text/xml": OPML_BODY,
        },
        responses={
            201: OpenApiResponse(
                OpmlImportReportSerializer, description="At least one source was created."
            ),
            200: OpenApiResponse(OpmlImportReportSerializer, description="Nothing was new."),
            400: OpenApiResponse(
                description="Not an OPML file we accept (too large, a DOCTYPE, not OPML, ...): "
                '{"detail": "..."}.'
            ),
        },
    )
    def post(self, request: Request) -> Response:
        """Import an OPML file: adds the sources it lists that are not sources yet (within your
        quota) and keeps its folders as categories. Sent as the multipart field `file` or as the
        body (Content-Type text/x-opml or application/xml)."""
        try:
            report = opml.import_opml(user=request.user, data=_opml_upload(request))
        except opml.OpmlError as exc:
            raise ParseError(str(exc)) from exc
        return Response(
            OpmlImportReportSerializer(report).data, status=201 if report.created else 200
        )


def _opml_upload(request: Request) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > settings.OPML_MAX_BYTES + MULTIPART_OVERHEAD:
        raise opml.too_large()  # refused before anything is read
    data = request.data
    if isinstance(data, bytes):
        return data
    upload = request.FILES.get("file")
    if upload is None:
        raise opml.OpmlError(
            'Send the OPML file as the multipart field "file", or as the request body with '
            "Content-Type text/x-opml."
        )
    if upload.size is not None and upload.size > settings.OPML_MAX_BYTES:
        raise opml.too_large()
    return opml.read_limited(upload)


def _validated(serializer_class: type[Any], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
