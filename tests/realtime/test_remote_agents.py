"""Processing with AGENTS_REMOTE: the agents step calls agents.{type} over NATS."""

from __future__ import annotations

import asyncio
import threading

import nats
import pytest

from agents.models import AgentRun
from feeds.models import RawPost, Source
from processing import decisions, services
from processing.models import Feed, Post
from realtime import rpc

pytestmark = pytest.mark.django_db(transaction=True)

AI_ACT = (
    "The European Parliament adopted the AI Act on Tuesday. The regulation sets obligations for "
    "providers of general-purpose artificial intelligence models."
)


class _Bridge:
    """The real responders (the agents app's registrations) on a loop of their own."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, url: str) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve(url))

    async def _serve(self, url: str) -> None:
        nc = await nats.connect(url)
        responders = rpc.Responders(nc)
        await responders.start()
        self.stop_event = asyncio.Event()
        self.ready.set()
        await self.stop_event.wait()
        await responders.stop()
        await nc.close()

    def close(self) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)


def _candidates(owner) -> tuple[Feed, list[int]]:
    source = Source.objects.create(url="http://feeds.invalid/remote.xml")
    feed = Feed.objects.create(owner=owner, name="EU AI", description="EU AI regulation")
    feed.sources.add(source)
    raw = RawPost.objects.create(
        source=source, external_id="r1", title="AI Act adopted", text=AI_ACT, content_hash="1" * 64
    )
    return feed, services.stage_raw_posts(raw_post_ids=[raw.id]).candidate_ids


def test_it_decides_candidates_through_the_bridge(owner, nats_server, settings, caplog):
    settings.NATS_URL = nats_server.url
    settings.AGENTS_REMOTE = True
    feed, candidate_ids = _candidates(owner)
    bridge = _Bridge(nats_server.url)
    try:
        saved = decisions.decide_candidates(candidate_ids=candidate_ids)
    finally:
        bridge.close()

    post = Post.objects.get(id__in=saved)
    assert post.feed == feed and post.summary
    assert "running it here" not in caplog.text  # no fallback: the bridge answered
    # The bridge's run_agent recorded the decisions (with the feed, as the request named it).
    assert AgentRun.objects.filter(feed=feed, agent="relevance").count() == 1


def test_it_runs_the_agents_locally_when_no_bridge_answers(owner, nats_server, settings, caplog):
    settings.NATS_URL = nats_server.url
    settings.AGENTS_REMOTE = True
    feed, candidate_ids = _candidates(owner)

    saved = decisions.decide_candidates(candidate_ids=candidate_ids)

    assert Post.objects.filter(id__in=saved, feed=feed).count() == 1
    assert "remote relevance agent unavailable" in caplog.text
