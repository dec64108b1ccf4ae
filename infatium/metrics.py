"""The figures /metrics exposes (Prometheus) and the admin index shows, read when asked for.

Everything is computed at scrape time from PostgreSQL and Redis, so the work of every process
(web, workers, beat, bridge, gateway) counts without Prometheus's multiprocess mode, and a
restarted process loses nothing. Each query reads an index over a bounded window:

- Polls, new raw posts, poll durations: the last hour of PollLog (`polllog_recent_idx`).
- Posts and processing latency (fetched -> post in a feed, agents included): posts created in
  the last hour. Post has no time index; ids grow with created_at, so the newest post well
  before the window is found by walking the primary key backwards (as many rows as the window
  holds) and the window is read as an id range.
- Agent runs, tokens and cost: today's (UTC) AgentRun rows (`agentrun_created_idx`). They are
  counters that restart at midnight: `increase()` over any range gives the true total.
- Sources: the sources table (one row per upstream). Outbox: its pending index.
- WebSocket connections and lagging clients: two Redis keys (realtime.counters).

The "last hour" families are gauges (and gauge histograms): they are already per-hour rates, so
graph them as they are; `rate()` does not apply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Model, Q, Sum
from django.db.models.query import QuerySet
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

logger = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
# Upper bounds in seconds (+Inf is added).
POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
PROCESSING_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
AGENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Posts per feed: the busiest feeds by id, the rest summed as feed="other" (feeds are created by
# users; one series each would be unbounded).
TOP_FEEDS = 20
# An active source whose poll is this late counts as overdue (dispatch is behind).
OVERDUE_AFTER = timedelta(minutes=5)

# A row is inserted at most this long after the time it records (its transaction's length:
# task time limits are minutes), so ids below a row older than `since - INSERT_SLACK` all
# belong to rows older than `since`.
INSERT_SLACK = timedelta(minutes=15)


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, int]]  # (upper bound in seconds, observations at or below it)
    count: int
    sum: float  # seconds


def _bucket_aggregates(value: str, bounds: Sequence[float], to_db: Any) -> dict[str, Any]:
    aggregates: dict[str, Any] = {
        f"le_{i}": Count("pk", filter=Q(**{f"{value}__lte": to_db(bound)}))
        for i, bound in enumerate(bounds)
    }
    aggregates["n"] = Count("pk")
    aggregates["total"] = Sum(value)
    return aggregates


def _to_histogram(row: dict[str, Any], bounds: Sequence[float], to_seconds: Any) -> Histogram:
    buckets = [(bound, int(row[f"le_{i}"])) for i, bound in enumerate(bounds)]
    count = int(row["n"])
    total = row["total"]
    return Histogram(
        buckets=[*buckets, (float("inf"), count)],
        count=count,
        sum=to_seconds(total) if total is not None else 0.0,
    )


def _ms(bound: float) -> int:
    return round(bound * 1000)


def _ms_to_seconds(total: Any) -> float:
    return float(total) / 1000


def _duration(bound: float) -> timedelta:
    return timedelta(seconds=bound)


def _duration_to_seconds(total: Any) -> float:
    return float(total.total_seconds())


def _first_recent_pk(model: type[Model], time_field: str, since: datetime) -> int:
    """A primary key below every row with `time_field` >= `since` (0 if none is known).

    For tables without an index on `time_field` whose ids grow with it: the newest row older
    than `since - INSERT_SLACK`, found by walking the primary key backwards (as many rows as
    the window and the slack hold). Callers still filter on `time_field`.
    """
    older = (
        model._default_manager.filter(**{f"{time_field}__lt": since - INSERT_SLACK})
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return int(older or 0)


# --- Reads ---------------------------------------------------------------------------------------


def poll_counts(*, since: datetime) -> dict[str, int]:
    """Polls started since `since`, by status (every status present, 0 included)."""
    from feeds.models import PollLog, PollStatus

    counts = dict.fromkeys(PollStatus.values, 0)
    rows = PollLog.objects.filter(started_at__gte=since).values("status").annotate(n=Count("pk"))
    for row in rows:
        counts[row["status"] or "unfinished"] = int(row["n"])
    return counts


def new_raw_posts(*, since: datetime) -> int:
    from feeds.models import PollLog

    total = PollLog.objects.filter(started_at__gte=since).aggregate(n=Sum("items_new"))["n"]
    return int(total or 0)


def poll_durations(*, since: datetime) -> Histogram:
    from feeds.models import PollLog

    polls = PollLog.objects.filter(started_at__gte=since, duration_ms__isnull=False)
    row = polls.aggregate(**_bucket_aggregates("duration_ms", POLL_BUCKETS, _ms))
    return _to_histogram(row, POLL_BUCKETS, _ms_to_seconds)


def unprocessed_raw_posts() -> int:
    """Raw posts whose processing is still owed (`rawpost_unprocessed_idx`)."""
    from feeds.models import RawPost

    return RawPost.objects.filter(processed_at__isnull=True).count()


def waiting_candidates() -> int:
    """Raw posts that passed a feed's rules and wait for its agents (a work queue)."""
    from processing.models import Candidate

    return Candidate.objects.count()


