"""How `agents.services.run_agent` does its work: cache, claims, budget, batches, records.

For each batch of AGENT_BATCH_SIZE items: answers already stored are returned as cached; the
rest are claimed (one row per cache key, INSERT … ON CONFLICT DO NOTHING) and only the claimed
ones are sent to the model, in one call. Answers are validated one by one; the ids missing from
the reply or answered invalidly are re-run singly. A reply that is not an answer list at all is
retried once, then its items are recorded as errors. Keys another worker holds are waited for
at the end (or taken over when that worker's lease ran out). When the feed's daily token budget
(its own `token_budget_daily`, else AGENT_DAILY_TOKEN_BUDGET) is spent, the remaining items get
the offline default, recorded as degraded.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agents import budget, cache, llm, offline
from agents import language as languages
from agents.models import AgentRun
from agents.prompts import PROMPT_VERSIONS, build_messages
from agents.schemas import (
    ANSWER_MODELS,
    BATCH_MODELS,
    MAX_ASPECT,
    MAX_LANGUAGE,
    MAX_TAGS_OUT,
    OUTPUT_MODELS,
    AgentError,
    AgentOutput,
    AgentResult,
    AgentType,
    Degraded,
    ErrorCode,
    FeedContext,
    PostItem,
    RelevanceAnswer,
    RelevanceOutput,
    SummarizeAnswer,
    SummarizeOutput,
    TagAnswer,
    TagOutput,
    Usage,
)
from agents.text import shorten

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.25


@dataclass
class _Job:
    agent: AgentType
    context: FeedContext
    taxonomy: list[str]
    feed_id: int | None
    raw_post_ids: dict[str, int]
    models: llm.ModelSet | None
    budget_limit: int | None = None  # the feed's daily tokens, looked up once; None: no limit
    token: uuid.UUID = field(default_factory=uuid.uuid4)
    results: dict[str, AgentResult] = field(default_factory=dict)
    keys: dict[str, cache.Key] = field(default_factory=dict)

    def lease_seconds(self) -> float:
        # One call at its slowest: every attempt waiting on the rate limiter and then timing
        # out, on every model, twice (the invalid-output retry). Extended before each single.
        per_model = 2 * settings.LLM_TIMEOUT_SECONDS * (settings.LLM_MAX_RETRIES + 1)
        return per_model * (len(self.models.chain()) if self.models else 1) * 2 + 60

    def over_budget(self) -> bool:
        return budget.exhausted(self.feed_id, limit=self.budget_limit)


def run(
    *,
    agent: AgentType,
    items: Sequence[PostItem],
    context: FeedContext,
    feed_id: int | None,
    raw_post_ids: dict[str, int],
) -> dict[str, AgentResult]:
    job = _Job(
        agent=agent,
        context=context,
        taxonomy=list(context.taxonomy) or list(settings.AGENT_TAXONOMY),
        feed_id=feed_id,
        raw_post_ids=raw_post_ids,
        models=llm.configured_models(),
    )
    if job.models is None:
        _offline(job, list(items), Degraded.NONE)
        return {item.id: job.results[item.id] for item in items}
    job.budget_limit = budget.daily_limit(feed_id)

    version = PROMPT_VERSIONS[agent]
    description_hash = cache.context_hash(agent, context, job.taxonomy)
    for item in items:
        job.keys[item.id] = cache.Key(
            agent.value, version, job.models.cache_name, cache.content_hash(item), description_hash
        )

    # Identical content under several ids (a post in two sources) is asked once.
    first: dict[cache.Key, PostItem] = {}
    copies: list[PostItem] = []
    for item in items:
        if job.keys[item.id] in first:
            copies.append(item)
        else:
            first[job.keys[item.id]] = item
    unique = list(first.values())

    hits = cache.lookup(job.keys.values())
    _cached(job, [i for i in unique if job.keys[i.id] in hits], hits)
    todo = [i for i in unique if job.keys[i.id] not in hits]

    busy: list[PostItem] = []
    size = settings.AGENT_BATCH_SIZE
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        if job.over_budget():
            _offline(job, todo[start:], Degraded.BUDGET)
            break
        busy += _claim_and_call(job, chunk)

    deadline = time.monotonic() + settings.AGENT_CLAIM_WAIT_SECONDS
    while busy:
        if time.monotonic() > deadline:
            for item in busy:
                _error(job, item, ErrorCode.BUSY, "another worker is running this exact call")
            break
        time.sleep(_POLL_SECONDS)
        if job.over_budget():
            _offline(job, busy, Degraded.BUDGET)
            break
        busy = _claim_and_call(job, busy)
    _copy(job, copies, first)
    return {item.id: job.results[item.id] for item in items}


def _copy(job: _Job, copies: list[PostItem], first: dict[cache.Key, PostItem]) -> None:
    """Results for duplicate items: their twin's answer, as a cache hit (it cost nothing)."""
    runs = []
    for item in copies:
        key = job.keys[item.id]
        twin = job.results[first[key].id]
        result = twin.model_copy(
            update={"item_id": item.id, "cached": twin.ok, "usage": Usage(), "latency_ms": 0}
        )
        job.results[item.id] = result
        runs.append(_run(job, item, result, key))
    AgentRun.objects.bulk_create(runs)


