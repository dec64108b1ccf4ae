"""Chaos, on the real processes: nothing lost, nothing doubled.

Web (uvicorn), a Celery worker, beat and the NATS bridge run against a private Redis and a
private NATS (both ours to kill) and the test database, while local feed servers publish a new
item every 0.3 s. One after another, with a poll batch in flight: the worker's pool processes
are killed with -9 (its main process lives on); the whole worker is killed with -9 and a new one
started; Redis is killed and started again empty (every queued and unacked task, every Channels
group gone); NATS is killed with -9 and started again on its store; every database connection
is terminated. Nothing is repaired by hand: poll leases, the processing sweeper, the outbox
relay and the clients' `since` must bring everything back, and each stage must move again
before the next fault. Once the feeds stop and the work is drained, the counts must be exact:

- every served item is one raw post (multisets compared: no loss, no copy);
- every raw post is one post in the feed that keeps everything, and every item with the keyword
  one post in the feed that includes it, one per (feed, raw post);
- JetStream holds one raw_posts.created per raw post and one posts.created per post (messages
  counted, not event ids deduplicated);
- each resumed WebSocket client received every post of its feeds exactly once, in cursor order:
  one that leaves around each fault and comes back with `since`, one that stays connected as
  long as the server lets it.

`make chaos` runs it alone; `make test` runs it too (marker `chaos`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.db import connection

from feeds.models import RawPost
from infatium import processes
from processing.models import Candidate, Post
from realtime.events import POSTS_CREATED, RAW_POSTS_CREATED
from realtime.models import OutboxEvent
from tests.chaos.harness import (
    Follower,
    ItemStream,
    Publisher,
    RedisServer,
    Timeline,
    read_stream,
    wait_until,
)
from tests.support.feedserver import FeedServer
from tests.support.nats import NatsServer
from tests.support.stack import Stack
from tests.support.ws import _cookie

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(480),
]

# Fast cycles for the child processes. POLL_LEASE_SECONDS is how long a source whose poll went
# with a killed worker or a restarted Redis waits; PROCESS_RETRY_AFTER_SECONDS the same for
# raw posts whose processing was lost (swept every half of it).
CHILD_ENV = {
    "POLL_DISPATCH_SECONDS": "0.5",
    "POLL_DEFAULT_INTERVAL_SECONDS": "1",
    "POLL_MIN_INTERVAL_SECONDS": "1",
    "POLL_MAX_INTERVAL_SECONDS": "1",
    "POLL_PER_HOST_CONCURRENCY": "8",
    "POLL_BATCH_SIZE": "2",
    "CELERY_TASK_SOFT_TIME_LIMIT": "5",
    "CELERY_TASK_TIME_LIMIT": "6",
    "POLL_LEASE_SECONDS": "10",
    "PROCESS_RETRY_AFTER_SECONDS": "3",
    "NATS_RELAY_IDLE_SECONDS": "0.05",
    "NATS_RELAY_MAX_BACKOFF_SECONDS": "1",
    "NATS_RELAY_ACK_TIMEOUT_SECONDS": "2",
    "NATS_STREAM_MAX_BYTES": str(64 * 1024 * 1024),
    "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8",
}
EVERY = 0.3  # seconds between new items, across the feeds
RECOVERY = 60.0  # seconds a fault may take to be recovered from
PROGRESS = 5  # what each stage must add after a fault to count as recovered
DRAIN = 120.0  # seconds for the last leases, sweeps and replays after the feeds stop


class Scenario:
    """The running system and what the test watches in it."""

    def __init__(self, tmp_path, owner) -> None:
        self.timeline = Timeline()
        self.redis = RedisServer(tmp_path / "redis")
        self.nats = NatsServer(tmp_path / "nats", sync_always=True)
        self.servers = [FeedServer() for _ in range(3)]
        self.publishers = [
            Publisher(self.servers[0], "/slow.xml", drip_seconds=1.0),
            Publisher(self.servers[0], "/alpha.xml"),
            Publisher(self.servers[1], "/beta.xml"),
            Publisher(self.servers[2], "/gamma.xml"),
        ]
        self.stream = ItemStream(self.publishers, every=EVERY)
        self.owner = owner
        self.tmp = tmp_path
        self.stack: Stack | None = None
        self.followers: list[Follower] = []
        self.source_of: dict[int, Publisher] = {}
        self.everything = self.urgent = 0
        self.workers = 0

    # --- setting up -----------------------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        self.nats.start()
        self.stack = Stack(self.tmp, REDIS_URL=self.redis.url, NATS_URL=self.nats.url, **CHILD_ENV)
        self.stack.start_web()
        self.start_worker()
        self.stack.start_beat()
        self.stack.start("bridge", processes.nats_bridge())
        self.timeline.note(
            f"started web, worker, beat, bridge (redis :{self.redis.port}, nats :{self.nats.port})"
        )

    def start_worker(self) -> None:
        assert self.stack is not None
        self.workers += 1
        self.stack.start_worker(f"worker-{self.workers}")

    @property
    def worker(self) -> str:
        return f"worker-{self.workers}"

    def subscribe(self) -> None:
        """As the user would: sources and feeds over the REST API with a token."""
        assert self.stack is not None
        base = f"http://127.0.0.1:{self.stack.web_port}"
        with httpx.Client(base_url=base, timeout=30) as api:
            token = api.post(  # the `owner` fixture's credentials
                "/api/auth/token/", json={"username": "owner", "password": "owner-pass-123"}
            ).json()["token"]
            api.headers["Authorization"] = f"Token {token}"
            for publisher in self.publishers:
                publisher.publish()  # an empty feed until the stream starts
                answer = api.post("/api/sources/", json={"url": publisher.url, "discover": False})
                assert answer.status_code == 201, answer.text
                self.source_of[answer.json()["id"]] = publisher
            sources = sorted(self.source_of)
            everything = api.post(
                "/api/feeds/",
                json={"name": "Everything", "sources": sources, "summaries": False, "tags": False},
            )
            urgent = api.post(
                "/api/feeds/",
                # Summaries and tags: its posts go through candidates and the agents queue.
                json={"name": "Urgent", "sources": sources, "include_keywords": ["urgent"]},
            )
            assert everything.status_code == urgent.status_code == 201, (everything, urgent)
        self.everything, self.urgent = everything.json()["id"], urgent.json()["id"]
        cookie = _cookie(self.owner)
        headers = {"Cookie": cookie, "Origin": base}
        url = f"ws://127.0.0.1:{self.stack.web_port}/ws/"
        feeds = [self.everything, self.urgent]
        self.hopper = Follower("hopper", url, headers, feeds, self.timeline)
        self.stayer = Follower("stayer", url, headers, feeds, self.timeline)
        self.followers = [self.hopper, self.stayer]
        for follower in self.followers:
            follower.start()

    # --- watching -------------------------------------------------------------------------

    def counts(self) -> tuple[int, ...]:
        return (
            RawPost.objects.count(),
            Post.objects.count(),
            OutboxEvent.objects.filter(published_at__isnull=False).count(),
            *(follower.total() for follower in self.followers),
        )

    def recovered(self, what: str) -> None:
        """Every stage moves again: raw posts, posts, published events, both WebSockets."""
        before = self.counts()
        wait_until(
            lambda: all(
                now >= then + PROGRESS for now, then in zip(self.counts(), before, strict=True)
            ),
            timeout=RECOVERY,
            what=f"the system to recover from {what} (raw posts, posts, published events, "
            f"WebSocket messages, from {before})",
            timeline=self.timeline,
        )
        self.timeline.note(f"recovered from {what}: {self.counts()}")

    def mid_batch(self) -> None:
        """Return while a poll batch is reading a feed (their bodies drip for a while)."""
        before = [publisher.polls_started() for publisher in self.publishers]
        wait_until(
            lambda: any(
                publisher.polls_started() > seen
                for publisher, seen in zip(self.publishers, before, strict=True)
            ),
            timeout=RECOVERY,
            what="a poll to start reading a feed",
            timeline=self.timeline,
            every=0.02,
        )

    @contextlib.contextmanager
    def fault(self, what: str) -> Iterator[None]:
        """The hopper leaves before the fault and comes back with `since` right after it."""
        self.hopper.hold()
        self.mid_batch()
        self.timeline.note(f"fault: {what}; counts {self.counts()}")
        yield
        self.hopper.resume()
        self.recovered(what)

    # --- faults ---------------------------------------------------------------------------

    def kill_pool_processes(self) -> None:
        """The worker's main process lives on and starts new pool processes; the tasks they were
        running come back to the queue (acks_late, reject_on_worker_lost)."""
        assert self.stack is not None
        children = _children(self.stack.procs[self.worker].pid)
        assert children, f"{self.worker} has no pool processes"
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.timeline.note(f"killed the pool processes of {self.worker} (-9): {children}")

    def kill_worker(self) -> None:
        assert self.stack is not None
        proc = self.stack.procs[self.worker]
        os.killpg(proc.pid, signal.SIGKILL)  # the main process and its pool children
        proc.wait(timeout=10)
        self.timeline.note(f"killed {self.worker} (-9)")
        self.start_worker()
        self.timeline.note(f"started {self.worker}")

    def restart_redis(self) -> None:
        self.redis.kill()
        self.timeline.note("killed redis (-9)")
        self.redis.start()
        self.timeline.note("started redis, empty")

    def restart_nats(self) -> None:
        self.nats.kill()
        self.timeline.note("killed nats (-9)")
        self.nats.start()
        self.timeline.note("started nats on its store")

    def drop_database_connections(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (count,) = cursor.fetchone()
        # That also ended this test process's other pooled connections, which the pool would
        # hand out later (to the tests after this one) as "the connection is closed": start a
        # new pool.
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()
        self.timeline.note(f"terminated {count} database connections")

    # --- draining ---------------------------------------------------------------------------

    def drained(self) -> bool:
        served = Counter(self.served_identities())
        stored = Counter(self.stored_identities())
        if served - stored:
            return False
        if RawPost.objects.filter(processed_at__isnull=True).exists():
            return False
        if Candidate.objects.exists():
            return False
        if OutboxEvent.objects.filter(published_at__isnull=True).exists():
            return False
        for feed in (self.everything, self.urgent):
            newest = Post.objects.filter(feed_id=feed).order_by("-id").values_list("id", flat=True)
            last = newest.first()
            for follower in self.followers:
                got = follower.snapshot()[feed]
                if last is not None and (not got or got[-1] < last):
                    return False
        return True

    def served_identities(self) -> list[tuple[int, str]]:
        url_to_source = {publisher.url: sid for sid, publisher in self.source_of.items()}
        return [
            (url_to_source[url], item.guid)
            for url, items in self.stream.served().items()
            for item in items
        ]

    def stored_identities(self) -> list[tuple[int, str]]:
        return list(RawPost.objects.values_list("source_id", "external_id"))

    def stop(self) -> None:
        self.stream.stop()
        for follower in self.followers:
            follower.stop()
        if self.stack is not None:
            self.stack.stop()
        for server in self.servers:
            server.close()
        self.redis.stop()
        self.nats.stop()

    def report(self) -> str:
        logs = self.stack.dump_logs() if self.stack is not None else ""
        return f"===== timeline =====\n{self.timeline.render()}\n{logs}"


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    if tasks.is_dir():
        found = " ".join(
            (task / "children").read_text()
            for task in tasks.iterdir()
            if (task / "children").exists()
        )
    else:  # no /proc (macOS)
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(child) for child in found.split())


@pytest.fixture
def scenario(request, tmp_path, owner) -> Iterator[Scenario]:
    scenario = Scenario(tmp_path, owner)
    try:
        yield scenario
    finally:
        scenario.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            # The children's whole logs stay in tmp_path.
            print(f"{scenario.report()}\n(full logs in {tmp_path})")


def _step(scenario: Scenario, what: str, action: Callable[[], None]) -> None:
    with scenario.fault(what):
        action()


def test_it_loses_nothing_and_doubles_nothing_through_kills_and_restarts(scenario):
    timeline = scenario.timeline
    scenario.start()
    scenario.subscribe()
    scenario.stream.start()
    timeline.note("feeds publishing")
    scenario.recovered("start-up")

    _step(scenario, "pool processes killed mid-batch", scenario.kill_pool_processes)
    _step(scenario, "worker killed mid-batch", scenario.kill_worker)
    _step(scenario, "redis restarted", scenario.restart_redis)
    _step(scenario, "nats restarted", scenario.restart_nats)
    _step(scenario, "database connections terminated", scenario.drop_database_connections)

    scenario.stream.stop()
    timeline.note(f"feeds stopped after {scenario.stream.count} items; draining")
    wait_until(
        scenario.drained,
        timeout=DRAIN,
        what="every served item to be stored, processed, relayed and delivered",
        timeline=timeline,
        every=0.5,
    )
    timeline.note(f"drained: {scenario.counts()}")
    for follower in scenario.followers:
        follower.stop()
    stack = scenario.stack
    assert stack is not None
    crashed = [
        name for name, proc in stack.procs.items() if name != "worker-1" and proc.poll() is not None
    ]
    assert not crashed, f"{crashed} exited on their own"
    stack.stop()  # nothing may publish or write while we count

    # Every served item is one raw post.
    served = Counter(scenario.served_identities())
    stored = Counter(scenario.stored_identities())
    assert served == stored, f"missing {served - stored}, extra {stored - served}"
    assert not RawPost.objects.filter(processed_at__isnull=True).exists()

    # Every relevant one is one post per feed.
    raw_by_identity = {
        (source_id, external_id): raw_id
        for raw_id, source_id, external_id in RawPost.objects.values_list(
            "id", "source_id", "external_id"
        )
    }
    relevant = {
        (sid, item.guid)
        for sid, publisher in scenario.source_of.items()
        for item in publisher.items
        if item.relevant
    }
    expected = Counter(
        [(scenario.everything, raw_id) for raw_id in raw_by_identity.values()]
        + [(scenario.urgent, raw_by_identity[identity]) for identity in relevant]
    )
    posts = Counter(Post.objects.values_list("feed_id", "raw_post_id"))
    assert posts == expected, f"missing {expected - posts}, extra {posts - expected}"

    # Every post is one posts.created in the stream, every raw post one raw_posts.created.
    # Messages are counted as stored: a copy the relay re-sent after a crash is dropped by
    # JetStream itself (Nats-Msg-Id = event id, within the stream's duplicate window).
    post_events = read_stream(scenario.nats.url, "POSTS", "posts.>")
    raw_events = read_stream(scenario.nats.url, "RAW_POSTS", "raw_posts.>")
    assert {body["event_type"] for _, body in post_events} <= {POSTS_CREATED}
    assert {body["event_type"] for _, body in raw_events} <= {RAW_POSTS_CREATED}
    post_ids = Counter(Post.objects.values_list("id", flat=True))
    assert Counter(body["post"]["id"] for _, body in post_events) == post_ids
    assert Counter(body["raw_post"]["id"] for _, body in raw_events) == Counter(
        raw_by_identity.values()
    )
    assert all(msg_id == body["event_id"] for msg_id, body in post_events + raw_events)

    # Each resumed WebSocket client got every post of its feeds once, in cursor order.
    assert [f.errors for f in scenario.followers] == [[], []]
    for feed in (scenario.everything, scenario.urgent):
        ids = list(Post.objects.filter(feed_id=feed).order_by("id").values_list("id", flat=True))
        for follower in scenario.followers:
            got = follower.received[feed]
            assert got == ids, (
                f"{follower.name}, feed {feed}: duplicates "
                f"{[c for c, n in Counter(got).items() if n > 1]}, missing "
                f"{sorted(set(ids) - set(got))}, out of order: {got != sorted(got)}"
            )
    timeline.note(
        f"exact: {len(stored)} raw posts, {len(post_ids)} posts, {len(raw_events)} + "
        f"{len(post_events)} events; WebSocket connections/lagging: "
        + ", ".join(f"{f.name} {f.connections}/{f.resubscribes}" for f in scenario.followers)
    )
    print(timeline.render())  # shown with -s or -rP
