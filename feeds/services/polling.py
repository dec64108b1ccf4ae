"""Polling claimed sources: each source is read (in a pool of threads when there are several),
then its poll is recorded under its claim: a PollLog, the raw posts stored, the next poll
scheduled. Successful reads are recorded in batches, a failed one on its own."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from feeds.fetcher import FetchError
from feeds.models import PollLog, PollStatus, Source
from feeds.parsing import NotAFeed
from feeds.readers import ReadResult, reader_for
from feeds.services.claims import Claim
from feeds.services.schedule import _close_log, _finish, _finish_sources, _log_poll
from feeds.services.storing import (
    Stored,
    _apply_edits,
    _insert_raw_posts,
    _Plan,
    _plan_stores,
    advance_cursor,
    known_external_ids,
    store_entries,
)
from infatium.db import bulk_insert
from infatium.logging import log_context
from realtime import outbox

logger = logging.getLogger(__name__)


def poll_source(*, source_id: int, token: str) -> list[int]:
    """Read and store one source under its claim; return the raw post ids to process (new ones
    and ones whose content changed).

    Idempotent: a call whose claim is gone (already finished, or superseded after the lease
    expired) does nothing and returns []. Errors are recorded on the source and in a PollLog;
    the next poll is then scheduled later (backoff), never disabled.
    """
    source = Source.objects.filter(id=source_id, claim_token=token).first()
    if source is None:
        logger.info("poll of source %s skipped: claim %s no longer held", source_id, token)
        return []
    return _record_all([(source, token, _read(source))])


def poll_sources(claims: Sequence[Claim]) -> list[int]:
    """`poll_source` for many claims at once; returns every raw post id to process.

    The network waits overlap (a thread per source, up to POLL_THREADS), and the reads are
    stored as they come in, POLL_STORE_BATCH at a time, each group in one transaction
    (`_record_all`), while the remaining reads go on: the database works on one group while
    the next is fetched and parsed.

    A read that has not started once a quarter of the task's soft time limit is spent (slow
    sources ahead of it in a big batch) is not started: its claim is given back and the source
    is due at once, for the next dispatch, instead of the task overrunning its limit and the
    source waiting out its lease.
    """
    tokens = {claim.source_id: claim.token for claim in claims}
    held = [
        source
        for source in Source.objects.filter(id__in=list(tokens))
        if source.claim_token is not None and str(source.claim_token) == tokens[source.id]
    ]
    position = {claim.source_id: n for n, claim in enumerate(claims)}
    held.sort(key=lambda source: position[source.id])  # read in the order they were claimed
    if len(held) < len(tokens):
        logger.info(
            "%s of %s claimed polls skipped: claim no longer held",
            len(tokens) - len(held),
            len(tokens),
        )
    start_by = time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT * START_WITHIN
    ids: list[int] = []
    for group in _reads(held, size=settings.POLL_STORE_BATCH, start_by=start_by):
        late = [(source, tokens[source.id]) for source, outcome in group if outcome.late]
        if late:
            _give_back(late)
        polls = [(source, tokens[source.id], o) for source, o in group if not o.late]
        if polls:
            ids += _record_all(polls)
    return ids


# The share of the task's soft time limit within which a batch's reads must start: a read
# started then still ends in time (a feed within FETCH_TIMEOUT_SECONDS, a web page's articles
# within half the limit after its listing).
START_WITHIN = 0.25


def _give_back(claims: list[tuple[Source, str]]) -> None:
    """Release the claims of reads never started: each source is due again at once."""
    now = timezone.now()
    released = 0
    for source, token in claims:
        released += Source.objects.filter(id=source.id, claim_token=token).update(
            claim_token=None, claimed_until=None, next_poll_at=now
        )
    logger.warning(
        "%s polls not started within %.0f s of their task; given back for the next dispatch",
        released,
        settings.CELERY_TASK_SOFT_TIME_LIMIT * START_WITHIN,
    )


@dataclass
class _Outcome:
    started_at: datetime
    started: float
    read: ReadResult | None = None
    error: Exception | None = None
    late: bool = False  # not started: the task's time to start reads was over


def _read(source: Source) -> _Outcome:
    """Network and parsing only; failures are kept for `_record`."""
    outcome = _Outcome(started_at=timezone.now(), started=time.monotonic())
    try:
        with log_context(source_id=source.id):  # also in the pool's threads
            outcome.read = reader_for(source.kind)(
                source, lambda ids: known_external_ids(source.id, ids)
            )
    except Exception as exc:
        outcome.error = exc
    return outcome


def _read_in_thread(source: Source, start_by: float) -> _Outcome:
    if time.monotonic() > start_by:
        return _Outcome(started_at=timezone.now(), started=time.monotonic(), late=True)
    try:
        return _read(source)
    finally:
        connections.close_all()  # this thread's own connections (a reader that asked `known`)


_readers: ThreadPoolExecutor | None = None
_readers_key: tuple[int, int] = (0, 0)  # (pid, size) the pool was made for


def _reader_pool() -> ThreadPoolExecutor:
    """One pool of POLL_THREADS threads per process, kept between tasks (starting eight
    threads costs about as much as a 304 round trip)."""
    global _readers, _readers_key
    key = (os.getpid(), settings.POLL_THREADS)
    if _readers is None or _readers_key != key:
        if _readers is not None and _readers_key[0] == key[0]:
            _readers.shutdown(wait=False)
        # A forked child inherits the parent's pool object but none of its threads: a new one.
        _readers = ThreadPoolExecutor(max_workers=key[1], thread_name_prefix="poll-read")
        _readers_key = key
    return _readers


def _reads(
    sources: list[Source], *, size: int, start_by: float
) -> Iterator[list[tuple[Source, _Outcome]]]:
    """`_read` every source in the reader pool; yield the reads in the order they finish, in
    groups of `size` and then the rest. A read whose turn comes after `start_by` (monotonic
    time) is not made: its outcome is `late`."""
    if len(sources) <= 1:
        yield [(source, _read(source)) for source in sources]
        return
    pool = _reader_pool()
    futures = {pool.submit(_read_in_thread, source, start_by): source for source in sources}
    finished: list[tuple[Source, _Outcome]] = []
    try:
        for count, future in enumerate(as_completed(futures), start=1):
            finished.append((futures[future], future.result()))
            if len(finished) == size or count == len(futures):
                yield finished
                finished = []
    finally:
        # Interrupted (the soft time limit, an error storing a group): the reads not started
        # yet are dropped; their claims expire with the lease.
        for future in futures:
            future.cancel()


def _record_all(polls: list[tuple[Source, str, _Outcome]]) -> list[int]:
    """Record every poll in one transaction (a commit waits for the WAL to reach the disk):
    successful reads together, then each failed one on its own. Returns the raw post ids to
    process."""
    succeeded = [poll for poll in polls if poll[2].error is None and poll[2].read is not None]
    ids: list[int] = []
    with transaction.atomic():
        if succeeded:
            ids += _store_polls_or_each(succeeded)
        for source, token, outcome in polls:
            if outcome.error is not None or outcome.read is None:
                ids += _record(source, token, outcome)
    return ids


def _store_polls_or_each(polls: list[tuple[Source, str, _Outcome]]) -> list[int]:
    """`_store_polls` in a savepoint; should anything in it fail (a unique violation from a
    concurrent store, a row PostgreSQL refuses), it is undone and every poll is recorded on its
    own (`_record`), so the failure lands on its own source and the others are stored."""
    try:
        with transaction.atomic():
            return _store_polls(polls)
    except Exception:
        logger.warning(
            "storing %s polls together failed; storing them one by one", len(polls), exc_info=True
        )
    ids: list[int] = []
    for source, token, outcome in polls:
        ids += _record(source, token, outcome)
    return ids


def _store_polls(polls: list[tuple[Source, str, _Outcome]]) -> list[int]:
    """Store successful reads (304s and feeds with entries) at once, in the caller's
    transaction: what is new is decided for every source with two queries in all
    (`_plan_stores`), then one COPY of the poll logs, one of the raw posts, one of their outbox
    events, and one UPDATE of the sources (each still conditional on its claim). Edited items
    are updated one by one (rare). Same outcome as `_record_poll` for each source."""
    now = timezone.now()
    reads = [(source, outcome.read) for source, _, outcome in polls]
    plans = _plan_stores([(source, read.entries) for source, read in reads if read])
    logs: list[PollLog] = []
    finished: list[tuple[Source, str, dict[str, object]]] = []
    stored: dict[int, Stored] = {}
    for source, token, outcome in polls:
        read = outcome.read
        assert read is not None
        plan = plans.get(source.id, _Plan())
        edited = _apply_edits(plan.edits, now=now)
        log = PollLog(
            source=source,
            started_at=outcome.started_at,
            status=PollStatus.NOT_MODIFIED if read.not_modified else PollStatus.OK,
            http_status=read.http_status,
            bytes_received=min(read.bytes_received, 2**31 - 1),
            items_seen=plan.seen,
            items_new=len(plan.new),
            items_updated=len(edited),
        )
        fields = _close_log(source, log, outcome.started, read, new_items=len(plan.new))
        stored[source.id] = Stored(edited_ids=edited, seen=plan.seen)
        logs.append(log)
        finished.append((source, token, fields))
    bulk_insert(PollLog, logs)
    created = _insert_raw_posts(
        [
            (source, log, plans[source.id].new, now)
            for (source, _, _), log in zip(polls, logs, strict=True)
            if source.id in plans and plans[source.id].new
        ]
    )
    outbox.record_raw_posts_created(created)
    _finish_sources(finished)
    for raw in created:
        stored[raw.source_id].new_ids.append(raw.id)
    ids: list[int] = []
    for (source, _, outcome), log in zip(polls, logs, strict=True):
        read = outcome.read
        assert read is not None
        if read.cursor is not None:
            advance_cursor(source_id=source.id, cursor=read.cursor)
        ids += stored[source.id].to_process
        _log_poll(source, log)
    return ids


def _record(source: Source, token: str, outcome: _Outcome) -> list[int]:
    with log_context(source_id=source.id):
        return _record_poll(source, token, outcome)


def _record_poll(source: Source, token: str, outcome: _Outcome) -> list[int]:
    log = PollLog(source=source, started_at=outcome.started_at)
    read = outcome.read or ReadResult()
    started = outcome.started
    stored = Stored()
    try:
        if outcome.error is not None:
            raise outcome.error
        log.http_status = read.http_status
        log.bytes_received = min(read.bytes_received, 2**31 - 1)
        if read.not_modified:
            log.status = PollStatus.NOT_MODIFIED
            _finish(source, token, log, started, read, stored)
            return []
        with transaction.atomic():
            log.status = PollStatus.OK
            log.save()
            stored = store_entries(source, read.entries, log=log)
            if read.cursor is not None:
                advance_cursor(source_id=source.id, cursor=read.cursor)
            _finish(source, token, log, started, read, stored)
    except (FetchError, NotAFeed) as exc:
        log.status = exc.status
        log.http_status = getattr(exc, "http_status", None) or log.http_status
        log.error = str(exc)[:2000]
        log.error_class = type(exc).__name__
        log.bytes_received = min(getattr(exc, "bytes_received", 0) or log.bytes_received, 2**31 - 1)
        retry_after = getattr(exc, "retry_after", None)
        _finish(source, token, log, started, read, stored, retry_after=retry_after)
    except Exception as exc:
        logger.error(
            "poll of source %s failed unexpectedly",
            source.id,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        log.status = PollStatus.ERROR
        log.error = f"{type(exc).__name__}: {exc}"[:2000]
        log.error_class = type(exc).__name__
        log.pk = None  # a failed transaction may have left the instance with an id it rolled back
        stored = Stored()  # whatever the transaction stored was rolled back
        _finish(source, token, log, started, ReadResult(), stored)
    return stored.to_process
