"""Per-feed daily token budgets (`TokenUsage`), counted in UTC days.

The check happens before a call and the charge after it, so concurrent calls for one feed can
overshoot the budget by at most the calls in flight; the next call then degrades. Callers with
no feed (a NATS request without feed_id) have no per-feed budget.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from agents.models import TokenUsage


def _today():
    return timezone.now().date()


def remaining(feed_id: int | None) -> int | None:
    """Tokens the feed may still spend today; None when unlimited."""
    budget = settings.AGENT_DAILY_TOKEN_BUDGET
    if feed_id is None or budget <= 0:
        return None
    used = (
        TokenUsage.objects.filter(feed_id=feed_id, day=_today())
        .values_list("tokens", flat=True)
        .first()
    )
    return max(0, budget - (used or 0))


def exhausted(feed_id: int | None) -> bool:
    left = remaining(feed_id)
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
