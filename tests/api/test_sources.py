"""Sources: shared reads, idempotent adds, quotas, who may change what, and refused URLs."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from feeds.models import Source
from feeds.validation import validate_source_url
from tests.api.factories import SourceFactory
from tests.support.feedserver import rss

pytestmark = pytest.mark.django_db


def test_it_lists_every_source_to_every_signed_in_user(bob_client):
    sources = SourceFactory.create_batch(3)

    response = bob_client.get("/api/sources/")

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["results"]] == [s.id for s in reversed(sources)]
    assert set(response.json()["results"][0]) == {
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
    }


def test_it_adds_a_source_and_counts_it_for_its_creator(alice, alice_client):
    response = alice_client.post(
        "/api/sources/", {"url": "https://News.Example.org/feed.xml#top"}, format="json"
    )

    assert response.status_code == 201
    source = Source.objects.get(id=response.json()["id"])
    assert source.url == "https://news.example.org/feed.xml"
    assert source.created_by == alice
    assert source.kind == "rss"


def test_it_returns_the_existing_source_for_a_known_url(alice_client, bob_client, settings):
    settings.SOURCE_QUOTA_PER_USER = 1
    first = alice_client.post("/api/sources/", {"url": "https://a.example/feed"}, format="json")

    again = bob_client.post("/api/sources/", {"url": "HTTPS://A.EXAMPLE/feed"}, format="json")
    # A known URL costs nothing against the quota: bob can still add one of his own.
    own = bob_client.post("/api/sources/", {"url": "https://b.example/feed"}, format="json")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert own.status_code == 201
    assert Source.objects.count() == 2


def test_it_refuses_a_source_over_the_users_quota(alice_client, settings):
    settings.SOURCE_QUOTA_PER_USER = 2
    codes = [
        alice_client.post("/api/sources/", {"url": f"https://q.example/{n}"}, format="json")
        for n in range(3)
    ]

    assert [r.status_code for r in codes] == [201, 201, 403]
    assert "at most 2 sources" in codes[2].json()["detail"]
    assert Source.objects.count() == 2


def test_it_lets_staff_add_sources_beyond_the_quota(staff_client, settings):
    settings.SOURCE_QUOTA_PER_USER = 0

    response = staff_client.post(
        "/api/sources/",
        {"url": "https://s.example/feed", "poll_interval": 60, "active": False},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["poll_interval"] == 60
    assert response.json()["active"] is False


def test_it_ignores_staff_only_fields_from_other_users(alice_client, settings):
    response = alice_client.post(
        "/api/sources/",
        {"url": "https://m.example/feed", "poll_interval": 1, "active": False, "created_by": 99},
        format="json",
    )

    assert response.status_code == 201
    source = Source.objects.get(id=response.json()["id"])
    assert source.poll_interval == settings.POLL_DEFAULT_INTERVAL_SECONDS
    assert source.active is True


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://files.example.org/feed.xml",
        "file:///etc/passwd",
        "https://user:secret@example.org/feed",
        "https://user@example.org/feed",
        "http://127.0.0.1:8001/feed.xml",
        "http://localhost/feed",
        "http://10.1.2.3/feed",
        "http://192.168.0.1/feed",
        "http://172.16.0.1/feed",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/feed",
        "http://0.0.0.0/feed",
        "http://[::1]/feed",
        "http://[fe80::1]/feed",
        "http://[fd00::1]/feed",
        "http://[::ffff:127.0.0.1]/feed",
        "http://[64:ff9b::a9fe:a9fe]/feed",
        "http://2130706433/feed",
        "http://0x7f.0.0.1/feed",
        "http://0177.0.0.1/feed",
        "http://127.1/feed",
        "https:///feed",
        "https://example.org:99999/feed",
        "https://example.org/" + "a" * 2000,
        "https://exa mple.org/feed",
    ],
)
def test_it_refuses_urls_that_are_not_public_http(url, alice_client, settings):
    settings.FETCH_ALLOWED_NETWORKS = ""

    response = alice_client.post("/api/sources/", {"url": url}, format="json")

    assert response.status_code == 400, response.json()
    assert "url" in response.json()
    assert not Source.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/feed.xml",
        "http://news.example.org:8080/rss?lang=en",
        "https://8.8.8.8/feed",
        "https://[2001:4860:4860::8888]/feed",
        "https://abc/feed",  # a name made of hex digits is a name, not an IP literal
    ],
)
def test_it_accepts_public_http_urls(url, settings):
    settings.FETCH_ALLOWED_NETWORKS = ""

    validate_source_url(url)


def test_it_accepts_private_addresses_in_the_allowed_networks(alice_client, settings):
    settings.FETCH_ALLOWED_NETWORKS = "10.0.0.0/8,127.0.0.0/8"

    response = alice_client.post(
        "/api/sources/", {"url": "http://127.0.0.1:8001/feed.xml"}, format="json"
    )

    assert response.status_code == 201
    validate_source_url("http://10.1.2.3/feed")
    validate_source_url("http://2130706433/feed")  # 127.0.0.1 in another spelling
    with pytest.raises(ValidationError):
        validate_source_url("http://192.168.0.1/feed")  # private, but not in the list
    with pytest.raises(ValidationError):
        validate_source_url("ftp://127.0.0.1/feed.xml")  # the scheme rule still holds


def test_it_accepts_a_host_name_in_the_allowed_networks(settings):
    settings.FETCH_ALLOWED_NETWORKS = "localhost"

    validate_source_url("http://localhost:8001/feed.xml")
    with pytest.raises(ValidationError, match="loopback"):
        validate_source_url("http://127.0.0.1:8001/feed.xml")  # the name, not its address


def test_it_names_the_refused_address_and_why(settings):
    settings.FETCH_ALLOWED_NETWORKS = ""

    with pytest.raises(ValidationError) as caught:
        validate_source_url("http://[::ffff:a9fe:a9fe]/latest/meta-data/")

    assert caught.value.messages == [
        "The URL points to ::ffff:a9fe:a9fe (link-local address in IPv4-mapped form); "
        "private, loopback and link-local addresses are not fetched."
    ]


def test_it_lets_a_creator_retitle_but_not_repoint_their_source(alice, alice_client):
    source = SourceFactory(created_by=alice)

    retitled = alice_client.patch(f"/api/sources/{source.id}/", {"title": "Mine"}, format="json")
    repointed = alice_client.patch(
        f"/api/sources/{source.id}/", {"url": "https://other.example/feed"}, format="json"
    )

    assert retitled.status_code == 200
    assert retitled.json()["title"] == "Mine"
    assert repointed.status_code == 403
    source.refresh_from_db()
    assert source.url.startswith("https://feeds.example.org/")


def test_it_refuses_changes_to_a_source_someone_else_added(alice, bob_client):
    source = SourceFactory(created_by=alice, title="Alice's")

    response = bob_client.patch(f"/api/sources/{source.id}/", {"title": "Bob's"}, format="json")

    assert response.status_code == 403
    source.refresh_from_db()
    assert source.title == "Alice's"


def test_it_lets_staff_repoint_a_source_and_forget_its_validators(staff_client):
    source = SourceFactory(etag='"v1"', last_modified="Tue, 24 Nov 2026 10:00:00 GMT")

    response = staff_client.patch(
        f"/api/sources/{source.id}/",
        {"url": "https://moved.example/feed", "poll_interval": 120},
        format="json",
    )

    assert response.status_code == 200
    source.refresh_from_db()
    assert (source.url, source.poll_interval, source.etag, source.last_modified) == (
        "https://moved.example/feed",
        120,
        "",
        "",
    )


def test_it_refuses_to_repoint_a_source_onto_another_ones_url(staff_client):
    taken = SourceFactory(url="https://taken.example/feed")
    source = SourceFactory()

    response = staff_client.patch(f"/api/sources/{source.id}/", {"url": taken.url}, format="json")

    assert response.status_code == 400
    assert "url" in response.json()


def test_it_offers_no_way_to_delete_or_replace_a_source(staff_client):
    source = SourceFactory()

    assert staff_client.delete(f"/api/sources/{source.id}/").status_code == 405
    assert staff_client.put(f"/api/sources/{source.id}/", {}, format="json").status_code == 405
    assert Source.objects.filter(id=source.id).exists()


def test_adding_a_site_url_adds_the_feed_it_links_to(alice_client, feed_server):
    feed_url = feed_server.serve("/feed.xml", rss(("g1", "One")))
    site = feed_server.serve(
        "/",
        '<html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
        "</head><body>Home</body></html>",
        content_type="text/html",
    )

    response = alice_client.post("/api/sources/", {"url": site}, format="json")

    assert response.status_code == 201
    assert response.json()["url"] == feed_url
    # Without discovery the URL is taken as it is.
    kept = alice_client.post("/api/sources/", {"url": site, "discover": False}, format="json")
    assert kept.json()["url"] == site


def test_a_page_without_a_feed_is_refused_with_a_hint(alice_client, feed_server):
    page = feed_server.serve(
        "/blog", "<html><body>No feed here</body></html>", content_type="text/html"
    )

    response = alice_client.post("/api/sources/", {"url": page}, format="json")

    assert response.status_code == 400
    assert "web page source" in response.json()["url"][0]
    assert not Source.objects.exists()
    # As a web page source it is accepted.
    web = alice_client.post("/api/sources/", {"url": page, "kind": "web"}, format="json")
    assert web.status_code == 201
