"""Sources over the API: one output shape, and input shapes that name every writable field."""

from __future__ import annotations

from rest_framework import serializers

from feeds.models import Source, SourceKind
from feeds.validation import SOURCE_URL_MAX_LENGTH, validate_source_url


class SourceSerializer(serializers.ModelSerializer[Source]):
    class Meta:
        model = Source
        # Not last_error, etag or who added it: sources are shared by all users, and an error
        # text can describe the network the fetcher sees.
        fields = (
            "id",
            "kind",
            "url",
            "title",
            "site_url",
            "active",
            "poll_interval",
            "created_at",
            "last_polled_at",
            "last_success_at",
            "last_status",
            "error_count",
        )
        read_only_fields = fields


class SourceCreateSerializer(serializers.Serializer[None]):
    kind = serializers.ChoiceField(choices=SourceKind.choices, default=SourceKind.RSS)
    url = serializers.CharField(max_length=SOURCE_URL_MAX_LENGTH, validators=[validate_source_url])
    title = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)
    discover = serializers.BooleanField(
        required=False,
        default=True,
        help_text="For kind rss: when the URL is a web page, add the feed it links to instead "
        "(and refuse a page that links none).",
    )
    active = serializers.BooleanField(
        required=False, default=True, help_text="Staff only; ignored for other users."
    )
    poll_interval = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=7 * 24 * 3600,
        allow_null=True,
        default=None,
        help_text="Seconds between polls. Staff only; ignored for other users.",
    )


class SourceUpdateSerializer(serializers.Serializer[None]):
    """All fields optional (PATCH). Users who are not staff may change only the title of a
    source they added."""

    kind = serializers.ChoiceField(choices=SourceKind.choices, required=False)
    url = serializers.CharField(
        max_length=SOURCE_URL_MAX_LENGTH, validators=[validate_source_url], required=False
    )
    title = serializers.CharField(max_length=300, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)
    poll_interval = serializers.IntegerField(required=False, min_value=1, max_value=7 * 24 * 3600)


class OpmlUploadSerializer(serializers.Serializer[None]):
    """OPML import as a form upload (the file may also be sent as the request body)."""

    file = serializers.FileField(help_text="An OPML 1.0/2.0 file (at most OPML_MAX_BYTES).")


class OpmlImportItemSerializer(serializers.Serializer[None]):
    url = serializers.CharField()
    kind = serializers.CharField(help_text="rss, telegram or web ('' for a skipped link).")
    title = serializers.CharField()
    category = serializers.CharField(help_text="Folder path, e.g. 'Tech/AI'.")
    reason = serializers.CharField(help_text="Why it was skipped or invalid ('' otherwise).")
    source_id = serializers.IntegerField(
        allow_null=True, help_text="The source (created or existing); null otherwise."
    )


class OpmlImportReportSerializer(serializers.Serializer[None]):
    """What an OPML import did with each outline that has a URL."""

    created = OpmlImportItemSerializer(many=True)
    existing = OpmlImportItemSerializer(many=True, help_text="Already sources; titles kept.")
    skipped = OpmlImportItemSerializer(
        many=True, help_text="Not feeds, listed twice, or over the quota ('quota: ...')."
    )
    invalid = OpmlImportItemSerializer(many=True, help_text="Refused URLs.")