def _claim_and_call(job: _Job, items: list[PostItem]) -> list[PostItem]:
    """Claim, return cached answers, call the model for the owned items; returns the busy."""
    claim = cache.claim(
        [job.keys[i.id] for i in items], lease_seconds=job.lease_seconds(), token=job.token
    )
    _cached(job, [i for i in items if job.keys[i.id] in claim.done], claim.done)
    owned = [i for i in items if job.keys[i.id] in claim.owned]
    if owned:
        _call(job, owned)
    return [i for i in items if job.keys[i.id] in claim.busy]


# --- Model calls ----------------------------------------------------------------------------


@dataclass
class _Outcome:
    outputs: dict[str, AgentOutput]  # by item id
    usage: llm.Usage
    latency_ms: int
    model: str
    problem: str = ""


def _call(job: _Job, items: list[PostItem]) -> None:
    """One batch call, then single re-runs for what it did not answer; records everything."""
    assert job.models is not None
    try:
        outcome = _call_validated(job, items)
    except llm.CallFailed as exc:
        for item in items:
            _error(job, item, exc.code, exc.message)
        cache.release([job.keys[i.id] for i in items], token=job.token)
        return
    share = _Share(outcome.usage, len(items))
    answered = [i for i in items if i.id in outcome.outputs]
    _answered(job, answered, outcome, share)

    missing = [i for i in items if i.id not in outcome.outputs]
    if outcome.outputs == {} and outcome.problem:
        # Two unusable replies for the whole batch: the model is not following the format;
        # re-running each item would multiply the spend on a broken model.
        for item in missing:
            _error(job, item, ErrorCode.INVALID_OUTPUT, outcome.problem, share.take())
        cache.release([job.keys[i.id] for i in missing], token=job.token)
        return
    for item in missing:
        carried = share.take()
        cache.extend([job.keys[item.id]], token=job.token, lease_seconds=job.lease_seconds())
        try:
            single = _call_validated(job, [item])
        except llm.CallFailed as exc:
            _error(job, item, exc.code, exc.message, carried)
            cache.release([job.keys[item.id]], token=job.token)
            continue
        carried.add(single.usage)
        if item.id in single.outputs:
            _answered(job, [item], single, _Share(carried, 1))
        else:
            problem = single.problem or "the model gave no valid answer for this post"
            _error(job, item, ErrorCode.INVALID_OUTPUT, problem, carried)
            cache.release([job.keys[item.id]], token=job.token)
        if len(items) > 1:
            logger.info("%s: re-ran %s singly (missing from the batch reply)", job.agent, item.id)


def _call_validated(job: _Job, items: list[PostItem]) -> _Outcome:
    """Call the model; a reply with no valid answer at all is retried once (then the outcome has
    no outputs and says why). Tokens of every attempt are charged to the feed and returned."""
    assert job.models is not None
    local = {str(n): item for n, item in enumerate(items, start=1)}
    messages = build_messages(job.agent, list(local.items()), job.context, job.taxonomy)
    schema = _batch_schema(job.agent, tuple(job.taxonomy))
    usage = llm.Usage()
    latency = 0
    problem = ""
    for _attempt in range(2):
        result = llm.invoke(job.models, messages, schema)
        usage.add(result.usage)
        latency += result.latency_ms
        budget.charge(job.feed_id, result.usage.total)
        if result.answers is None:
            problem = f"unusable reply from {result.model}: {result.problem}"
            logger.warning("%s: %s", job.agent, problem)
            continue
        outputs: dict[str, AgentOutput] = {}
        invalid: list[str] = []
        for answer in result.answers:
            local_id = str(answer.get("id", ""))
            item = local.get(local_id)
            if item is None or item.id in outputs:
                continue
            try:
                outputs[item.id] = _to_output(job, answer, item)
            except (ValidationError, ValueError) as exc:
                invalid.append(f"{local_id}: {_short_error(exc)}")
        if invalid:
            logger.warning("%s: invalid answers from %s: %s", job.agent, result.model, invalid)
        if not outputs:
            # Nothing usable at all (wrong ids, every answer invalid): same as a bad reply.
            problem = f"no valid answer from {result.model}: " + ("; ".join(invalid) or "none")
            continue
        return _Outcome(outputs, usage, latency, result.model)
    return _Outcome({}, usage, latency, job.models.primary.name, problem)


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
    return str(exc)[:200]


