"""Storing entries as raw posts: the identity ladder that tells new entries and edits from items
already stored, the inserts and the edits, and the writes made outside the poll schedule (the
Telegram gateway's `ingest`, deletions, errors and identity; purging old raw posts)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from feeds.models import PollLog, RawPost, Source, Tombstone
from feeds.parsing import ParsedEntry
from feeds.services.schedule import _rhythm
from infatium.db import bulk_insert
from realtime import outbox

logger = logging.getLogger(__name__)


@dataclass
class Stored:
    """What one store did: raw posts it created and raw posts whose content it changed."""

    new_ids: list[int] = field(default_factory=list)
    edited_ids: list[int] = field(default_factory=list)
    seen: int = 0

    @property
    def to_process(self) -> list[int]:
        return sorted({*self.new_ids, *self.edited_ids})


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
