"""OPML over the API: export of the shared sources, import as upload or body, idempotent
re-imports, quotas, throttles, and clear 400s for hostile files."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from feeds.models import Source
from feeds.opml import parse_opml
from tests.api.factories import SourceFactory
from tests.feeds.test_opml import (
    BILLION_LAUGHS,
    NESTED,
    XXE_PASSWD,
    audited,
    external_dtd,
    external_entity,
    feed,
    folder,
    opml_doc,
)

pytestmark = pytest.mark.django_db

URL = "/api/sources/opml/"


def post_body(client, data: bytes, content_type: str = "text/x-opml"):
    return client.generic("POST", URL, data, content_type=content_type)


def post_file(client, data: bytes, name: str = "feeds.opml"):
    upload = SimpleUploadedFile(name, data, content_type="text/x-opml")
    return client.post(URL, {"file": upload}, format="multipart")


def test_it_refuses_anonymous_export_and_import(anon_client):
    SourceFactory()

    export = anon_client.get(URL)
    body = post_body(anon_client, NESTED)
    upload = post_file(anon_client, NESTED)

    assert [export.status_code, body.status_code, upload.status_code] == [401, 401, 401]
    assert b"<opml" not in export.content
    assert Source.objects.count() == 1


def test_it_exports_every_source_to_any_signed_in_user(alice_client, bob):
    mine = SourceFactory(title="Mine", category="Tech/AI", created_by=None)
    theirs = SourceFactory(title="Theirs", created_by=bob)

    response = alice_client.get(URL, HTTP_ACCEPT="text/x-opml")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/x-opml; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="infatium-sources.opml"'
    entries = {e.url: e for e in parse_opml(response.content)}
    assert set(entries) == {mine.url, theirs.url}
    assert entries[mine.url].category == "Tech/AI"


def test_it_imports_an_uploaded_file(alice, alice_client):
    response = post_file(alice_client, NESTED)

    assert response.status_code == 201
    report = response.json()
    assert set(report) == {"created", "existing", "skipped", "invalid"}
    created = {item["url"]: item for item in report["created"]}
    assert created["https://ai.example.org/feed.xml"]["category"] == "Tech/AI"
    assert created["https://t.me/durov"]["kind"] == "telegram"
    assert set(created["https://t.me/durov"]) == {
        "url",
        "kind",
        "title",
        "category",
        "reason",
        "source_id",
    }
    assert report["skipped"][0]["url"] == "https://page.example.org/"
    assert Source.objects.filter(created_by=alice).count() == 5


@pytest.mark.parametrize("content_type", ["text/x-opml", "application/xml", "text/xml"])
def test_it_imports_a_file_sent_as_the_body_and_never_twice(alice_client, bob_client, content_type):
    first = post_body(alice_client, NESTED, content_type)
    second = post_body(bob_client, NESTED, content_type)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["created"] == []
    assert len(second.json()["existing"]) == 5
    assert Source.objects.count() == 5


def test_it_reads_its_own_export_back_as_existing_sources(alice_client, staff_client):
    post_body(staff_client, NESTED)
    before = set(Source.objects.values_list("kind", "url", "title", "category"))

    exported = alice_client.get(URL).content
    again = post_body(alice_client, exported)

    assert again.status_code == 200
    assert again.json()["created"] == again.json()["skipped"] == []
    assert set(Source.objects.values_list("kind", "url", "title", "category")) == before


def test_it_stops_an_import_at_the_users_quota(alice_client, settings):
    settings.SOURCE_QUOTA_PER_USER = 1
    data = opml_doc(*(feed(f"https://q{n}.example.org/feed") for n in range(3)))

    response = post_body(alice_client, data)

    assert response.status_code == 201
    assert len(response.json()["created"]) == 1
    assert [item["reason"] for item in response.json()["skipped"]] == [
        "quota: You may add at most 1 sources."
    ] * 2
    assert Source.objects.count() == 1


def test_it_makes_one_source_of_duplicates_within_a_file(alice_client):
    data = opml_doc(
        folder("A", feed("https://d.example.org/feed")),
        folder("B", feed("https://D.EXAMPLE.org/feed#frag")),
    )

    response = post_body(alice_client, data)

    assert [i["category"] for i in response.json()["created"]] == ["A"]
    assert [i["reason"] for i in response.json()["skipped"]] == ["listed earlier in the file"]
    assert Source.objects.count() == 1


def test_it_throttles_imports_as_writes(alice_client, settings):
    framework = dict(settings.REST_FRAMEWORK)
    framework["DEFAULT_THROTTLE_RATES"] = {**framework["DEFAULT_THROTTLE_RATES"], "writes": "2/min"}
    settings.REST_FRAMEWORK = framework

    codes = [post_body(alice_client, NESTED).status_code for _ in range(3)]

    assert codes == [201, 200, 429]
    assert alice_client.get(URL).status_code == 200  # reads are not writes


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("xxe", "DOCTYPE"),
        ("external_dtd", "DOCTYPE"),
        ("external_entity", "DOCTYPE"),
        ("billion_laughs", "DOCTYPE"),
        ("not_xml", "not well-formed XML"),
        ("html", "HTML page"),
        ("rss", "not an OPML document"),
    ],
)
@pytest.mark.parametrize("send", [post_body, post_file])
def test_it_answers_hostile_or_wrong_files_with_a_clear_400(
    alice_client, feed_server, name, message, send
):
    dtd = feed_server.serve("/evil.dtd", b'<!ENTITY x "pwned">', content_type="text/plain")
    data = {
        "xxe": XXE_PASSWD,
        "external_dtd": external_dtd(dtd),
        "external_entity": external_entity(dtd),
        "billion_laughs": BILLION_LAUGHS,
        "not_xml": b"https://a.example.org/feed\n",
        "html": b"<!DOCTYPE html><html><body>Sign in</body></html>",
        "rss": b"<rss version='2.0'><channel><title>x</title></channel></rss>",
    }[name]

    with audited() as seen:
        response = send(alice_client, data)

    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert b"root:" not in response.content
    assert feed_server.hits("/evil.dtd") == []
    assert not any(event == "open" and "passwd" in str(args[0]) for event, args in seen)
    assert not Source.objects.exists()


def test_it_refuses_a_file_over_the_byte_cap(alice_client, settings):
    settings.OPML_MAX_BYTES = 2048
    big = opml_doc(*(feed(f"https://big{n}.example.org/feed") for n in range(60)))
    assert len(big) > 2048

    responses = [post_body(alice_client, big), post_file(alice_client, big)]
    # Far over: refused on its Content-Length before any parser runs (an unsupported type would
    # otherwise be a 415).
    huge = post_body(alice_client, big + b" " * (70 * 1024), "application/json")

    for response in (*responses, huge):
        assert response.status_code == 400
        assert response.json()["detail"] == "The file is larger than 2048 bytes."
    assert not Source.objects.exists()


def test_it_explains_how_to_send_the_file(alice_client):
    no_file = alice_client.post(URL, {"other": "x"}, format="multipart")
    as_json = alice_client.post(URL, {"file": "x"}, format="json")

    assert no_file.status_code == 400
    assert 'multipart field "file"' in no_file.json()["detail"]
    assert as_json.status_code == 415