def _to_output(job: _Job, answer: dict[str, Any], item: PostItem) -> AgentOutput:
    """A validated output from one answer, or ValidationError/ValueError. Only explanatory
    fields are trimmed (reason, aspects); decisions, titles, summaries and tags must be valid
    as given."""
    parsed = ANSWER_MODELS[job.agent].model_validate(answer)
    if isinstance(parsed, RelevanceAnswer):
        aspects = [shorten(a, MAX_ASPECT) for a in parsed.matched_aspects if a.strip()]
        return RelevanceOutput(
            relevant=parsed.relevant,
            score=parsed.score,
            reason=parsed.reason,
            matched_aspects=aspects,
        )
    if isinstance(parsed, SummarizeAnswer):
        written = languages.normalize(parsed.language)
        wanted = job.context.language
        if wanted and not languages.same(written, wanted):
            # Asked for the feed's language and answered in another: not what the feed shows.
            raise ValueError(f"summary in {parsed.language[:40]!r}, the feed wants {wanted!r}")
        return SummarizeOutput(
            title=parsed.title,
            summary=parsed.summary,
            language=wanted or written[:MAX_LANGUAGE],
            translated=parsed.translated,
            source_language=languages.post_language(
                title=item.title, text=item.text, hint=item.language
            )[:MAX_LANGUAGE],
        )
    assert isinstance(parsed, TagAnswer)
    spelled = {t.lower(): t for t in job.taxonomy}
    tags: list[str] = []
    for tag in parsed.tags:
        known = spelled.get(tag.strip().lower())
        if known is None:
            raise ValueError(f"tag {tag[:64]!r} is not in the taxonomy")
        if known not in tags:
            tags.append(known)
    return TagOutput(tags=tags)


@lru_cache(maxsize=64)
def _batch_schema(agent: AgentType, taxonomy: tuple[str, ...]) -> type[BaseModel]:
    """The schema the model fills in. For tags it lists the taxonomy as an enum, so providers
    with constrained decoding cannot invent a tag; we still validate ourselves."""
    if agent is not AgentType.TAG or not taxonomy:
        return BATCH_MODELS[agent]
    config = ConfigDict(extra="forbid")
    tag_type = Literal[taxonomy]  # type: ignore[valid-type]
    answer = create_model(
        "TagAnswer",
        __config__=config,
        __doc__=TagAnswer.__doc__,
        id=(str, Field(description="The post id exactly as given.")),
        tags=(list[tag_type], Field(max_length=MAX_TAGS_OUT, description="0 to 3 tags.")),
    )
    return create_model(
        "TagBatch",
        __config__=config,
        __doc__="Tags, one answer per post id.",
        answers=(list[answer], ...),  # type: ignore[valid-type]
    )


# --- Results and records ----------------------------------------------------------------------


class _Share:
    """Splits one call's tokens over the items it covered, so the runs add up to the bill."""

    def __init__(self, usage: llm.Usage, parts: int) -> None:
        self.usage = usage
        self.parts = max(1, parts)
        self.index = 0

    def take(self) -> llm.Usage:
        def part(total: int) -> int:
            base, extra = divmod(total, self.parts)
            return base + (1 if self.index < extra else 0)

        taken = llm.Usage(part(self.usage.input_tokens), part(self.usage.output_tokens))
        self.index += 1
        return taken