def _recent_posts(since: datetime) -> QuerySet[Any]:
    from processing.models import Post

    floor = _first_recent_pk(Post, "created_at", since)
    return Post.objects.filter(pk__gt=floor, created_at__gte=since)


def posts_by_feed(*, since: datetime, top: int = TOP_FEEDS) -> list[tuple[str, int]]:
    """Posts created since `since`: the `top` busiest feeds by id, then ("other", the rest)."""
    rows = (
        _recent_posts(since)
        .values("feed_id")
        .annotate(n=Count("pk"))
        .order_by("-n", "feed_id")
        .values_list("feed_id", "n")
    )
    counts = [(str(feed_id), int(n)) for feed_id, n in rows]
    other = sum(n for _, n in counts[top:])
    return [*counts[:top], ("other", other)]


def processing_latency(*, since: datetime) -> Histogram:
    """From a raw post's fetch to its post in a feed (rules and agents), for posts created since
    `since`."""
    latency = ExpressionWrapper(F("created_at") - F("raw_post__fetched_at"), DurationField())
    posts = _recent_posts(since).annotate(latency=latency)
    row = posts.aggregate(**_bucket_aggregates("latency", PROCESSING_BUCKETS, _duration))
    return _to_histogram(row, PROCESSING_BUCKETS, _duration_to_seconds)


@dataclass
class AgentUsage:
    runs: dict[str, int] = field(
        default_factory=lambda: {"model": 0, "cached": 0, "offline": 0, "error": 0}
    )
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


_RESULTS = {
    # Disjoint: an error is an error whatever else it is; a cache hit paid nothing.
    "error": ~Q(error_code=""),
    "cached": Q(error_code="", cached=True),
    "offline": Q(error_code="", cached=False, model="offline"),
    "model": Q(error_code="", cached=False) & ~Q(model="offline"),
}


def agent_usage(*, since: datetime) -> dict[str, AgentUsage]:
    """Agent runs since `since` by agent: outcomes, tokens and cost (every agent present)."""
    from agents.models import AgentRun
    from agents.schemas import AgentType

    usage = {agent.value: AgentUsage() for agent in AgentType}
    rows = (
        AgentRun.objects.filter(created_at__gte=since)
        .values("agent")
        .annotate(
            # Prefixed: "cached" alone would shadow the field its own filter reads.
            **{f"runs_{result}": Count("pk", filter=where) for result, where in _RESULTS.items()},
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost"),
        )
    )
    for row in rows:
        entry = usage.setdefault(row["agent"], AgentUsage())
        entry.runs = {result: int(row[f"runs_{result}"]) for result in _RESULTS}
        entry.input_tokens = int(row["input_tokens"] or 0)
        entry.output_tokens = int(row["output_tokens"] or 0)
        entry.cost = float(row["cost"] or 0)
    return usage


