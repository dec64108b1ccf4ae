"""The agents' entry points. Celery tasks, the processing pipeline and the NATS responder call
these and nothing else in `agents`, so every caller shares one cache, one budget and one rate
limit.

Inputs and outputs are the Pydantic models of `agents.schemas`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings

from agents import offline, runner
from agents.offline import relevance as offline_relevance
from agents.schemas import AgentOutput, AgentResult, AgentType, FeedContext, PostItem

if TYPE_CHECKING:
    from feeds.models import RawPost
    from processing.models import Feed


def run_agent(
    *,
    agent: AgentType | str,
    items: Sequence[PostItem],
    context: FeedContext,
    feed_id: int | None = None,
    raw_post_ids: dict[str, int] | None = None,
) -> dict[str, AgentResult]:
    """Run one agent ("relevance", "summarize" or "tag") over posts for one feed context.

    Returns one AgentResult per item, keyed by item id, in input order; each carries either
    the validated output or an error (never both, never a partial output), the model that
    answered ("offline" for the built-in default), whether it was cached, and its tokens/cost.

    Guarantees:
    - Without LLM_MODEL the offline default answers; no network.
    - Idempotent spending: an answer is cached per (agent, prompt version, model, content
      hash, context hash) and a re-run, a redelivered task or a concurrent caller never pays
      for the same key twice (claims are rows inserted with ON CONFLICT DO NOTHING).
    - Items are sent AGENT_BATCH_SIZE per call; ids missing from a reply are re-run singly; a
      reply with no valid answer is retried once, then recorded as `invalid_output`.
    - Retryable provider errors (timeouts, 429, 5xx, connection) are retried LLM_MAX_RETRIES
      times, then the fallback model is tried; if all fail the items get `model_error` and
      nothing is cached, so a later call may try again.
    - When `feed_id`'s daily token budget (the feed's `token_budget_daily`, else
      AGENT_DAILY_TOKEN_BUDGET) is spent, the remaining items get the offline default with
      `degraded="budget"`. A feed budget of 0 never calls a model.
    - Every outcome, including cache hits and errors, is recorded as an `AgentRun`.

    Must be called outside `transaction.atomic()`: claims have to be visible to other workers
    while the (slow) model call runs. `feed_id` must name an existing feed; entries of
    `raw_post_ids` (item id -> RawPost id) naming no raw post are ignored. Raises ValueError on
    an unknown agent, duplicate item ids or an unknown feed.
    """
    from feeds.models import RawPost
    from processing.models import Feed

    agent = AgentType(agent)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique")
    if not items:
        return {}
    if feed_id is not None and not Feed.objects.filter(pk=feed_id).exists():
        raise ValueError(f"no feed with id {feed_id}")
    links: dict[str, int] = {}
    if raw_post_ids:
        wanted = {key: value for key, value in raw_post_ids.items() if key in set(ids)}
        existing = set(
            RawPost.objects.filter(pk__in=set(wanted.values())).values_list("pk", flat=True)
        )
        links = {key: value for key, value in wanted.items() if value in existing}
    return runner.run(
        agent=agent, items=list(items), context=context, feed_id=feed_id, raw_post_ids=links
    )


def relevance_gate(*, item: PostItem, context: FeedContext) -> tuple[bool, float]:
    """Cheap, offline check that a post could plausibly match the feed: (passes, score).

    Pure CPU (BM25 against the description, exclusions applied), no database, no network, no
    record. Passes when the offline relevance score reaches AGENT_GATE_THRESHOLD, which is set
    well below the offline decision threshold: the gate only stops posts that share nothing
    with the description (or are excluded by it) before an LLM is paid to look at them.
    """
    output = offline_relevance.score(
        title=item.title,
        text=item.text,
        description=context.description,
        language=item.language or context.language,
    )
    return output.score >= settings.AGENT_GATE_THRESHOLD, output.score


def offline_output(*, agent: AgentType | str, item: PostItem, context: FeedContext) -> AgentOutput:
    """The offline default's output for one item, without cache or record (previews, tests)."""
    return offline.run(
        AgentType(agent),
        item,
        context,
        taxonomy=list(context.taxonomy) or list(settings.AGENT_TAXONOMY),
        keywords=settings.AGENT_TAXONOMY_KEYWORDS,
    )


def item_for_raw_post(raw_post: RawPost, *, language: str = "") -> PostItem:
    """The agent input for a stored raw post; its id is the raw post's id as a string.
    Over-long fields are cut to the schema's bounds (the beginning of an article is kept)."""
    return PostItem.from_fields(
        id=raw_post.pk,
        title=raw_post.title,
        text=raw_post.text,
        url=raw_post.url,
        author=raw_post.author,
        language=language,
    )


def context_for_feed(feed: Feed) -> FeedContext:
    """The agent context of a feed: its description (cut to the schema bound), output language
    and the configured taxonomy."""
    from agents.schemas import MAX_DESCRIPTION, MAX_LANGUAGE

    return FeedContext(
        description=(feed.description or "")[:MAX_DESCRIPTION],
        language=(feed.language or "")[:MAX_LANGUAGE],
    )
