"""The agents' step of the processing cascade: decide candidates, save the posts that pass.

Cheapest first: feed rules already ran (processing.services); here the offline relevance gate
stops posts that share nothing with the feed's description before any model is paid, then the
relevance agent decides, and summaries and tags are made only for posts that are kept. Agents
run once per story per feed (a story's copies never become candidates) and their answers are
cached, so a re-run of this step pays nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from agents import services as agents
from agents.models import AgentRun
from agents.remote import run_agent_remote
from agents.schemas import AgentResult, AgentType, FeedContext, PostItem, RelevanceOutput
from processing.models import Candidate, Feed, Post
from processing.services import PostDraft, save_posts
from realtime.rpc import AgentCallError

logger = logging.getLogger(__name__)
GATE_MODEL = "offline-gate"


def decide_candidates(*, candidate_ids: Iterable[int]) -> list[int]:
    """Run the feeds' agents on candidates and save the posts they keep; return the post ids.

    Agents run outside any transaction (their cache claims must be visible to other workers).
    The candidates are then removed in the transaction that saves the posts, so a crash leaves
    them for the sweeper, and a concurrent or repeated run finds them gone and saves nothing.
    """
    candidates = list(
        Candidate.objects.filter(id__in=set(candidate_ids))
        .select_related("feed", "raw_post", "story")
        .order_by("id")
    )
    by_feed: dict[int, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        by_feed[candidate.feed_id].append(candidate)
    saved: list[int] = []
    for group in by_feed.values():
        drafts = _decide(group[0].feed, group)
        with transaction.atomic():
            mine = set(
                Candidate.objects.select_for_update(skip_locked=True)
                .filter(id__in=[c.id for c in group])
                .values_list("id", flat=True)
            )
            kept = [d for c, d in drafts if c.id in mine and d is not None]
            saved += save_posts(kept)
            Candidate.objects.filter(id__in=mine).delete()
    return saved


def _decide(feed: Feed, group: list[Candidate]) -> list[tuple[Candidate, PostDraft | None]]:
    context = agents.context_for_feed(feed)
    # No language hint: the feed's language is what summaries are written in (the context),
    # not the post's; the agents tell the post's language themselves.
    items = {str(c.raw_post_id): agents.item_for_raw_post(c.raw_post) for c in group}
    raw_ids = {key: int(key) for key in items}
    verdicts: dict[str, RelevanceOutput] = {}
    if feed.description.strip():
        to_judge = dict(items)
        if settings.LLM_MODEL:
            # The gate only matters when a model would be paid; offline, the relevance agent
            # below is the same scorer.
            for key, item in items.items():
                passes, _ = agents.relevance_gate(item=item, context=context)
                if not passes:
                    verdicts[key] = _record_gate_rejection(feed, item, context)
                    del to_judge[key]
        results = _run(AgentType.RELEVANCE, to_judge, context, feed, raw_ids)
        for key, output in results.items():
            assert isinstance(output, RelevanceOutput)
            verdicts[key] = output
    kept = [key for key in items if key not in verdicts or verdicts[key].relevant]
    kept_items = {key: items[key] for key in kept}
    summaries = (
        _run(AgentType.SUMMARIZE, kept_items, context, feed, raw_ids) if feed.summaries else {}
    )
    tags = _run(AgentType.TAG, kept_items, context, feed, raw_ids) if feed.tags else {}
    decided: list[tuple[Candidate, PostDraft | None]] = []
    for candidate in group:
        key = str(candidate.raw_post_id)
        if key not in kept_items:
            decided.append((candidate, None))
            continue
        verdict = verdicts.get(key)
        summary = summaries.get(key)
        decided.append(
            (
                candidate,
                PostDraft(
                    feed=feed,
                    raw_post=candidate.raw_post,
                    story=candidate.story,
                    title=getattr(summary, "title", "") if summary else "",
                    summary=getattr(summary, "summary", "") if summary else "",
                    tags=list(getattr(tags.get(key), "tags", []) or []),
                    relevance=verdict.score if verdict else None,
                    relevance_reason=verdict.reason if verdict else "",
                ),
            )
        )
    logger.info("feed %s: %s of %s candidates kept", feed.id, len(kept_items), len(group))
    return decided


def _run(
    agent: AgentType,
    items: dict[str, PostItem],
    context: FeedContext,
    feed: Feed,
    raw_ids: dict[str, int],
) -> dict[str, object]:
    """Outputs by item key; an item whose agent failed gets the offline default instead."""
    if not items:
        return {}
    results: dict[str, AgentResult] | None = None
    if settings.AGENTS_REMOTE:
        try:
            results = run_agent_remote(
                agent=agent, items=list(items.values()), context=context, feed_id=feed.id
            )
        except AgentCallError as exc:
            # No bridge up, or it timed out: the local call shares the same cache and budget.
            logger.warning("remote %s agent unavailable (%s); running it here", agent.value, exc)
    if results is None:
        results = agents.run_agent(
            agent=agent,
            items=list(items.values()),
            context=context,
            feed_id=feed.id,
            raw_post_ids={key: raw_ids[key] for key in items},
        )
    outputs: dict[str, object] = {}
    for key, item in items.items():
        result = results.get(key)
        if result is not None and result.output is not None:
            outputs[key] = result.output
        else:
            outputs[key] = agents.offline_output(agent=agent, item=item, context=context)
    return outputs


def _record_gate_rejection(feed: Feed, item: PostItem, context: FeedContext) -> RelevanceOutput:
    """Store the gate's verdict as an agent run, so "why was this hidden" has an answer."""
    output = agents.offline_output(agent=AgentType.RELEVANCE, item=item, context=context)
    assert isinstance(output, RelevanceOutput)
    verdict = output.model_copy(update={"relevant": False})
    AgentRun.objects.create(
        agent=AgentType.RELEVANCE.value,
        model=GATE_MODEL,
        prompt_version="gate",
        item_key=item.id,
        input_hash=hashlib.sha256(f"{item.title}\n{item.text}".encode()).hexdigest(),
        description_hash=hashlib.sha256(context.description.encode()).hexdigest(),
        feed=feed,
        raw_post_id=int(item.id),
        output=verdict.model_dump(mode="json"),
    )
    return verdict


def reevaluate_feed(*, feed_id: int) -> list[int]:
    """After a feed's description changed: hide recent posts it no longer wants, show again
    those it wants back, and queue its sources' recent raw posts it has no post for.
    Bounded by FEED_BACKFILL_LIMIT. Returns candidate ids for `decide_candidates`."""
    feed = Feed.objects.filter(id=feed_id, active=True).first()
    if feed is None:
        return []
    posts = list(
        Post.objects.filter(feed=feed)
        .select_related("raw_post")
        .order_by("-id")[: settings.FEED_BACKFILL_LIMIT]
    )
    if feed.description.strip() and posts:
        context = agents.context_for_feed(feed)
        items = {str(p.raw_post_id): agents.item_for_raw_post(p.raw_post) for p in posts}
        verdicts = _run(AgentType.RELEVANCE, items, context, feed, {k: int(k) for k in items})
        for post in posts:
            verdict = verdicts[str(post.raw_post_id)]
            assert isinstance(verdict, RelevanceOutput)
            Post.objects.filter(id=post.id).update(
                hidden=not verdict.relevant,
                hidden_reason="" if verdict.relevant else verdict.reason,
                relevance=verdict.score,
                relevance_reason=verdict.reason,
            )
    from processing.services import stage_backfill

    return stage_backfill(feed_id=feed_id).candidate_ids