def agent_latency(*, since: datetime) -> dict[str, Histogram]:
    """Latency of agent runs since `since` that did work (cache hits left out), by agent."""
    from agents.models import AgentRun
    from agents.schemas import AgentType

    empty = Histogram(
        buckets=[(bound, 0) for bound in (*AGENT_BUCKETS, float("inf"))], count=0, sum=0.0
    )
    result = {agent.value: empty for agent in AgentType}
    rows = (
        AgentRun.objects.filter(created_at__gte=since, cached=False)
        .values("agent")
        .annotate(**_bucket_aggregates("latency_ms", AGENT_BUCKETS, _ms))
    )
    for row in rows:
        result[row["agent"]] = _to_histogram(row, AGENT_BUCKETS, _ms_to_seconds)
    return result


@dataclass(frozen=True)
class SourceHealth:
    active: int
    inactive: int
    failing: int  # active, last poll(s) failed (error_count > 0): the admin's health=failing
    silent: int  # active, no new item for much longer than usual: health=silent
    overdue: int  # active, due more than OVERDUE_AFTER ago
    by_last_status: dict[str, int]  # active sources by the outcome of their last poll


def source_health(*, now: datetime) -> SourceHealth:
    from feeds.models import Source

    counts = Source.objects.aggregate(  # names unlike the fields their filters read
        n_active=Count("pk", filter=Q(active=True)),
        n_inactive=Count("pk", filter=Q(active=False)),
        n_failing=Count("pk", filter=Q(active=True, error_count__gt=0)),
        n_overdue=Count("pk", filter=Q(active=True, next_poll_at__lt=now - OVERDUE_AFTER)),
    )
    active = Source.objects.filter(active=True)
    by_status = {
        row["last_status"] or "never": int(row["n"])
        for row in active.values("last_status").annotate(n=Count("pk")).order_by()
    }
    return SourceHealth(
        active=int(counts["n_active"]),
        inactive=int(counts["n_inactive"]),
        failing=int(counts["n_failing"]),
        silent=silent_sources(active, now=now),
        overdue=int(counts["n_overdue"]),
        by_last_status=by_status,
    )


def silent_sources(sources: QuerySet[Any], *, now: datetime) -> int:
    """How many of `sources` are silent (Source.is_silent)."""
    from feeds.models import silent_source_ids

    return len(silent_source_ids(sources, now=now))


@dataclass(frozen=True)
class WebSocketFigures:
    connections: int
    lagged: int


def websocket_figures() -> WebSocketFigures | None:
    """None when Redis does not answer (the scrape goes on without them)."""
    from realtime import counters

    try:
        return WebSocketFigures(
            connections=counters.open_connections(), lagged=counters.lagged_total()
        )
    except Exception as exc:  # RedisError, OSError: Redis is down or unreachable
        logger.warning("metrics: WebSocket figures unavailable: %s: %s", type(exc).__name__, exc)
        return None


