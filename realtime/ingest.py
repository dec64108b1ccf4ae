"""Optional ingest: raw_posts.created from other publishers into the processing pipeline.

A durable pull consumer (NATS_INGEST_DURABLE) on RAW_POSTS, explicit acks. Per message:
- invalid (not a RawPostCreated v1): a DeadLetter row at once, then `term` (no redelivery);
- one of our own events (its event_id is in our outbox): ack, nothing else;
- seen before (its event_id is in the IngestedEvent inbox): ack, nothing else;
- else, in one transaction: the source is found by (kind, url) or created *inactive* (so we
  never fetch a URL another publisher named, and beat never polls it), the raw post is inserted
  unless (source, external_id) exists, the inbox row is written; after commit the new raw post
  is queued for processing like a polled one, then the message is acked;
- processing failed: `nak` with a growing delay; on the NATS_INGEST_MAX_DELIVER-th failure a
  DeadLetter row is written and the message is `term`ed. Other messages keep flowing.

Ingested raw posts are not announced again on raw_posts.created (the event is on the stream
already); the posts made from them are announced on posts.created as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from feeds.models import RawPost, Source
from feeds.sanitize import sanitize_html
from realtime.events import MSG_ID_HEADER, RAW_POSTS_CREATED, STREAM_OF_SUBJECT, RawPostCreated
from realtime.jetstream import ensure_streams
from realtime.models import DeadLetter, IngestedEvent, OutboxEvent
from realtime.relay import db

logger = logging.getLogger(__name__)

STREAM = STREAM_OF_SUBJECT[RAW_POSTS_CREATED]
DEAD_LETTER_DATA_LIMIT = 64 * 1024


class Outcome(enum.StrEnum):
    CREATED = "created"  # a new raw post, queued for processing
    KNOWN_POST = "known_post"  # the raw post was already stored (same source, external_id)
    DUPLICATE = "duplicate"  # this event_id was handled before
    OWN = "own"  # we published it


def _enqueue_processing(raw_post_id: int) -> None:
    """After commit, the same chain a poll's new raw posts go through (feeds.tasks)."""
    from celery import chain

    from processing.tasks import decide_candidates, process_raw_posts

    signature = chain(process_raw_posts.s([raw_post_id]), decide_candidates.s())
    transaction.on_commit(signature.apply_async)


def ingest_raw_post_created(
    event: RawPostCreated,
    *,
    msg_id: str | None = None,
    on_created: Callable[[int], None] = _enqueue_processing,
) -> Outcome:
    """Store one foreign raw_posts.created event. Idempotent by event_id and by
    (source, external_id); a concurrent duplicate rolls back and is seen as DUPLICATE on
    redelivery. An event whose event_id or Nats-Msg-Id (`msg_id`) is in our outbox is ours.
    `on_created(raw_post_id)` runs inside the transaction (use on_commit in it)."""
    own_ids = {event.event_id}
    if msg_id and _is_uuid(msg_id):
        own_ids.add(uuid.UUID(msg_id))
    with transaction.atomic():
        if OutboxEvent.objects.filter(id__in=own_ids).exists():
            return Outcome.OWN
        if IngestedEvent.objects.filter(event_id=event.event_id).exists():
            return Outcome.DUPLICATE
        item = event.raw_post
        source = _source_for(event)
        created = True
        try:
            with transaction.atomic():
                raw = RawPost.objects.create(
                    source=source,
                    external_id=item.external_id,
                    url=item.url,
                    title=item.title,
                    text=item.text,
                    # Another publisher's HTML is as untrusted as a feed's.
                    html=sanitize_html(item.html),
                    author=item.author,
                    published_at=item.published_at,
                    fetched_at=item.fetched_at,
                    content_hash=item.content_hash,
                )
        except IntegrityError:
            created = False
            raw = RawPost.objects.get(source=source, external_id=item.external_id)
        IngestedEvent.objects.create(event_id=event.event_id, raw_post=raw, created=created)
        if created:
            on_created(raw.id)
        return Outcome.CREATED if created else Outcome.KNOWN_POST


def _source_for(event: RawPostCreated) -> Source:
    ref = event.raw_post.source
    source = Source.objects.filter(kind=ref.kind, url=ref.url).first()
    if source is not None:
        return source
    try:
        with transaction.atomic():
            return Source.objects.create(kind=ref.kind, url=ref.url, title=ref.title, active=False)
    except IntegrityError:  # created meanwhile by a concurrent ingest or a user
        return Source.objects.get(kind=ref.kind, url=ref.url)


