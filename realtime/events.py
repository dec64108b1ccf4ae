"""The event contract: NATS subjects, streams and message schemas, defined once.

Everything that crosses the process boundary is a Pydantic model here: the outbox stores
`model_dump(mode="json")` of an envelope, the relay publishes it, the ingest consumer validates
incoming events with the same class, WebSocket clients get the same `post` object, and
`manage.py export_contract` writes their JSON Schemas and an AsyncAPI document into `docs/`.

Compatibility rule: a change that a consumer could notice (a removed or retyped field, a new
required field) bumps SCHEMA_VERSION; adding an optional field does not. Consumers ignore
fields they do not know and deduplicate by `event_id`.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

if TYPE_CHECKING:
    from feeds.models import RawPost, Source
    from processing.models import Post

SCHEMA_VERSION = 1

RAW_POSTS_CREATED = "raw_posts.created"
POSTS_CREATED = "posts.created"

# Stream name → the subjects it captures (DESIGN.md section 4).
STREAMS: dict[str, str] = {"RAW_POSTS": "raw_posts.>", "POSTS": "posts.>"}
STREAM_OF_SUBJECT = {RAW_POSTS_CREATED: "RAW_POSTS", POSTS_CREATED: "POSTS"}

AGENT_SUBJECT_PREFIX = "agents."
AGENT_QUEUE_GROUP = "agents"
AGENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"

# The header that carries event_id: JetStream drops a second message with the same id that
# arrives within the stream's duplicate window.
MSG_ID_HEADER = "Nats-Msg-Id"


def agent_subject(agent_type: str) -> str:
    return f"{AGENT_SUBJECT_PREFIX}{agent_type}"


# --- Event ids -------------------------------------------------------------------------------

_uuid7_lock = threading.Lock()
_uuid7_last = 0  # (unix ms << 12) | counter of the last id this process made


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, so sorting event ids sorts events by creation.

    Within one process the ids are strictly increasing (a 12-bit counter breaks ties inside a
    millisecond and borrows the next millisecond when it overflows); the relay publishes each
    ordering key's events in id order, so this is what keeps a transaction's events in order.
    """
    global _uuid7_last
    with _uuid7_lock:
        now = time.time_ns() // 1_000_000 << 12
        _uuid7_last = max(now, _uuid7_last + 1)
        stamp = _uuid7_last
    ms, counter = stamp >> 12, stamp & 0xFFF
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return uuid.UUID(int=value)


# --- Shared field types ----------------------------------------------------------------------


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# RFC 3339 in UTC on the wire, as Python's isoformat writes it ("2026-01-02T03:04:05+00:00",
# the form WebSocket clients already get); any offset is accepted in and converted to UTC.
UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
]
Url = Annotated[str, Field(max_length=2000)]


class _Model(BaseModel):
    # Unknown fields are ignored, not rejected: producers may add optional fields.
    model_config = ConfigDict(extra="ignore", frozen=True)


class SourceRef(_Model):
    """Where a raw post came from. `url` is the feed URL (or the channel/page URL)."""

    id: int
    kind: Literal["rss", "telegram", "web"]
    url: Url
    title: str = Field(default="", max_length=300)


class Media(_Model):
    url: Url
    mime_type: str = Field(default="", max_length=100)


class RawPostPayload(_Model):
    id: int
    source: SourceRef
    external_id: str = Field(min_length=1, max_length=512)
    url: Url = ""
    title: str = ""
    text: str = ""
    html: str = Field(default="", description="Sanitized HTML.")
    author: str = Field(default="", max_length=300)
    published_at: UtcDatetime | None = None
    fetched_at: UtcDatetime
    content_hash: str = Field(max_length=64)
    media: list[Media] = Field(default_factory=list)
    truncated: bool = Field(
        default=False,
        description="True when `html` and/or `text` were cut to keep the event under the size "
        "limit; the full item is in the raw post `id`.",
    )