def day_start(now: datetime) -> datetime:
    """00:00 UTC of `now`'s day (the day TokenUsage and the budgets count in)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# --- The admin index ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    sources: SourceHealth
    failing: list[Any]  # active failing sources, most errors first (at most DASHBOARD_ROWS)
    outbox: Any  # realtime.outbox.OutboxStats
    polls: list[tuple[str, str, int]]  # (status, label, polls in the last hour); non-zero only
    agents: dict[str, AgentUsage]  # today, by agent
    agents_total: AgentUsage  # today, all agents
    top_feeds: list[dict[str, Any]]  # today's biggest spenders: feed, tokens, cost
    websockets: WebSocketFigures | None


DASHBOARD_ROWS = 10


def dashboard(*, now: datetime | None = None) -> Dashboard:
    """What the admin index shows: sources failing and silent, the outbox, agent spend today,
    the last hour's polls."""
    from agents.models import AgentRun
    from feeds.models import PollStatus, Source
    from realtime.outbox import outbox_stats

    now = now or timezone.now()
    today = day_start(now)
    labels = dict(PollStatus.choices)
    polls = [
        (status, labels.get(status, status), count)
        for status, count in poll_counts(since=now - WINDOW).items()
        if count
    ]
    agents = agent_usage(since=today)
    total = AgentUsage()
    for entry in agents.values():
        total.input_tokens += entry.input_tokens
        total.output_tokens += entry.output_tokens
        total.cost += entry.cost
        for result, count in entry.runs.items():
            total.runs[result] += count
    top_feeds = list(
        AgentRun.objects.filter(created_at__gte=today, feed__isnull=False)
        .values("feed_id", "feed__name")
        .annotate(tokens=Sum(F("input_tokens") + F("output_tokens")), cost=Sum("cost"))
        .filter(tokens__gt=0)
        .order_by("-tokens", "feed_id")[:DASHBOARD_ROWS]
    )
    failing = list(
        Source.objects.filter(active=True, error_count__gt=0)
        .only("id", "title", "url", "last_status", "error_count", "last_error", "last_polled_at")
        .order_by("-error_count", "id")[:DASHBOARD_ROWS]
    )
    return Dashboard(
        sources=source_health(now=now),
        failing=failing,
        outbox=outbox_stats(now=now),
        polls=polls,
        agents=agents,
        agents_total=total,
        top_feeds=top_feeds,
        websockets=websocket_figures(),
    )


# --- Prometheus --------------------------------------------------------------------------------


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _gauge_histogram(
    name: str, doc: str, series: Iterable[tuple[list[str], Histogram]], labels: Sequence[str] = ()
) -> GaugeHistogramMetricFamily:
    family = GaugeHistogramMetricFamily(name, doc, labels=list(labels))
    for label_values, histogram in series:
        buckets = [
            ("+Inf" if bound == float("inf") else _bound(bound), float(count))
            for bound, count in histogram.buckets
        ]
        family.add_metric(label_values, buckets, histogram.sum)
    return family


def _bound(bound: float) -> str:
    return repr(float(bound))


