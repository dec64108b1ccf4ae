"""Short-lived, single-use tickets that let a browser open the WebSocket as a signed-in user.

A client that authenticates with a token cannot send it on a WebSocket handshake (browsers set
no headers there), and a token in the URL would end up in access logs for good. Instead it asks
`POST /api/ws-ticket/` for a ticket and connects with `?ticket=...`; the WebSocket side calls
`redeem_ticket` (or `aredeem_ticket` from async code) once, in its handshake.

Guarantees:
- a ticket is 256 random bits, valid for WS_TICKET_TTL_SECONDS (30 s by default), and redeems at
  most once, even when two handshakes race with it: only one cache delete can remove the key;
- the cache (Redis, shared by all web processes) stores only a hash of the ticket, so a copy of
  the cache's keys lets nobody connect;
- a Redis outage makes `issue_ticket` raise and `redeem_ticket` return None: no ticket, no socket.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_PREFIX = "ws-ticket:"
_MAX_TICKET_LENGTH = 100  # issued tickets are 43 characters; longer input is not worth hashing


def _key(ticket: str) -> str:
    return _PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


def issue_ticket(user: AbstractBaseUser) -> str:
    """Return a new ticket for `user`, valid for WS_TICKET_TTL_SECONDS and one redemption."""
    ticket = secrets.token_urlsafe(32)
    cache.set(_key(ticket), int(user.pk), timeout=settings.WS_TICKET_TTL_SECONDS)
    return ticket


def redeem_ticket(ticket: str) -> int | None:
    """The id of the user the ticket was issued to, or None if it is unknown, expired or already
    redeemed. Consumes the ticket. The caller loads the user and checks it is still active."""
    if not ticket or len(ticket) > _MAX_TICKET_LENGTH:
        return None
    key = _key(ticket)
    try:
        user_id = cache.get(key)
        # Two racing redemptions may both read the value; only one delete removes the key.
        if user_id is None or not cache.delete(key):
            return None
    except (RedisError, OSError):
        logger.warning("could not redeem a WebSocket ticket", exc_info=True)
        return None
    return int(user_id)


async def aredeem_ticket(ticket: str) -> int | None:
    """`redeem_ticket` for async code (the WebSocket consumer or its middleware)."""
    if not ticket or len(ticket) > _MAX_TICKET_LENGTH:
        return None
    key = _key(ticket)
    try:
        user_id = await cache.aget(key)
        if user_id is None or not await cache.adelete(key):
            return None
    except (RedisError, OSError):
        logger.warning("could not redeem a WebSocket ticket", exc_info=True)
        return None
    return int(user_id)


def ttl_seconds() -> int:
    """How long a new ticket stays valid."""
    return int(settings.WS_TICKET_TTL_SECONDS)