def _answered(job: _Job, items: list[PostItem], outcome: _Outcome, share: _Share) -> None:
    runs: list[tuple[PostItem, AgentRun]] = []
    for item in items:
        output = outcome.outputs[item.id]
        usage = share.take()
        result = AgentResult(
            item_id=item.id,
            agent=job.agent,
            output=output,
            model=outcome.model,
            prompt_version=PROMPT_VERSIONS[job.agent],
            usage=_usage(usage),
            latency_ms=outcome.latency_ms,
        )
        job.results[item.id] = result
        runs.append((item, _run(job, item, result, job.keys[item.id])))
    AgentRun.objects.bulk_create([run for _, run in runs])
    for item, run in runs:
        cache.store(
            job.keys[item.id],
            token=job.token,
            output=run.output or {},
            answered_by=outcome.model,
            run_id=run.pk,
        )


def _cached(job: _Job, items: list[PostItem], rows: dict[cache.Key, Any]) -> None:
    runs = []
    for item in items:
        key = job.keys[item.id]
        row = rows[key]
        try:
            output = OUTPUT_MODELS[job.agent].model_validate(row.output)
        except ValidationError as exc:
            # A stored answer that no longer validates means the schema changed without a
            # PROMPT_VERSION bump; report it rather than serve it.
            logger.error("cached %s answer %s does not validate: %s", job.agent, row.pk, exc)
            _error(job, item, ErrorCode.INVALID_OUTPUT, "stored answer no longer validates")
            continue
        result = AgentResult(
            item_id=item.id,
            agent=job.agent,
            output=output,  # type: ignore[arg-type]
            model=row.answered_by or key.model,
            prompt_version=key.prompt_version,
            cached=True,
        )
        job.results[item.id] = result
        runs.append(_run(job, item, result, key))
    AgentRun.objects.bulk_create(runs)


def _offline(job: _Job, items: list[PostItem], degraded: Degraded) -> None:
    runs = []
    version = offline.VERSIONS[job.agent]
    description_hash = cache.context_hash(job.agent, job.context, job.taxonomy)
    for item in items:
        started = time.perf_counter()
        output = offline.run(
            job.agent,
            item,
            job.context,
            taxonomy=job.taxonomy,
            keywords=settings.AGENT_TAXONOMY_KEYWORDS,
        )
        result = AgentResult(
            item_id=item.id,
            agent=job.agent,
            output=output,
            model=offline.MODEL_NAME,
            prompt_version=version,
            degraded=degraded,
            latency_ms=int((time.perf_counter() - started) * 1000),
        )
        job.results[item.id] = result
        key = cache.Key(
            job.agent.value, version, offline.MODEL_NAME, cache.content_hash(item), description_hash
        )
        runs.append(_run(job, item, result, key))
    AgentRun.objects.bulk_create(runs)
    if degraded is Degraded.BUDGET and items:
        logger.info(
            "feed %s: daily token budget spent, %s %s item(s) ran offline",
            job.feed_id,
            len(items),
            job.agent,
        )


def _error(
    job: _Job,
    item: PostItem,
    code: ErrorCode,
    message: str,
    usage: llm.Usage | None = None,
) -> None:
    usage = usage or llm.Usage()
    key = job.keys.get(item.id)
    model = job.models.primary.name if job.models else offline.MODEL_NAME
    result = AgentResult(
        item_id=item.id,
        agent=job.agent,
        error=AgentError(code=code, message=message[:1000]),
        model=model,
        prompt_version=PROMPT_VERSIONS[job.agent],
        usage=_usage(usage),
    )
    job.results[item.id] = result
    if key is None:
        key = cache.Key(job.agent.value, result.prompt_version, model, "", "")
    AgentRun.objects.bulk_create([_run(job, item, result, key)])


def _usage(usage: llm.Usage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost=llm.cost(usage.input_tokens, usage.output_tokens),
    )


def _run(job: _Job, item: PostItem, result: AgentResult, key: cache.Key) -> AgentRun:
    return AgentRun(
        agent=job.agent.value,
        model=result.model,
        prompt_version=result.prompt_version,
        item_key=item.id,
        input_hash=key.input_hash,
        description_hash=key.description_hash,
        feed_id=job.feed_id,
        raw_post_id=job.raw_post_ids.get(item.id),
        output=result.output.model_dump(mode="json") if result.output is not None else None,
        error_code=result.error.code.value if result.error else "",
        error=result.error.message if result.error else "",
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        latency_ms=result.latency_ms,
        cost=result.usage.cost if result.usage.cost else Decimal("0"),
        cached=result.cached,
        degraded=result.degraded.value,
    )
