"""The OpenAPI schema builds cleanly and is served with its docs, without any CDN."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command


def test_it_builds_the_schema_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"

    # --fail-on-warn turns every drf-spectacular warning (an untyped field, a path parameter it
    # cannot type) into a failure; --validate checks the result against the OpenAPI 3 spec.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/sources/",
        "/api/sources/{id}/",
        "/api/feeds/",
        "/api/feeds/{id}/",
        "/api/feeds/{feed_id}/posts/",
        "/api/feeds/{feed_id}/posts/{id}/",
        "/api/auth/token/",
        "/api/ws-ticket/",
    } <= set(schema["paths"])
    post_params = {
        p["name"] for p in schema["paths"]["/api/feeds/{feed_id}/posts/"]["get"]["parameters"]
    }
    assert {
        "cursor",
        "page_size",
        "tag",
        "since",
        "until",
        "min_relevance",
        "search",
    } <= post_params
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.django_db
def test_it_serves_the_schema_to_anyone(anon_client):
    response = anon_client.get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/feeds/{feed_id}/posts/" in response.content


@pytest.mark.django_db
def test_it_serves_swagger_ui_from_local_static_files(anon_client):
    response = anon_client.get("/api/docs/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
