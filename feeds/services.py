"""Writes for sources: claiming due polls, polling, storing raw posts.

Scheduling contract: a poll runs only under a claim (`Source.claim_token`), taken by one
conditional UPDATE, so two dispatcher ticks or two workers never poll one source at once. A claim
expires after POLL_LEASE_SECONDS (longer than the task's hard time limit), so a poll lost with a
killed worker or a flushed broker is simply dispatched again.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from feeds.fetcher import FetchError
from feeds.models import (
    PollLog,
    PollStatus,
    RawPost,
    Source,
    SourceKind,
    Tombstone,
    source_host,
)
from feeds.parsing import NotAFeed, ParsedEntry
from feeds.readers import ReadResult, reader_for
from feeds.validation import normalize_source_url, validate_source_url
from infatium.db import bulk_insert
from infatium.logging import log_context
from realtime import outbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    source_id: int
    token: str


def claim_due_sources(*, now: datetime | None = None, limit: int | None = None) -> list[Claim]:
    """Claim up to `limit` active sources whose next poll is due, oldest first.

    The rows are locked with SKIP LOCKED (PostgreSQL) and moved past the lease in the same
    transaction, so a concurrent dispatcher neither waits on nor sees them. A host that already
    has POLL_PER_HOST_CONCURRENCY polls in flight gets no more this tick: its due sources stay
    due. Telegram sources are left to the gateway when it runs (TELEGRAM_GATEWAY_ENABLED).

    A claim whose poll died (killed worker, lost message) expires after POLL_LEASE_SECONDS; the
    source is then due again (next_poll_at was set to the lease's end) and this sweeps it up.
    """
    now = now or timezone.now()
    limit = limit or settings.POLL_DISPATCH_BATCH
    lease_until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    cap = settings.POLL_PER_HOST_CONCURRENCY
    with transaction.atomic():
        due = Source.objects.select_for_update(skip_locked=True).filter(
            active=True, next_poll_at__lte=now
        )
        if getattr(settings, "TELEGRAM_GATEWAY_ENABLED", False):
            due = due.exclude(kind=SourceKind.TELEGRAM)
        rows = list(due.order_by("next_poll_at").values_list("id", "host", "claimed_until")[:limit])
        hosts = {host for _, host, _ in rows}
        in_flight: dict[str, int] = dict(
            Source.objects.filter(host__in=hosts, claimed_until__gt=now)
            .values("host")
            .annotate(n=Count("id"))
            .values_list("host", "n")
        )
        chosen: list[tuple[int, uuid.UUID]] = []
        for source_id, host, claimed_until in rows:
            if claimed_until is not None and claimed_until <= now:
                logger.warning(
                    "poll of source %s was lost (lease expired); polling again", source_id
                )
            if in_flight.get(host, 0) >= cap:
                continue
            in_flight[host] = in_flight.get(host, 0) + 1
            chosen.append((source_id, uuid.uuid4()))
        taken = _take_claims(chosen, now=now, lease_until=lease_until)
    return [Claim(source_id=i, token=str(token)) for i, token in chosen if i in taken]


_CLAIM_SQL = """
UPDATE feeds_source AS s SET claim_token = v.token, claimed_until = %s, next_poll_at = %s
FROM unnest(%s::bigint[], %s::uuid[]) AS v(id, token)
WHERE s.id = v.id AND s.active AND s.next_poll_at <= %s
RETURNING s.id
"""


def _take_claims(
    chosen: list[tuple[int, uuid.UUID]], *, now: datetime, lease_until: datetime
) -> set[int]:
    """Set each chosen source's claim, conditional on its still being due; returns the ids
    claimed. One UPDATE on PostgreSQL (the rows are locked already), one per source elsewhere:
    on databases without row locks (SQLite) a racing dispatcher's claim makes it touch nothing.
    """
    if not chosen:
        return set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM_SQL,
                [lease_until, lease_until, [i for i, _ in chosen], [t for _, t in chosen], now],
            )
            return {row[0] for row in cursor.fetchall()}
    return {
        source_id
        for source_id, token in chosen
        if Source.objects.filter(id=source_id, active=True, next_poll_at__lte=now).update(
            claim_token=token, claimed_until=lease_until, next_poll_at=lease_until
        )
    }


def claim_source_now(*, source_id: int) -> Claim | None:
    """Claim one source for an immediate poll ("poll now"), unless a poll is already running."""
    now = timezone.now()
    token = uuid.uuid4()
    lease_until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    claimed = (
        Source.objects.filter(id=source_id)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(claim_token=token, claimed_until=lease_until, next_poll_at=lease_until)
    )
    return Claim(source_id=source_id, token=str(token)) if claimed else None


@dataclass
class Stored:
    """What one store did: raw posts it created and raw posts whose content it changed."""

    new_ids: list[int] = field(default_factory=list)
    edited_ids: list[int] = field(default_factory=list)
    seen: int = 0

    @property
    def to_process(self) -> list[int]:
        return sorted({*self.new_ids, *self.edited_ids})


_NETWORK_STATUSES = (PollStatus.NETWORK_ERROR, PollStatus.TIMEOUT)


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
    """
    tokens = {claim.source_id: claim.token for claim in claims}
    held = [
        source
        for source in Source.objects.filter(id__in=list(tokens))
        if source.claim_token is not None and str(source.claim_token) == tokens[source.id]
    ]
    if len(held) < len(tokens):
        logger.info(
            "%s of %s claimed polls skipped: claim no longer held",
            len(tokens) - len(held),
            len(tokens),
        )
    ids: list[int] = []
    for group in _reads(held, size=settings.POLL_STORE_BATCH):
        ids += _record_all([(source, tokens[source.id], outcome) for source, outcome in group])
    return ids


@dataclass
class _Outcome:
    started_at: datetime
    started: float
    read: ReadResult | None = None
    error: Exception | None = None


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


def _read_in_thread(source: Source) -> _Outcome:
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


def _reads(sources: list[Source], *, size: int) -> Iterator[list[tuple[Source, _Outcome]]]:
    """`_read` every source in the reader pool; yield the reads in the order they finish, in
    groups of `size` and then the rest."""
    if len(sources) <= 1:
        yield [(source, _read(source)) for source in sources]
        return
    futures = {_reader_pool().submit(_read_in_thread, source): source for source in sources}
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
        plan.edited_ids = edited
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
    ids: list[int] = []
    new_ids: dict[int, list[int]] = {}
    for raw in created:
        new_ids.setdefault(raw.source_id, []).append(raw.id)
    for (source, _, outcome), log in zip(polls, logs, strict=True):
        read = outcome.read
        assert read is not None
        if read.cursor is not None:
            advance_cursor(source_id=source.id, cursor=read.cursor)
        plan = plans.get(source.id, _Plan())
        ids += sorted({*new_ids.get(source.id, []), *plan.edited_ids})
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


def known_external_ids(source_id: int, external_ids: Iterable[str]) -> set[str]:
    """Which of `external_ids` the source has stored, or had and purged (tombstones)."""
    wanted = list(dict.fromkeys(external_ids))
    if not wanted:
        return set()
    found = set(
        RawPost.objects.filter(source_id=source_id, external_id__in=wanted).values_list(
            "external_id", flat=True
        )
    )
    found.update(
        Tombstone.objects.filter(source_id=source_id, external_id__in=wanted).values_list(
            "external_id", flat=True
        )
    )
    return found


def store_entries(source: Source, entries: list[ParsedEntry], *, log: PollLog) -> Stored:
    """Store what a read returned, in the caller's transaction; record events in the outbox.

    Identity ladder: an entry is the item stored under the same external id (guid, else link,
    else content hash); failing that, the item with the same canonical link (when the link is
    unique in this read: feeds that point every item at their home page exist), failing that
    the item with the same title and text. Tombstones (purged items) count as stored, so a purged
    item never comes back as new. A guid repeated inside one read steps down to the link (then
    the hash) for the items sharing it.

    An entry matching a stored item with different content is an edit: the raw post takes the
    new title, text and HTML (`edited_at`), and is handed back for processing again (feeds that
    did not take it may now; posts already made show the new text).
    """
    plan = _plan_stores([(source, entries)]).get(source.id, _Plan(seen=len(entries)))
    stored = Stored(seen=plan.seen)
    now = timezone.now()
    if plan.new:
        try:
            # The usual case: nobody stored these meanwhile, and the ids come back with the
            # INSERT (no second read of what was just written).
            with transaction.atomic():
                created = _insert_raw_posts([(source, log, plan.new, now)])
        except IntegrityError:
            # A concurrent store of the same items (the gateway and a poll): keep the first
            # copies; rows that already existed keep the poll that stored them.
            rows_to_add = _raw_posts(source, log, plan.new, now)
            RawPost.objects.bulk_create(rows_to_add, ignore_conflicts=True)
            created = list(RawPost.objects.filter(poll=log).select_related("source").order_by("id"))
        outbox.record_raw_posts_created(created)
        stored.new_ids = [raw.id for raw in created]
    stored.edited_ids = _apply_edits(plan.edits, now=now)
    log.items_seen = stored.seen
    log.items_new = len(stored.new_ids)
    log.items_updated = len(stored.edited_ids)
    return stored


@dataclass
class _Plan:
    """What storing one read will do: the entries that are new, the stored raw posts that the
    read edits (raw post id -> (entry, the title it had))."""

    seen: int = 0
    new: list[ParsedEntry] = field(default_factory=list)
    edits: dict[int, tuple[ParsedEntry, str]] = field(default_factory=dict)
    edited_ids: list[int] = field(default_factory=list)  # the edits that changed a row


# Bound parameters per matching query (psycopg's limit is 65,535).
_MATCH_PARAMS = 20_000


def _plan_stores(reads: Sequence[tuple[Source, list[ParsedEntry]]]) -> dict[int, _Plan]:
    """Decide, for each source's read, which entries are new and which edit a stored item (the
    identity ladder of `store_entries`), with the same few queries for any number of sources:
    one for which of them never stored anything, then one on raw posts and one on tombstones
    per ~20,000 identities to match."""
    distinct = [(source, _distinct_identities(entries)) for source, entries in reads]
    plans = {source.id: _Plan(seen=len(entries)) for source, entries in reads}
    # A source that never stored anything (a new one, an OPML import) has nothing to match.
    maybe_fresh = [s.id for s, entries in distinct if entries and s.last_new_item_at is None]
    not_fresh = set(
        Source.objects.filter(id__in=maybe_fresh)
        .filter(
            Exists(RawPost.objects.filter(source=OuterRef("pk")))
            | Exists(Tombstone.objects.filter(source=OuterRef("pk")))
        )
        .values_list("id", flat=True)
        if maybe_fresh
        else ()
    )
    keys: dict[int, _Keys] = {}
    for source, entries in distinct:
        if entries and (source.last_new_item_at is not None or source.id in not_fresh):
            keys[source.id] = _Keys.of(entries)
    found = {source_id: _Found() for source_id in keys}
    for chunk in _chunks(keys):
        same_item = Q()
        for source_id in chunk:
            same_item |= Q(source_id=source_id) & keys[source_id].any_of()
        for source_id, raw_id, ext, link, chash, title in RawPost.objects.filter(
            same_item
        ).values_list("source_id", "id", "external_id", "link_key", "content_hash", "title"):
            found[source_id].stored(raw_id, ext, link, chash, title)
        for source_id, ext, link, chash in Tombstone.objects.filter(same_item).values_list(
            "source_id", "external_id", "link_key", "content_hash"
        ):
            found[source_id].tombstoned(ext, link, chash)
    for source, entries in distinct:
        plan = plans[source.id]
        if source.id not in keys:
            plan.new = list(entries)
            continue
        unique = keys[source.id].unique_links
        known = found[source.id]
        for entry in entries:
            # The ladder: external id; else the link, when it tells items apart; else the content.
            by_link = entry.link_key in unique
            if entry.external_id in known.tomb_ext or (
                entry.link_key in known.tomb_link
                if by_link
                else entry.content_hash in known.tomb_hash
            ):
                continue
            match = known.ext.get(entry.external_id)
            if match is None:
                match = (
                    known.link.get(entry.link_key)
                    if by_link
                    else known.hash.get(entry.content_hash)
                )
            if match is None:
                plan.new.append(entry)
            elif match[1] != entry.content_hash and match[0] not in plan.edits:
                plan.edits[match[0]] = (entry, match[2])
    return plans


@dataclass
class _Keys:
    """The identities of one read's entries, as the matching query asks for them."""

    external_ids: list[str]
    unique_links: set[str]  # links that only one entry of the read has
    hashes: list[str]

    @classmethod
    def of(cls, entries: list[ParsedEntry]) -> _Keys:
        link_counts = Counter(e.link_key for e in entries if e.link_key)
        return cls(
            external_ids=list(dict.fromkeys(e.external_id for e in entries)),
            unique_links={k for k, n in link_counts.items() if n == 1},
            hashes=list(dict.fromkeys(e.content_hash for e in entries)),
        )

    @property
    def size(self) -> int:
        return 1 + len(self.external_ids) + len(self.unique_links) + len(self.hashes)

    def any_of(self) -> Q:
        return (
            Q(external_id__in=self.external_ids)
            | Q(link_key__in=sorted(self.unique_links))
            | Q(content_hash__in=self.hashes)
        )


@dataclass
class _Found:
    """What one source has stored (and tombstoned) under its read's identities."""

    ext: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    link: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    hash: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    tomb_ext: set[str] = field(default_factory=set)
    tomb_link: set[str] = field(default_factory=set)
    tomb_hash: set[str] = field(default_factory=set)

    def stored(self, raw_id: int, ext: str, link: str, chash: str, title: str) -> None:
        row = (raw_id, chash, title)
        self.ext[ext] = row
        if link:
            self.link.setdefault(link, row)
        self.hash.setdefault(chash, row)

    def tombstoned(self, ext: str, link: str, chash: str) -> None:
        self.tomb_ext.add(ext)
        if link:
            self.tomb_link.add(link)
        self.tomb_hash.add(chash)


def _chunks(keys: dict[int, _Keys]) -> Iterable[list[int]]:
    chunk: list[int] = []
    size = 0
    for source_id, source_keys in keys.items():
        if chunk and size + source_keys.size > _MATCH_PARAMS:
            yield chunk
            chunk, size = [], 0
        chunk.append(source_id)
        size += source_keys.size
    if chunk:
        yield chunk


def _raw_posts(
    source: Source, log: PollLog, entries: list[ParsedEntry], now: datetime
) -> list[RawPost]:
    return [
        RawPost(
            source=source,
            poll_id=log.pk,
            external_id=entry.external_id,
            url=entry.url,
            title=entry.title,
            text=entry.text,
            html=entry.html,
            author=entry.author,
            published_at=entry.published_at,
            fetched_at=now,
            content_hash=entry.content_hash,
            link_key=entry.link_key,
        )
        for entry in entries
    ]


def _insert_raw_posts(
    batches: list[tuple[Source, PollLog, list[ParsedEntry], datetime]],
) -> list[RawPost]:
    """One insert (COPY) of the new entries of every (source, poll log) given; the logs must be
    saved. A unique violation (a concurrent store) raises IntegrityError: call it in a
    savepoint."""
    rows = [row for batch in batches for row in _raw_posts(*batch)]
    return bulk_insert(RawPost, rows)


def _apply_edits(edits: dict[int, tuple[ParsedEntry, str]], *, now: datetime) -> list[int]:
    """Give each edited raw post its new content (unless a concurrent store did already);
    returns the ids changed."""
    edited: list[int] = []
    for raw_id, (entry, old_title) in edits.items():
        changed = (
            RawPost.objects.filter(id=raw_id)
            .exclude(content_hash=entry.content_hash)
            .update(
                title=entry.title,
                text=entry.text,
                html=entry.html,
                content_hash=entry.content_hash,
                edited_at=now,
                processed_at=None,
                process_claim=None,
            )
        )
        if changed:
            edited.append(raw_id)
            _retitle_posts(raw_id, old_title, entry.title)
    return edited


def _retitle_posts(raw_id: int, old_title: str, new_title: str) -> None:
    """Posts that show the raw post's own title follow an edit of it (an agent's title stays)."""
    from processing.models import Post  # processing depends on feeds, not the other way round

    if old_title != new_title:
        Post.objects.filter(raw_post_id=raw_id, title=old_title).update(title=new_title)


def _distinct_identities(entries: list[ParsedEntry]) -> list[ParsedEntry]:
    """Give each entry of one read its own external id, stable from poll to poll whatever the
    order. An id shared by entries with different links (a feed that repeats guids) is not an
    identity: each of them steps down to its link. An id that is only a link shared by entries
    with different content (items without guid all pointing at the home page) steps down to the
    content hash. Otherwise (same id, same link) it is one item repeated: the first copy counts."""
    counts = Counter(entry.external_id for entry in entries)
    if all(n == 1 for n in counts.values()):
        return entries
    links: dict[str, set[str]] = {}
    contents: dict[str, set[str]] = {}
    for entry in entries:
        if counts[entry.external_id] > 1:
            links.setdefault(entry.external_id, set()).add(entry.url)
            contents.setdefault(entry.external_id, set()).add(entry.content_hash)
    out: list[ParsedEntry] = []
    taken: set[str] = set()
    for entry in entries:
        ext = entry.external_id
        if len(links.get(ext, ())) > 1:
            entry = replace(entry, external_id=(entry.url or f"sha256:{entry.content_hash}")[:512])
        elif ext == entry.url and len(contents.get(ext, ())) > 1:
            entry = replace(entry, external_id=f"sha256:{entry.content_hash}")
        if entry.external_id in taken:
            continue
        taken.add(entry.external_id)
        out.append(entry)
    return out


def advance_cursor(*, source_id: int, cursor: int) -> None:
    """Move the source's cursor forward (never back): a conditional update."""
    Source.objects.filter(id=source_id, cursor__lt=cursor).update(cursor=cursor)


def ingest(
    *, source_id: int, entries: list[ParsedEntry], cursor: int | None = None, status: str = "ok"
) -> Stored:
    """Store entries pushed by a long-lived reader (the Telegram gateway), outside the poll
    schedule: one transaction with a PollLog, the cursor advanced, processing queued after the
    commit for new and edited raw posts. Idempotent: the same entries again store nothing."""
    from feeds.tasks import enqueue_processing  # tasks import this module

    started = time.monotonic()
    with transaction.atomic():
        source = Source.objects.get(id=source_id)
        log = PollLog.objects.create(source=source, started_at=timezone.now(), status=status)
        stored = store_entries(source, entries, log=log)
        if cursor is not None:
            advance_cursor(source_id=source_id, cursor=cursor)
        log.finished_at = timezone.now()
        log.duration_ms = int((time.monotonic() - started) * 1000)
        log.save()
        now = timezone.now()
        fields: dict[str, object] = {
            "last_polled_at": now,
            "last_success_at": now,
            "last_status": status,
            "last_error": "",
            "error_count": 0,
        }
        fields.update(_rhythm(source, new_items=len(stored.new_ids), read_entries=entries, now=now))
        Source.objects.filter(id=source_id).update(**fields)
        if stored.to_process:
            enqueue_processing(stored.to_process)
    return stored


def record_deletions(*, source_id: int, external_ids: Iterable[str]) -> int:
    """Mark the source's raw posts with these ids deleted upstream; returns how many changed."""
    ids = [str(ext) for ext in external_ids]
    if not ids:
        return 0
    return RawPost.objects.filter(
        source_id=source_id, external_id__in=ids, deleted_at__isnull=True
    ).update(deleted_at=timezone.now())


def record_source_error(*, source_id: int, status: str, error: str) -> None:
    """An error found outside a poll (the Telegram gateway resolving a channel): recorded in a
    PollLog and on the source like a failed poll, without touching its schedule."""
    now = timezone.now()
    with transaction.atomic():
        PollLog.objects.create(
            source_id=source_id,
            started_at=now,
            finished_at=now,
            status=status,
            error=error[:2000],
            error_class="SourceError",
        )
        Source.objects.filter(id=source_id).update(
            last_status=status, last_error=error[:2000], last_polled_at=now
        )


def set_telegram_identity(*, source_id: int, channel_id: int, access_hash: int) -> None:
    Source.objects.filter(id=source_id).update(tg_channel_id=channel_id, tg_access_hash=access_hash)


def purge_raw_posts(*, older_than_days: int | None = None, limit: int = 5000) -> int:
    """Delete old raw posts no feed kept, leaving a tombstone with each identity they had."""
    from processing.models import Post

    days = older_than_days or settings.RAW_POST_RETENTION_DAYS
    cutoff = timezone.now() - timedelta(days=days)
    with transaction.atomic():
        doomed = list(
            RawPost.objects.filter(fetched_at__lt=cutoff, processed_at__isnull=False)
            .exclude(id__in=Post.objects.values("raw_post_id"))
            .order_by("id")
            .values_list("id", "source_id", "external_id", "link_key", "content_hash")[:limit]
        )
        if not doomed:
            return 0
        Tombstone.objects.bulk_create(
            [
                Tombstone(source_id=src, external_id=ext, link_key=link, content_hash=chash)
                for _, src, ext, link, chash in doomed
            ],
            ignore_conflicts=True,
        )
        RawPost.objects.filter(id__in=[row[0] for row in doomed]).delete()
    logger.info("purged %s raw posts older than %s days (tombstoned)", len(doomed), days)
    return len(doomed)


def _rhythm(
    source: Source, *, new_items: int, read_entries: list[ParsedEntry], now: datetime
) -> dict[str, object]:
    """Update the source's posting rhythm: the mean gap between new items (EWMA)."""
    if not new_items:
        return {}
    fields: dict[str, object] = {"last_new_item_at": now}
    n = new_items
    if source.last_new_item_at is not None:
        gap = max((now - source.last_new_item_at).total_seconds() / n, 1.0)
    else:
        # First news from this source: its own timestamps tell its rhythm.
        # Feeds that stamp every item with the build time say nothing about it.
        dates = sorted({e.published_at for e in read_entries if e.published_at is not None})
        if len(dates) < 2:
            return fields
        gap = (dates[-1] - dates[0]).total_seconds() / (len(dates) - 1)
    previous = source.mean_item_gap
    fields["mean_item_gap"] = gap if previous is None else 0.3 * gap + 0.7 * previous
    return fields


def next_interval(
    source: Source,
    *,
    new_items: int,
    mean_gap: float | None,
    min_interval: int | None,
) -> int:
    """Seconds until the next poll after a successful one.

    Adaptive: half the mean gap between new items, so a new item waits on average a quarter
    of the source's rhythm; a poll that found nothing stretches the interval by a fifth (quiet
    sources drift towards the maximum, a new item pulls them back). Never sooner than what the
    server asked (RSS ttl, Cache-Control, Expires). Clamped to the configured bounds.
    """
    low, high = settings.POLL_MIN_INTERVAL_SECONDS, settings.POLL_MAX_INTERVAL_SECONDS
    current = source.current_interval or source.poll_interval
    if not source.adaptive:
        target = float(source.poll_interval)
    elif mean_gap is None:
        target = float(current if new_items else current * 1.2)
    elif new_items:
        target = mean_gap / 2
    else:
        target = max(mean_gap / 2, current * 1.2)
    if source.adaptive:
        target = min(max(target, low), high)
    if min_interval:
        target = max(target, min(min_interval, high))
    return max(int(target), 1)


def _is_outage(source_id: int, now: datetime) -> bool:
    """Is every source failing on the network right now (our network, not theirs)?"""
    since = now - timedelta(seconds=settings.OUTAGE_WINDOW_SECONDS)
    recent = PollLog.objects.filter(started_at__gte=since)
    if recent.filter(status__in=(PollStatus.OK, PollStatus.NOT_MODIFIED)).exists():
        return False
    failing = (
        recent.filter(status__in=_NETWORK_STATUSES)
        .exclude(source_id=source_id)
        .values("source_id")
        .distinct()[: settings.OUTAGE_MIN_SOURCES]
        .count()
    )
    return failing + 1 >= settings.OUTAGE_MIN_SOURCES


def _finish(
    source: Source,
    token: str,
    log: PollLog,
    started: float,
    read: ReadResult,
    stored: Stored,
    *,
    retry_after: int | None = None,
) -> None:
    fields = _close_log(
        source, log, started, read, new_items=len(stored.new_ids), retry_after=retry_after
    )
    log.save()
    updated = Source.objects.filter(id=source.id, claim_token=token).update(**fields)
    if not updated:
        logger.warning("poll of source %s finished after its claim expired", source.id)
    _log_poll(source, log)


def _close_log(
    source: Source,
    log: PollLog,
    started: float,
    read: ReadResult,
    *,
    new_items: int,
    retry_after: int | None = None,
) -> dict[str, object]:
    """Finish `log` (not saved) and return the source's new scheduling state."""
    now = timezone.now()
    log.finished_at = now
    log.duration_ms = int((time.monotonic() - started) * 1000)
    failed = log.status not in (PollStatus.OK, PollStatus.NOT_MODIFIED)
    if failed and log.status in _NETWORK_STATUSES and _is_outage(source.id, now):
        log.outage = True
    fields: dict[str, object] = {
        "claim_token": None,
        "claimed_until": None,
        "last_polled_at": now,
        "last_status": log.status,
    }
    current = source.current_interval or source.poll_interval
    if failed:
        fields["last_error"] = log.error
        if log.outage:
            # Not the source's fault: retry at its usual pace, count nothing against it.
            delay = float(current)
        else:
            errors = source.error_count + 1
            fields["error_count"] = errors
            # Doubling per consecutive error, capped; reset by the next success.
            delay = min(current * 2 ** min(errors, 16), settings.POLL_MAX_INTERVAL_SECONDS)
            delay = max(delay, current)
        if retry_after:
            delay = max(delay, min(retry_after, settings.POLL_MAX_INTERVAL_SECONDS))
    else:
        fields.update(last_error="", error_count=0, last_success_at=now)
        if read.etag is not None:
            fields["etag"] = read.etag[:500]
        if read.last_modified is not None:
            fields["last_modified"] = read.last_modified[:100]
        if read.title and not source.title:
            fields["title"] = read.title[:300]
        if read.site_url and not source.site_url:
            fields["site_url"] = read.site_url
        rhythm = _rhythm(source, new_items=new_items, read_entries=read.entries, now=now)
        fields.update(rhythm)
        interval = next_interval(
            source,
            new_items=new_items,
            mean_gap=rhythm.get("mean_item_gap", source.mean_item_gap),  # type: ignore[arg-type]
            min_interval=read.min_interval,
        )
        fields["current_interval"] = interval
        delay = float(interval)
    # Up to 10% jitter so sources added together do not stay in lockstep.
    fields["next_poll_at"] = now + timedelta(seconds=delay * (1 + random.random() * 0.1))
    return fields


def _log_poll(source: Source, log: PollLog) -> None:
    failed = log.status not in (PollStatus.OK, PollStatus.NOT_MODIFIED)
    logger.info(
        "polled source %s: %s http=%s seen=%s new=%s edited=%s in %s ms%s",
        source.id,
        log.status,
        log.http_status,
        log.items_seen,
        log.items_new,
        log.items_updated,
        log.duration_ms,
        f" error={log.error}" + (" (outage)" if log.outage else "") if failed else "",
        extra={"source_id": source.id},  # batched 304s are logged outside _record's context
    )


_FINISH_SQL = """
UPDATE feeds_source AS s SET
    claim_token = NULL, claimed_until = NULL, last_status = v.status, last_error = '',
    error_count = 0, last_polled_at = v.now, last_success_at = v.now,
    etag = COALESCE(v.etag, s.etag), last_modified = COALESCE(v.last_modified, s.last_modified),
    title = COALESCE(v.title, s.title), site_url = COALESCE(v.site_url, s.site_url),
    last_new_item_at = COALESCE(v.last_new_item_at, s.last_new_item_at),
    mean_item_gap = COALESCE(v.mean_item_gap, s.mean_item_gap),
    current_interval = v.current_interval, next_poll_at = v.next_poll_at
FROM (VALUES {rows}) AS v(
    id, token, status, now, etag, last_modified, title, site_url, last_new_item_at,
    mean_item_gap, current_interval, next_poll_at
)
WHERE s.id = v.id AND s.claim_token = v.token
RETURNING s.id
"""
_FINISH_ROW = (
    "(%s::bigint, %s::uuid, %s::text, %s::timestamptz, %s::text, %s::text, %s::text, %s::text,"
    " %s::timestamptz, %s::double precision, %s::integer, %s::timestamptz)"
)
# Columns `_close_log` sets only sometimes (NULL in the VALUES: keep the stored one).
_FINISH_OPTIONAL = ("etag", "last_modified", "title", "site_url", "last_new_item_at")
_FINISH_ROWS_PER_STATEMENT = 1000


def _finish_sources(finished: list[tuple[Source, str, dict[str, object]]]) -> None:
    """`_finish`'s source update for many successful polls (each with the fields `_close_log`
    returned): one UPDATE on PostgreSQL, each row still conditional on its claim."""
    if connection.vendor != "postgresql":
        for source, token, fields in finished:
            if not Source.objects.filter(id=source.id, claim_token=token).update(**fields):
                logger.warning("poll of source %s finished after its claim expired", source.id)
        return
    updated: set[int] = set()
    for start in range(0, len(finished), _FINISH_ROWS_PER_STATEMENT):
        chunk = finished[start : start + _FINISH_ROWS_PER_STATEMENT]
        params: list[object] = []
        for source, token, fields in chunk:
            params += [source.id, token, fields["last_status"], fields["last_polled_at"]]
            params += [fields.get(name) for name in _FINISH_OPTIONAL]
            params += [fields.get("mean_item_gap"), fields["current_interval"]]
            params.append(fields["next_poll_at"])
        sql = _FINISH_SQL.format(rows=", ".join([_FINISH_ROW] * len(chunk)))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            updated.update(row[0] for row in cursor.fetchall())
    for source, _, _ in finished:
        if source.id not in updated:
            logger.warning("poll of source %s finished after its claim expired", source.id)


class QuotaExceeded(Exception):
    """The user already has as many objects of a kind as their quota allows."""


class SourceExists(Exception):
    """Another source already has this kind and URL."""


def lock_user(user: AbstractBaseUser) -> None:
    """Lock the user's row until the transaction ends: serializes one user's quota checks, so
    concurrent requests cannot all see "one left" and all insert."""
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))


