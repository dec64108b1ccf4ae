"""Walk every URL the project serves: nothing is reachable anonymously unless allow-listed, and
no route shows or changes one user's feeds or posts for another."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from agents.models import AgentRun
from processing.models import Feed, Post, Story
from tests.api.factories import FeedFactory, PostFactory, RawPostFactory, SourceFactory

# Routes anyone may call, and why. Everything else must answer 401/403 to an anonymous client.
ANONYMOUS_ALLOWED = {
    "healthz": "liveness probe",
    "readyz": "readiness probe (says which dependency is down, not why)",
    "api:schema": "describes the API, holds no data",
    "api:docs": "Swagger UI for the schema",
    "api:auth-token": "where a client signs in",
    "login": "where a browser signs in",
    "logout": "signing out needs no account",
}
# The live page redirects anonymous visitors to the login page.
REDIRECTS_TO_LOGIN = {""}


@dataclass(frozen=True)
class Route:
    name: str  # namespaced: "api:feed-detail"
    route: str  # for messages
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]
    view_class: type | None


def _methods(callback: Any) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)
    if actions:  # a viewset route: its method → action map
        return tuple(sorted(actions))
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if cls is None:
        return ("get",)  # a function view
    return tuple(m for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m))


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue  # the admin has its own login; its views are Django's
            ns = ":".join(filter(None, [namespace, entry.namespace or ""]))
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            pattern = entry.pattern
            groups = getattr(pattern, "converters", None) or pattern.regex.groupindex
            name = f"{namespace}:{entry.name}" if namespace else (entry.name or "")
            yield Route(
                name=name,
                route=prefix + str(pattern),
                kwargs=tuple(groups),
                methods=_methods(entry.callback),
                view_class=getattr(entry.callback, "cls", None),
            )


ROUTES = [route for route in _walk(get_resolver().url_patterns) if route.name or route.route]


def test_it_finds_the_api_routes():
    names = {route.name for route in ROUTES}
    # A walker that finds nothing passes vacuously; these must be there.
    assert {
        "api:source-list",
        "api:source-detail",
        "api:feed-list",
        "api:feed-detail",
        "api:feed-post-list",
        "api:feed-post-detail",
        "api:ws-ticket",
        "api:auth-token",
    } <= names
    assert set(ANONYMOUS_ALLOWED) <= names


def test_it_lets_no_api_view_allow_anyone_unless_allow_listed():
    for route in ROUTES:
        if route.view_class is None or route.name in ANONYMOUS_ALLOWED:
            continue
        permissions = route.view_class.permission_classes
        assert permissions, route.name
        assert AllowAny not in permissions, f"{route.name} allows anonymous access"


@pytest.fixture
def alice_objects(alice):
    source = SourceFactory()
    feed = FeedFactory(owner=alice, sources=[source])
    story = Story.objects.create(title="Alice's story")
    post = PostFactory(feed=feed, raw_post=RawPostFactory(source=source), story=story)
    decision = AgentRun.objects.create(
        agent="relevance", model="offline", prompt_version="1", item_key=str(post.raw_post_id),
        input_hash="0" * 64, description_hash="0" * 64, feed=feed, raw_post=post.raw_post,
        output={"relevant": True, "score": 0.9, "reason": "matches", "matched_aspects": []},
    )  # fmt: skip
    return {"source": source, "feed": feed, "post": post, "story": story, "decision": decision}


def _url(route: Route, objects: dict[str, Any]) -> str:
    basename = route.name.split(":")[-1].rsplit("-", 1)[0]
    ids = {
        "source": objects["source"].id,
        "feed": objects["feed"].id,
        "feed-post": objects["post"].id,
        "feed-decision": objects["decision"].id,
        "story": objects["story"].id,
    }
    kwargs: dict[str, Any] = {}
    for key in route.kwargs:
        if key == "feed_id":
            kwargs[key] = objects["feed"].id
        elif key == "pk" and basename in ids:
            kwargs[key] = ids[basename]
        else:
            pytest.fail(f"route {route.name} ({route.route}): no real id for {key!r}; add one")
    return reverse(route.name, kwargs=kwargs)


def _call(client: APIClient, method: str, url: str) -> Any:
    body = {"name": "hijacked", "title": "hijacked", "url": "https://evil.example/feed"}
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, body, format="json")


@pytest.mark.django_db
def test_it_answers_anonymous_requests_with_401_or_403_except_the_allow_list(
    alice_objects, anon_client
):
    seen_allowed = set()
    for route in ROUTES:
        url = _url(route, alice_objects)
        for method in route.methods:
            response = _call(anon_client, method, url)
            where = f"{method.upper()} {url} ({route.name})"
            if route.name in ANONYMOUS_ALLOWED:
                seen_allowed.add(route.name)
                assert response.status_code < 500, where
            elif route.route in REDIRECTS_TO_LOGIN:
                assert response.status_code == 302, where
            else:
                assert response.status_code in (401, 403), f"{where}: {response.status_code}"
    assert seen_allowed == set(ANONYMOUS_ALLOWED)
    # Nothing an anonymous request could change did change.
    alice_objects["feed"].refresh_from_db()
    assert alice_objects["feed"].name != "hijacked"
    assert Post.objects.filter(id=alice_objects["post"].id).exists()


# Routes whose objects are shared by all signed-in users by design (no owner to protect).
SHARED = {
    "api:source-list": "sources are global",
    "api:source-detail": "sources are global",
    "api:source-opml": "sources are global (an OPML export of all of them)",
}


def _result_ids(response: Any) -> set[int]:
    body = response.json()
    items = body["results"] if isinstance(body, dict) and "results" in body else body
    return {item["id"] for item in items}


@pytest.mark.django_db
def test_it_never_shows_or_changes_another_users_objects_on_any_route(
    alice_objects, bob, bob_client
):
    bob_feed = FeedFactory(owner=bob, sources=[alice_objects["source"]])
    bob_story = Story.objects.create(title="Bob's story")
    bob_post = PostFactory(feed=bob_feed, raw_post=alice_objects["post"].raw_post, story=bob_story)
    alice_owned = {
        "feed": {alice_objects["feed"].id},
        "feed-post": {alice_objects["post"].id},
        "feed-decision": {alice_objects["decision"].id},
        "story": {alice_objects["story"].id},
    }
    checked = 0
    for route in ROUTES:
        if not route.name.startswith("api:") or route.name in ANONYMOUS_ALLOWED:
            continue
        if route.name in SHARED:
            continue
        url = _url(route, alice_objects)
        if not route.kwargs:
            if "get" not in route.methods:
                continue  # e.g. ws-ticket: only makes bob's own ticket
            # A list: bob's objects only.
            response = bob_client.get(url)
            assert response.status_code == 200, url
            ids = _result_ids(response)
            basename = route.name.split(":")[-1].rsplit("-", 1)[0]
            assert not ids & alice_owned[basename], f"GET {url} shows alice's objects"
            assert ids, f"GET {url} shows bob nothing: the check would pass vacuously"
            checked += 1
            continue
        for method in route.methods:
            # Alice's feed or post in the URL: as if it did not exist, whatever the method.
            response = _call(bob_client, method, url)
            assert response.status_code == 404, f"{method.upper()} {url}: {response.status_code}"
            checked += 1
    assert checked >= 7
    feed = Feed.objects.get(id=alice_objects["feed"].id)
    assert feed.name != "hijacked"
    assert Post.objects.filter(id=alice_objects["post"].id).exists()
    assert Post.objects.filter(id=bob_post.id).exists()
