"""Inputs and outputs of every agent: one set of Pydantic models for Celery, NATS and the LLM.

These models are the contract. The NATS responder validates `agents.{type}` requests with
`AgentRequest` and replies with `AgentResult` objects; the pipeline builds `PostItem` and
`FeedContext`; the LLM path and the offline default both produce the same `*Output` models. All
of them are strict (unknown fields are rejected, strings and lists are bounded) and serialize to
plain JSON (`model_dump(mode="json")`; `Decimal` costs become strings).

The `*Answer` / `*Batch` models are what the LLM is asked to fill in (one answer per post id in a
batch); they are internal to `agents.llm` but live here so the whole wire shape is in one file.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from agents.text import split_sentences

# Bounds. Generous enough for real posts, small enough that one request cannot flood a worker
# or a prompt: longer texts are cut by `PostItem.from_fields` before validation, never here.
MAX_ID = 128
MAX_TITLE_IN = 1_000
MAX_TEXT_IN = 20_000
MAX_URL = 2_000
MAX_AUTHOR = 300
MAX_LANGUAGE = 16
MAX_DESCRIPTION = 4_000
MAX_TAG = 64
MAX_TAXONOMY = 50
MAX_ITEMS = 100
MAX_REASON = 300
MAX_ASPECT = 120
MAX_ASPECTS = 10
MAX_TITLE_OUT = 150
MAX_SUMMARY = 1_000
MAX_SUMMARY_SENTENCES = 3
MAX_TAGS_OUT = 3
MAX_ERROR = 1_000

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG)]
Aspect = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ASPECT)]


class AgentType(StrEnum):
    RELEVANCE = "relevance"
    SUMMARIZE = "summarize"
    TAG = "tag"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --- Inputs -------------------------------------------------------------------------------


class PostItem(_Strict):
    """One post to evaluate. `id` is the caller's key; answers come back under it."""

    id: ItemId
    title: str = Field(default="", max_length=MAX_TITLE_IN)
    text: str = Field(default="", max_length=MAX_TEXT_IN)
    url: str = Field(default="", max_length=MAX_URL)
    author: str = Field(default="", max_length=MAX_AUTHOR)
    language: str = Field(default="", max_length=MAX_LANGUAGE, description="Language hint.")

    @classmethod
    def from_fields(
        cls,
        *,
        id: str | int,
        title: str = "",
        text: str = "",
        url: str = "",
        author: str = "",
        language: str = "",
    ) -> PostItem:
        """Build an item from stored data, cutting over-long fields to the bounds instead of
        failing (a long article is still worth judging by its beginning)."""
        return cls(
            id=str(id)[:MAX_ID],
            title=(title or "")[:MAX_TITLE_IN],
            text=(text or "")[:MAX_TEXT_IN],
            url=(url or "")[:MAX_URL],
            author=(author or "")[:MAX_AUTHOR],
            language=(language or "")[:MAX_LANGUAGE],
        )


class FeedContext(_Strict):
    """What the feed wants: its description, output language and tag taxonomy.

    An empty taxonomy means the configured default (`AGENT_TAXONOMY`).
    """

    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    language: str = Field(default="", max_length=MAX_LANGUAGE)
    taxonomy: list[Tag] = Field(default_factory=list, max_length=MAX_TAXONOMY)


class AgentRequest(_Strict):
    """The `input` of an `agents.{type}` request: a batch of posts for one feed."""

    agent: AgentType
    items: list[PostItem] = Field(min_length=1, max_length=MAX_ITEMS)
    context: FeedContext
    feed_id: int | None = Field(default=None, ge=1)

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: list[PostItem]) -> list[PostItem]:
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids must be unique within a request")
        return items


# --- Outputs ------------------------------------------------------------------------------


class RelevanceOutput(_Strict):
    relevant: bool
    score: float = Field(ge=0.0, le=1.0)
    reason: str = Field(max_length=MAX_REASON)
    matched_aspects: list[Aspect] = Field(default_factory=list, max_length=MAX_ASPECTS)


class SummarizeOutput(_Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE_OUT)
    summary: str = Field(max_length=MAX_SUMMARY)
    language: str = Field(
        default="", max_length=MAX_LANGUAGE, description="Of the title and summary ('': unknown)."
    )
    translated: bool = False
    source_language: str = Field(
        default="", max_length=MAX_LANGUAGE, description="Of the post ('': unknown)."
    )
    note: str = Field(
        default="",
        max_length=MAX_REASON,
        description="Why the summary is not in the feed's language, when it is not.",
    )

    @field_validator("summary")
    @classmethod
    def _at_most_three_sentences(cls, summary: str) -> str:
        # The same splitter the producers cut with, so a cut summary always validates.
        if len(split_sentences(summary)) > MAX_SUMMARY_SENTENCES:
            raise ValueError(f"a summary has at most {MAX_SUMMARY_SENTENCES} sentences")
        return summary


