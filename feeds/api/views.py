"""Sources: every signed-in user reads all of them (they are global by design, one fetch per
URL); staff create and change any, other users add within their quota and retitle their own."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feeds import services
from feeds.api.serializers import SourceCreateSerializer, SourceSerializer, SourceUpdateSerializer
from feeds.models import Source

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
        try:
            source, created = services.create_source(
                user=request.user,
                kind=data["kind"],
                url=data["url"],
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


def _validated(serializer_class: type[Any], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
