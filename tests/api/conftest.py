"""Personas (alice owns things, bob must never see them, anonymous sees nothing) and clients."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.api.factories import FeedFactory, PostFactory, RawPostFactory, SourceFactory


@pytest.fixture(autouse=True)
def _api_test_settings(settings):
    # Autouse runs before the user fixtures: PBKDF2 costs ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Throttle counters and tickets live in the (test) Redis: no test sees another's.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="staff-pass-123", is_staff=True
    )


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice_client(alice) -> APIClient:
    return client_for(alice)


@pytest.fixture
def bob_client(bob) -> APIClient:
    return client_for(bob)


@pytest.fixture
def staff_client(staff) -> APIClient:
    return client_for(staff)


@pytest.fixture
def alice_world(alice):
    """Alice's feed with one source and three posts."""
    source = SourceFactory()
    feed = FeedFactory(owner=alice, sources=[source])
    posts = [PostFactory(feed=feed, raw_post=RawPostFactory(source=source)) for _ in range(3)]
    return {"source": source, "feed": feed, "posts": posts}