class InfatiumCollector(Collector):
    """Reads everything once per scrape (see the module docstring)."""

    def __init__(self, *, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        from realtime.outbox import outbox_stats

        now = self.now or timezone.now()
        hour_ago = now - WINDOW

        polls = GaugeMetricFamily(
            "infatium_polls_last_hour",
            "Polls started in the last hour, by outcome.",
            labels=["status"],
        )
        for status, count in sorted(poll_counts(since=hour_ago).items()):
            polls.add_metric([status], count)
        yield polls
        yield _gauge_histogram(
            "infatium_poll_duration_seconds",
            "Duration of the polls started in the last hour.",
            [([], poll_durations(since=hour_ago))],
        )
        yield _gauge(
            "infatium_raw_posts_new_last_hour",
            "New raw posts stored by the polls (and gateway reads) of the last hour.",
            new_raw_posts(since=hour_ago),
        )
        yield _gauge(
            "infatium_raw_posts_unprocessed",
            "Raw posts whose processing is still owed (the processing backlog).",
            unprocessed_raw_posts(),
        )
        yield _gauge(
            "infatium_candidates_waiting",
            "Raw posts that passed a feed's rules and wait for its agents.",
            waiting_candidates(),
        )
        posts = GaugeMetricFamily(
            "infatium_posts_last_hour",
            f"Posts created in feeds in the last hour: the {TOP_FEEDS} busiest feeds by id, "
            'the rest as feed="other".',
            labels=["feed"],
        )
        for feed, count in posts_by_feed(since=hour_ago):
            posts.add_metric([feed], count)
        yield posts
        yield _gauge_histogram(
            "infatium_processing_latency_seconds",
            "From a raw post's fetch to its post in a feed (rules and agents), for posts "
            "created in the last hour.",
            [([], processing_latency(since=hour_ago))],
        )
        yield from self._agents(now, hour_ago)
        yield from self._sources(now)

        stats = outbox_stats(now=now)
        yield _gauge(
            "infatium_outbox_pending",
            "Events written but not yet published to NATS.",
            stats.pending,
        )
        yield _gauge(
            "infatium_outbox_lag_seconds",
            "Age of the oldest unpublished event.",
            stats.lag_seconds,
        )
        yield _gauge(
            "infatium_outbox_failing",
            "Unpublished events whose publishing failed at least once.",
            stats.failing,
        )
        yield _gauge(
            "infatium_ingest_dead_letters", "Ingested messages given up on.", stats.dead_letters
        )

        websockets = websocket_figures()
        if websockets is not None:
            yield _gauge(
                "infatium_websocket_connections",
                "Open WebSocket connections, all web processes.",
                websockets.connections,
            )
            yield CounterMetricFamily(
                "infatium_websocket_lagged",
                "Times a WebSocket client read too slowly and had its live posts dropped (it "
                "is told to subscribe again with since).",
                value=websockets.lagged,
            )

    def _agents(self, now: datetime, hour_ago: datetime) -> Iterator[Metric]:
        usage = agent_usage(since=day_start(now))
        runs = CounterMetricFamily(
            "infatium_agent_runs",
            "Agent runs today (UTC; restarts at midnight) by agent and result: model (a model "
            "call), cached, offline (the built-in default), error.",
            labels=["agent", "result"],
        )
        tokens = CounterMetricFamily(
            "infatium_agent_tokens",
            "LLM tokens spent today (UTC; restarts at midnight), by agent and direction.",
            labels=["agent", "direction"],
        )
        cost = CounterMetricFamily(
            "infatium_agent_cost",
            "LLM cost today (UTC; restarts at midnight), by agent, in the currency of "
            "LLM_PRICE_PER_1K_INPUT/OUTPUT.",
            labels=["agent"],
        )
        for agent, entry in sorted(usage.items()):
            for result, count in sorted(entry.runs.items()):
                runs.add_metric([agent, result], count)
            tokens.add_metric([agent, "input"], entry.input_tokens)
            tokens.add_metric([agent, "output"], entry.output_tokens)
            cost.add_metric([agent], entry.cost)
        yield runs
        yield tokens
        yield cost
        latencies = sorted(agent_latency(since=hour_ago).items())
        yield _gauge_histogram(
            "infatium_agent_latency_seconds",
            "Latency of the agent runs of the last hour that did work (cache hits left out).",
            [([agent], latency) for agent, latency in latencies],
            labels=["agent"],
        )

    def _sources(self, now: datetime) -> Iterator[Metric]:
        health = source_health(now=now)
        sources = GaugeMetricFamily(
            "infatium_sources",
            "Sources by state (inactive ones are not polled).",
            labels=["state"],
        )
        sources.add_metric(["active"], health.active)
        sources.add_metric(["inactive"], health.inactive)
        yield sources
        yield _gauge(
            "infatium_sources_failing",
            "Active sources whose last polls failed (the admin's health=failing).",
            health.failing,
        )
        yield _gauge(
            "infatium_sources_silent",
            "Active sources with no new item for much longer than usual (health=silent).",
            health.silent,
        )
        yield _gauge(
            "infatium_sources_overdue",
            "Active sources whose poll is more than 5 minutes late (dispatch is behind).",
            health.overdue,
        )
        by_status = GaugeMetricFamily(
            "infatium_sources_by_last_status",
            "Active sources by the outcome of their last poll (never: not polled yet).",
            labels=["status"],
        )
        for status, count in sorted(health.by_last_status.items()):
            by_status.add_metric([status], count)
        yield by_status


def render(*, now: datetime | None = None) -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(InfatiumCollector(now=now))
    return generate_latest(registry)
