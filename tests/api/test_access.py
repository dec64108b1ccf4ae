"""Signing in (session, token), throttles, and WebSocket tickets."""

from __future__ import annotations

import threading
import time

import pytest
from asgiref.sync import async_to_sync
from redis.exceptions import RedisError
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from processing.api import tickets

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    """Set throttle rates for one test (the others keep the configured ones)."""

    def set_rates(**changes: str) -> None:
        framework = dict(settings.REST_FRAMEWORK)
        framework["DEFAULT_THROTTLE_RATES"] = {**framework["DEFAULT_THROTTLE_RATES"], **changes}
        settings.REST_FRAMEWORK = framework

    return set_rates


# --- Tokens and sessions -------------------------------------------------------------------


def test_it_exchanges_credentials_for_a_token_that_authenticates(alice, anon_client):
    response = anon_client.post(
        "/api/auth/token/", {"username": "alice", "password": "alice-pass-123"}, format="json"
    )
    token = response.json()["token"]
    again = anon_client.post(
        "/api/auth/token/", {"username": "alice", "password": "alice-pass-123"}, format="json"
    )

    assert response.status_code == 200
    assert again.json()["token"] == token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/feeds/").status_code == 200


def test_it_refuses_wrong_credentials(alice, anon_client):
    response = anon_client.post(
        "/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json"
    )

    assert response.status_code == 400
    assert "token" not in response.json()


def test_it_challenges_anonymous_and_bad_tokens_with_401(anon_client):
    anonymous = anon_client.get("/api/feeds/")
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    bad_token = anon_client.get("/api/feeds/")

    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == "Token"
    assert bad_token.status_code == 401


def test_it_requires_the_csrf_token_for_writes_with_a_session(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password="alice-pass-123")

    read = client.get("/api/feeds/")
    write = client.post("/api/feeds/", {"name": "x"}, format="json")

    assert read.status_code == 200
    assert write.status_code == 403
    assert "CSRF" in write.json()["detail"]


# --- Throttles -----------------------------------------------------------------------------


def test_it_throttles_sign_in_attempts_per_address_whatever_the_forwarded_for(
    alice, anon_client, rates
):
    rates(auth="3/min")
    codes = [
        anon_client.post(
            "/api/auth/token/",
            {"username": "alice", "password": f"guess-{n}"},
            format="json",
            # A client cannot get a fresh budget by inventing proxy headers (NUM_PROXIES=0).
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        ).status_code
        for n in range(5)
    ]

    assert codes == [400, 400, 400, 429, 429]
    right = anon_client.post(
        "/api/auth/token/", {"username": "alice", "password": "alice-pass-123"}, format="json"
    )
    assert right.status_code == 429
    assert int(right["Retry-After"]) > 0


def test_it_throttles_writes_per_user_but_not_reads(alice_client, bob_client, rates):
    rates(writes="2/min")

    writes = [
        alice_client.post("/api/feeds/", {"name": f"f{n}"}, format="json").status_code
        for n in range(3)
    ]

    assert writes == [201, 201, 429]
    assert alice_client.get("/api/feeds/").status_code == 200
    assert bob_client.post("/api/feeds/", {"name": "bob's"}, format="json").status_code == 201


def test_it_throttles_reads_per_user(alice_client, rates):
    rates(user="3/min")

    codes = [alice_client.get("/api/sources/").status_code for _ in range(4)]

    assert codes == [200, 200, 200, 429]


def test_it_throttles_anonymous_clients_on_open_endpoints(anon_client, rates):
    rates(anon="2/min")

    codes = [anon_client.get("/api/schema/").status_code for _ in range(3)]

    assert codes == [200, 200, 429]


# --- WebSocket tickets ---------------------------------------------------------------------


def test_it_issues_a_ticket_that_redeems_once(alice, alice_client):
    response = alice_client.post("/api/ws-ticket/")
    ticket = response.json()["ticket"]

    assert response.status_code == 201
    assert response.json()["expires_in"] == 30
    assert tickets.redeem_ticket(ticket) == alice.id
    assert tickets.redeem_ticket(ticket) is None


def test_it_refuses_tickets_to_anonymous_clients(anon_client):
    assert anon_client.post("/api/ws-ticket/").status_code == 401


def test_it_expires_an_unused_ticket(alice, settings):
    settings.WS_TICKET_TTL_SECONDS = 1
    ticket = tickets.issue_ticket(alice)

    time.sleep(1.3)

    assert tickets.redeem_ticket(ticket) is None


def test_it_redeems_a_ticket_once_when_redemptions_race(alice):
    ticket = tickets.issue_ticket(alice)
    barrier = threading.Barrier(10)
    results: list[int | None] = []

    def redeem() -> None:
        barrier.wait()
        results.append(tickets.redeem_ticket(ticket))

    threads = [threading.Thread(target=redeem) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results, key=str) == [alice.id] + [None] * 9


def test_it_redeems_from_async_code_too(alice):
    ticket = tickets.issue_ticket(alice)

    assert async_to_sync(tickets.aredeem_ticket)(ticket) == alice.id
    assert async_to_sync(tickets.aredeem_ticket)(ticket) is None


@pytest.mark.parametrize("ticket", ["", "nope", "x" * 5000])
def test_it_refuses_unknown_tickets(ticket, alice):
    tickets.issue_ticket(alice)

    assert tickets.redeem_ticket(ticket) is None


def test_it_keeps_only_a_hash_of_the_ticket_in_the_cache(alice, redis_client):
    ticket = tickets.issue_ticket(alice)

    keys = [key.decode() for key in redis_client.keys("*ws-ticket*")]

    assert len(keys) == 1
    assert ticket not in keys[0]


def test_it_serves_requests_unthrottled_while_the_cache_is_down(alice_client, monkeypatch):
    class BrokenCache:
        def get(self, *args: object, **kwargs: object) -> None:
            raise ConnectionError("redis is down")

        set = get

    monkeypatch.setattr(SimpleRateThrottle, "cache", BrokenCache())

    assert alice_client.get("/api/feeds/").status_code == 200
    assert alice_client.post("/api/feeds/", {"name": "x"}, format="json").status_code == 201


def test_it_refuses_every_ticket_while_the_cache_is_down(alice, monkeypatch):
    ticket = tickets.issue_ticket(alice)

    class BrokenCache:
        def get(self, *args: object, **kwargs: object) -> None:
            raise RedisError("redis is down")

    monkeypatch.setattr(tickets, "cache", BrokenCache())

    assert tickets.redeem_ticket(ticket) is None