def record_dead_letter(
    *, msg_meta: dict[str, Any], headers: dict[str, str], data: bytes, error: str
) -> None:
    """Keep a message we give up on; a second record for the same stream message is a no-op."""
    DeadLetter.objects.bulk_create(
        [
            DeadLetter(
                stream=msg_meta["stream"],
                stream_seq=msg_meta["stream_seq"],
                subject=msg_meta["subject"],
                consumer=msg_meta["consumer"],
                event_id=(headers.get(MSG_ID_HEADER) or "")[:100],
                num_delivered=msg_meta["num_delivered"],
                headers=headers,
                data=data[:DEAD_LETTER_DATA_LIMIT].decode(errors="replace"),
                error=error[:4000],
            )
        ],
        ignore_conflicts=True,
    )


class IngestConsumer:
    def __init__(
        self,
        nc: NatsClient,
        *,
        durable: str | None = None,
        max_deliver: int | None = None,
        ack_wait: float | None = None,
        batch: int | None = None,
        on_created: Callable[[int], None] = _enqueue_processing,
        poll_timeout: float = 1.0,
    ) -> None:
        self.nc = nc
        self.poll_timeout = poll_timeout  # how long an empty fetch waits (and stop may wait)
        self.durable = durable or settings.NATS_INGEST_DURABLE
        self.max_deliver = max_deliver or settings.NATS_INGEST_MAX_DELIVER
        self.ack_wait = ack_wait or settings.NATS_INGEST_ACK_WAIT_SECONDS
        self.batch = batch or settings.NATS_INGEST_BATCH
        self.on_created = on_created
        self.counts: dict[str, int] = {}

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=RAW_POSTS_CREATED,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.batch * 10,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle messages until `stop`; survives NATS restarts (the consumer is
        durable: it resumes from its ack floor)."""
        js = self.nc.jetstream()
        sub = None
        while not stop.is_set():
            try:
                if sub is None:
                    await ensure_streams(js)  # the relay may not have created them yet
                    sub = await js.pull_subscribe(
                        RAW_POSTS_CREATED, durable=self.durable, stream=STREAM, config=self.config()
                    )
                    logger.info("ingest: consuming %s as %s", RAW_POSTS_CREATED, self.durable)
                try:
                    messages = await sub.fetch(self.batch, timeout=self.poll_timeout)
                except (TimeoutError, NatsTimeoutError):
                    continue
                for msg in messages:
                    await self.handle(msg)
            except Exception as exc:
                logger.warning("ingest: %s: %s; retrying", type(exc).__name__, exc)
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                sub = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def handle(self, msg: Msg) -> str:
        meta = msg.metadata
        delivered = meta.num_delivered or 1
        try:
            event = RawPostCreated.model_validate_json(msg.data)
        except ValidationError as exc:
            await self._dead_letter(msg, f"invalid event: {exc}")
            await msg.term()
            return self._count("invalid")
        header_id = (msg.headers or {}).get(MSG_ID_HEADER)
        try:
            outcome = await db(
                ingest_raw_post_created, event, msg_id=header_id, on_created=self.on_created
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if delivered >= self.max_deliver:
                logger.error(
                    "ingest: giving up on %s after %s tries: %s", event.event_id, delivered, error
                )
                await self._dead_letter(msg, error)
                await msg.term()
                return self._count("dead_lettered")
            logger.warning("ingest: %s failed (try %s): %s", event.event_id, delivered, error)
            await msg.nak(delay=min(0.5 * 2 ** (delivered - 1), 30.0))
            return self._count("retried")
        await msg.ack()
        return self._count(outcome.value)

    async def _dead_letter(self, msg: Msg, error: str) -> None:
        meta = msg.metadata
        await db(
            record_dead_letter,
            msg_meta={
                "stream": meta.stream,
                "stream_seq": meta.sequence.stream,
                "subject": msg.subject,
                "consumer": meta.consumer,
                "num_delivered": meta.num_delivered or 1,
            },
            headers=dict(msg.headers or {}),
            data=msg.data,
            error=error,
        )

    def _count(self, what: str) -> str:
        self.counts[what] = self.counts.get(what, 0) + 1
        return what


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