def create_source(
    *,
    user: AbstractBaseUser,
    url: str,
    kind: str = SourceKind.RSS,
    title: str = "",
    poll_interval: int | None = None,
    active: bool = True,
) -> tuple[Source, bool]:
    """Return the source for (kind, url), creating it unless it exists; True if created here.

    Idempotent by URL: a URL already stored (compared after `normalize_source_url`) returns that
    source unchanged and costs nothing against the quota. A user who is not staff may have
    created at most SOURCE_QUOTA_PER_USER sources; the count and the insert run under a lock on
    the user's row, so concurrent requests cannot overshoot it. A concurrent insert of the same
    URL by someone else is absorbed by the unique constraint (the other row is returned).
    Raises ValidationError for a URL `validate_source_url` refuses, QuotaExceeded at the quota.
    The new source is due at once, so the next dispatcher tick polls it.
    """
    validate_source_url(url)
    url = normalize_source_url(url)
    existing = Source.objects.filter(kind=kind, url=url).first()
    if existing is not None:
        return existing, False
    with transaction.atomic():
        if not getattr(user, "is_staff", False):
            lock_user(user)
            if Source.objects.filter(created_by=user).count() >= settings.SOURCE_QUOTA_PER_USER:
                raise QuotaExceeded(
                    f"You may add at most {settings.SOURCE_QUOTA_PER_USER} sources."
                )
        source, created = Source.objects.get_or_create(
            kind=kind,
            url=url,
            defaults={
                "title": title,
                "active": active,
                "poll_interval": poll_interval or settings.POLL_DEFAULT_INTERVAL_SECONDS,
                "created_by": user,
                "next_poll_at": timezone.now(),
            },
        )
    if created:
        logger.info("source %s added by user %s: %s", source.id, user.pk, url)
    return source, created


