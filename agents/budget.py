"""Per-feed daily token budgets (`TokenUsage`), counted in UTC days.

A feed's limit is its own `token_budget_daily` when set (0: never call a model), else the global
AGENT_DAILY_TOKEN_BUDGET (0 there: unlimited). The check happens before a call and the charge
after it, so concurrent calls for one feed can overshoot the budget by at most the calls in
flight; the next call then degrades. Callers with no feed (a NATS request without feed_id) have
no per-feed budget.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from agents.models import TokenUsage


def _today():
    return timezone.now().date()


def daily_limit(feed_id: int | None) -> int | None:
    """Tokens the feed may spend per day; None when unlimited (one query)."""
    if feed_id is None:
        return None
    from processing.models import Feed

    own = Feed.objects.filter(pk=feed_id).values_list("token_budget_daily", flat=True).first()
    if own is not None:
        return own
    default = settings.AGENT_DAILY_TOKEN_BUDGET
    return default if default > 0 else None


def remaining(feed_id: int | None, *, limit: int | None) -> int | None:
    """Tokens the feed may still spend today under `limit` (from `daily_limit`, looked up once
    per run); None when unlimited."""
    if feed_id is None or limit is None:
        return None
    if limit <= 0:
        return 0
    used = (
        TokenUsage.objects.filter(feed_id=feed_id, day=_today())
        .values_list("tokens", flat=True)
        .first()
    )
    return max(0, limit - (used or 0))


def exhausted(feed_id: int | None, *, limit: int | None) -> bool:
    left = remaining(feed_id, limit=limit)
    return left is not None and left <= 0


def charge(feed_id: int | None, tokens: int) -> None:
    """Add tokens to today's usage: an insert that ignores conflicts, then an F() increment,
    so concurrent workers never lose an update."""
    if feed_id is None or tokens <= 0:
        return
    day = _today()
    TokenUsage.objects.bulk_create(
        [TokenUsage(feed_id=feed_id, day=day, tokens=0)], ignore_conflicts=True
    )
    TokenUsage.objects.filter(feed_id=feed_id, day=day).update(tokens=F("tokens") + tokens)
