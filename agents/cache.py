"""Content hashes and the claim-once result cache (`AgentCacheEntry`).

A key is (agent, prompt_version, model, content hash, context hash). Claims are rows inserted
with ON CONFLICT DO NOTHING, so of two concurrent callers exactly one owns a key and pays; the
other finds the row pending and waits for it (or takes it over when its lease ran out).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from agents.models import AgentCacheEntry, CacheState
from agents.schemas import AgentType, FeedContext, PostItem


def _sha256(payload: Any) -> str:
    data = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def content_hash(item: PostItem) -> str:
    """Hash of everything about the post that reaches the model (not the caller's id)."""
    return _sha256(item.model_dump(exclude={"id"}))


def context_hash(agent: AgentType, context: FeedContext, taxonomy: Sequence[str]) -> str:
    """Hash of the part of the feed context this agent reads: the description for relevance,
    the output language for summaries, the taxonomy for tags. Editing a feed's description
    therefore re-runs relevance but keeps its cached summaries."""
    if agent is AgentType.RELEVANCE:
        part: dict[str, Any] = {"description": " ".join(context.description.split())}
    elif agent is AgentType.SUMMARIZE:
        part = {"language": context.language.strip().lower()}
    else:
        part = {"taxonomy": list(taxonomy)}
    return _sha256({"agent": agent.value, **part})


@dataclass(frozen=True)
class Key:
    agent: str
    prompt_version: str
    model: str
    input_hash: str
    description_hash: str

    def fields(self) -> dict[str, str]:
        return {
            "agent": self.agent,
            "prompt_version": self.prompt_version,
            "model": self.model,
            "input_hash": self.input_hash,
            "description_hash": self.description_hash,
        }


@dataclass
class Claim:
    token: uuid.UUID
    done: dict[Key, AgentCacheEntry] = field(default_factory=dict)
    owned: set[Key] = field(default_factory=set)
    busy: set[Key] = field(default_factory=set)


def _rows(keys: Iterable[Key]) -> dict[Key, AgentCacheEntry]:
    keys = set(keys)
    if not keys:
        return {}
    query = Q()
    for key in keys:
        query |= Q(**key.fields())
    found: dict[Key, AgentCacheEntry] = {}
    for row in AgentCacheEntry.objects.filter(query):
        key = Key(row.agent, row.prompt_version, row.model, row.input_hash, row.description_hash)
        found[key] = row
    return found


def lookup(keys: Iterable[Key]) -> dict[Key, AgentCacheEntry]:
    """The stored answers among `keys` (one query)."""
    return {k: row for k, row in _rows(keys).items() if row.state == CacheState.DONE}


def claim(keys: Iterable[Key], *, lease_seconds: float, token: uuid.UUID | None = None) -> Claim:
    """Claim the keys nobody answered yet. Runs in autocommit so other workers see the claim
    at once: call it outside `transaction.atomic()`."""
    keys = set(keys)
    result = Claim(token=token or uuid.uuid4())
    if not keys:
        return result
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds)
    AgentCacheEntry.objects.bulk_create(
        [
            AgentCacheEntry(
                **key.fields(),
                state=CacheState.PENDING,
                claim_token=result.token,
                claimed_until=until,
                created_at=now,
                updated_at=now,
            )
            for key in keys
        ],
        ignore_conflicts=True,
    )
    rows = _rows(keys)
    for key in keys:
        row = rows.get(key)
        if row is None:  # deleted between insert and read by a failed claimer: next round
            result.busy.add(key)
        elif row.state == CacheState.DONE:
            result.done[key] = row
        elif row.claim_token == result.token:
            result.owned.add(key)
        elif row.claimed_until is not None and row.claimed_until < now:
            # The claimer's lease ran out (killed worker): take over with a conditional update,
            # which only one of several competing callers wins.
            taken = AgentCacheEntry.objects.filter(
                pk=row.pk, state=CacheState.PENDING, claim_token=row.claim_token
            ).update(claim_token=result.token, claimed_until=until, updated_at=now)
            (result.owned if taken else result.busy).add(key)
        else:
            result.busy.add(key)
    return result


def extend(keys: Iterable[Key], *, token: uuid.UUID, lease_seconds: float) -> None:
    """Push our claims' lease forward before another (slow) call."""
    keys = list(keys)
    if not keys:
        return
    query = Q()
    for key in keys:
        query |= Q(**key.fields())
    AgentCacheEntry.objects.filter(query, claim_token=token, state=CacheState.PENDING).update(
        claimed_until=timezone.now() + timedelta(seconds=lease_seconds)
    )


def store(
    key: Key, *, token: uuid.UUID, output: dict[str, Any], answered_by: str, run_id: int | None
) -> None:
    """Save the answer under our claim (a no-op if the claim was taken over meanwhile)."""
    AgentCacheEntry.objects.filter(
        **key.fields(), claim_token=token, state=CacheState.PENDING
    ).update(
        state=CacheState.DONE,
        output=output,
        answered_by=answered_by,
        run_id=run_id,
        claimed_until=None,
        updated_at=timezone.now(),
    )


def release(keys: Iterable[Key], *, token: uuid.UUID) -> None:
    """Drop our claims on keys we could not answer, so a later attempt may pay for them."""
    keys = list(keys)
    if not keys:
        return
    query = Q()
    for key in keys:
        query |= Q(**key.fields())
    AgentCacheEntry.objects.filter(query, claim_token=token, state=CacheState.PENDING).delete()