class TagOutput(_Strict):
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS_OUT)


AgentOutput = RelevanceOutput | SummarizeOutput | TagOutput
OUTPUT_MODELS: dict[AgentType, type[BaseModel]] = {
    AgentType.RELEVANCE: RelevanceOutput,
    AgentType.SUMMARIZE: SummarizeOutput,
    AgentType.TAG: TagOutput,
}


class ErrorCode(StrEnum):
    INVALID_OUTPUT = "invalid_output"  # the model answered twice with something unusable
    MODEL_ERROR = "model_error"  # provider error that retries and the fallback did not fix
    RATE_LIMITED = "rate_limited"  # waited too long for the shared rate limiter
    BUSY = "busy"  # another worker holds the claim on this exact call; try again later
    INVALID_INPUT = "invalid_input"


class AgentError(_Strict):
    code: ErrorCode
    message: str = Field(max_length=MAX_ERROR)


class Usage(_Strict):
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost: Decimal = Field(default=Decimal("0"), ge=0, decimal_places=8)


class Degraded(StrEnum):
    NONE = ""
    BUDGET = "budget"  # the feed's daily token budget is spent: offline default used


class AgentResult(_Strict):
    """One item's outcome. Exactly one of `output` / `error` is set."""

    item_id: ItemId
    agent: AgentType
    output: AgentOutput | None = None
    error: AgentError | None = None
    model: str = Field(max_length=200, description="'offline' for the built-in default.")
    prompt_version: str = Field(max_length=64)
    cached: bool = False
    degraded: Degraded = Degraded.NONE
    usage: Usage = Field(default_factory=Usage)
    latency_ms: int = Field(default=0, ge=0)

    @property
    def ok(self) -> bool:
        return self.error is None

    @model_validator(mode="after")
    def _output_xor_error(self) -> AgentResult:
        if (self.output is None) == (self.error is None):
            raise ValueError("an AgentResult has exactly one of output and error")
        return self


class AgentReply(_Strict):
    """The `output` of an `agents.{type}` reply: one result per requested item, in order."""

    results: list[AgentResult] = Field(max_length=MAX_ITEMS)


# --- What the LLM fills in (one answer per prompt-local post id) ---------------------------


class RelevanceAnswer(_Strict):
    """Relevance verdict for one post."""

    id: str = Field(description="The post id exactly as given.")
    relevant: bool = Field(description="True only if the post clearly matches the description.")
    score: float = Field(ge=0.0, le=1.0, description="Confidence that it matches, 0 to 1.")
    reason: str = Field(description="Why, in at most 25 words.")
    matched_aspects: list[str] = Field(
        max_length=MAX_ASPECTS, description="Short phrases of the description the post matches."
    )

    @field_validator("reason", mode="before")
    @classmethod
    def _cut_reason(cls, value: Any) -> Any:
        # Models overshoot length limits routinely; an explanation cut at a word boundary is
        # still a whole answer, unlike a cut score or summary, so this one field is trimmed.
        if isinstance(value, str) and len(value) > MAX_REASON:
            return value[: MAX_REASON - 1].rsplit(" ", 1)[0] + "…"
        return value


class RelevanceBatch(_Strict):
    """Relevance verdicts, one per post id."""

    answers: list[RelevanceAnswer]


class SummarizeAnswer(_Strict):
    """Title and summary for one post."""

    id: str = Field(description="The post id exactly as given.")
    title: str = Field(description="A plain, factual headline of at most 150 characters.")
    summary: str = Field(description="At most 3 sentences.")
    language: str = Field(
        max_length=40,  # a name ("Norwegian Bokmål") is accepted and normalized too
        description="ISO 639-1 code of the language the title and summary are written in.",
    )
    translated: bool = Field(description="True if you translated from the post's language.")


class SummarizeBatch(_Strict):
    """Summaries, one per post id."""

    answers: list[SummarizeAnswer]


class TagAnswer(_Strict):
    """Tags for one post (the allowed values are listed in the instructions)."""

    id: str = Field(description="The post id exactly as given.")
    tags: list[str] = Field(max_length=MAX_TAGS_OUT, description="0 to 3 tags.")


class TagBatch(_Strict):
    """Tags, one answer per post id."""

    answers: list[TagAnswer]


BATCH_MODELS: dict[AgentType, type[BaseModel]] = {
    AgentType.RELEVANCE: RelevanceBatch,
    AgentType.SUMMARIZE: SummarizeBatch,
    AgentType.TAG: TagBatch,
}
ANSWER_MODELS: dict[AgentType, type[BaseModel]] = {
    AgentType.RELEVANCE: RelevanceAnswer,
    AgentType.SUMMARIZE: SummarizeAnswer,
    AgentType.TAG: TagAnswer,
}