def discover_feed_url(url: str) -> str:
    """The feed to add for `url`: the URL itself when it is a feed (or already a source, or
    cannot be fetched right now: its polls will tell why), else the first feed the page links
    to. Raises ValidationError for a page that links no feed."""
    from feeds.discovery import resolve_feed_url  # fetches; imported where it is used

    validate_source_url(url)
    if Source.objects.filter(kind=SourceKind.RSS, url=normalize_source_url(url)).exists():
        return url
    try:
        found = resolve_feed_url(url)
    except FetchError:
        return url
    if found is None:
        raise ValidationError(
            "No RSS, Atom or JSON feed found at this URL, and the page links to none. "
            "Add it as a web page source (kind 'web') to follow its articles.",
            code="no_feed",
        )
    if found != url:
        logger.info("feed autodiscovery: %s -> %s", url, found)
    return found


def update_source(
    *,
    source: Source,
    title: str | None = None,
    url: str | None = None,
    kind: str | None = None,
    active: bool | None = None,
    poll_interval: int | None = None,
) -> Source:
    """Change the given fields (None: keep). A new URL or kind is validated and normalized,
    forgets the old URL's conditional-GET validators and makes the source due at once.
    Raises ValidationError for a refused URL, SourceExists if it collides with another source.
    Who may change what is the caller's decision (the API lets only staff change the URL)."""
    fields: dict[str, object] = {}
    if title is not None:
        fields["title"] = title
    if active is not None:
        fields["active"] = active
    if poll_interval is not None:
        fields["poll_interval"] = poll_interval
    if url is not None:
        validate_source_url(url)
        url = normalize_source_url(url)
    new_url = url if url is not None and url != source.url else None
    new_kind = kind if kind is not None and kind != source.kind else None
    if new_url is not None or new_kind is not None:
        fields.update(
            host=source_host(new_url or source.url),
            url=new_url or source.url,
            kind=new_kind or source.kind,
            etag="",
            last_modified="",
            next_poll_at=timezone.now(),
        )
    if not fields:
        return source
    try:
        with transaction.atomic():
            Source.objects.filter(id=source.id).update(**fields)
    except IntegrityError as exc:
        raise SourceExists("Another source already has this URL.") from exc
    source.refresh_from_db()
    return source