class PostPayload(_Model):
    """A raw post as it appears in one feed. Also the `post` object of WebSocket messages."""

    id: int
    feed_id: int
    raw_post_id: int
    story_id: int | None = None
    title: str = ""
    summary: str = ""
    url: Url = ""
    tags: list[str] = Field(default_factory=list)
    relevance: float | None = None
    published_at: UtcDatetime | None = None
    created_at: UtcDatetime
    source: SourceRef


class Envelope(_Model):
    event_id: uuid.UUID = Field(description="Unique; also the Nats-Msg-Id header.")
    event_type: str = Field(description="The subject the event is published on.")
    schema_version: Literal[1] = SCHEMA_VERSION
    occurred_at: UtcDatetime


class RawPostCreated(Envelope):
    """Published on raw_posts.created once per raw post, after the row is committed."""

    event_type: Literal["raw_posts.created"] = RAW_POSTS_CREATED
    raw_post: RawPostPayload


class PostCreated(Envelope):
    """Published on posts.created once per post (a raw post accepted by one feed)."""

    event_type: Literal["posts.created"] = POSTS_CREATED
    post: PostPayload


# --- Agents over request-reply ---------------------------------------------------------------


class AgentRequestEnvelope(_Model):
    """The body of a request on agents.{type}. `input` is validated by the agent's own model."""

    request_id: str = Field(min_length=1, max_length=100)
    input: dict[str, Any]


class AgentReplyError(_Model):
    code: Literal[
        "bad_request",
        "payload_too_large",
        "unknown_agent",
        "timeout",
        "busy",
        "invalid_output",
        "internal_error",
    ]
    message: str = Field(max_length=1000)


class AgentReplyEnvelope(_Model):
    """The reply: `output` (the agent's own model) when ok, else `error`."""

    request_id: str | None = Field(default=None, max_length=100)
    ok: bool
    output: dict[str, Any] | list[Any] | None = Field(
        default=None, description="The agent's output model as JSON (an object or a list)."
    )
    error: AgentReplyError | None = None
    model: str | None = Field(default=None, description="The model that produced the output.")
    usage: dict[str, Any] | None = Field(default=None, description="Token counts and the like.")

    @model_validator(mode="after")
    def _ok_or_error(self) -> AgentReplyEnvelope:
        if self.ok != (self.error is None):
            raise ValueError("a reply has `error` exactly when `ok` is false")
        return self


# --- Builders from the ORM -------------------------------------------------------------------


def source_ref(source: Source) -> SourceRef:
    return SourceRef(id=source.id, kind=source.kind, url=source.url, title=source.title[:300])


def raw_post_payload(raw: RawPost) -> RawPostPayload:
    return RawPostPayload(
        id=raw.id,
        source=source_ref(raw.source),
        external_id=raw.external_id,
        url=raw.url,
        title=raw.title,
        text=raw.text,
        html=raw.html,
        author=raw.author,
        published_at=raw.published_at,
        fetched_at=raw.fetched_at,
        content_hash=raw.content_hash,
        media=list(getattr(raw, "media", None) or []),
    )


def post_payload(post: Post) -> PostPayload:
    return PostPayload(
        id=post.id,
        feed_id=post.feed_id,
        raw_post_id=post.raw_post_id,
        # Stories (clusters) are not stored yet; the field is in the contract already.
        story_id=getattr(post, "story_id", None),
        title=post.title,
        summary=post.summary,
        url=post.url,
        tags=[str(tag) for tag in post.tags],
        relevance=post.relevance,
        published_at=post.published_at,
        created_at=post.created_at,
        source=source_ref(post.raw_post.source),
    )


def raw_post_created(raw: RawPost, *, event_id: uuid.UUID, occurred_at: datetime) -> RawPostCreated:
    return RawPostCreated(
        event_id=event_id, occurred_at=occurred_at, raw_post=raw_post_payload(raw)
    )


def post_created(post: Post, *, event_id: uuid.UUID, occurred_at: datetime) -> PostCreated:
    return PostCreated(event_id=event_id, occurred_at=occurred_at, post=post_payload(post))


EVENT_MODELS: dict[str, type[Envelope]] = {
    RAW_POSTS_CREATED: RawPostCreated,
    POSTS_CREATED: PostCreated,
}
