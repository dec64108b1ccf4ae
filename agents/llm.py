"""The LLM path: building chat models from settings and making one structured call.

`configured_models()` builds the primary (and optional fallback) model with LangChain's
`init_chat_model`; building makes no network request. `invoke()` sends one prompt and returns
the raw answers plus usage; it retries retryable errors (timeouts, 429, 5xx, connection) with
exponential backoff and jitter, waits on the shared Redis rate limiter before every attempt, and
moves on to the fallback model when the primary gives up. The provider SDK's own retries are
off (max_retries=0) so attempts do not multiply.

The fallback is tried in our loop rather than with `Runnable.with_fallbacks`: we need to know
which model answered (it is recorded and stored with the cached answer), and each model needs
its own rate-limit bucket and retry budget, which `with_fallbacks` would hide.

Answers are parsed from the raw message ourselves (`include_raw=True`): tool-call arguments, or
JSON content for providers that answer in JSON mode. LangChain's parser would reject the whole
batch when one answer is bad; we keep the good ones and re-run only the rest.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import httpx
from django.conf import settings
from langchain_core.exceptions import ModelError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from agents import ratelimit
from agents.schemas import ErrorCode

logger = logging.getLogger(__name__)

# Between attempts: base x 2^attempt x (1..1.5), capped; far below the Celery time limits.
MAX_BACKOFF_SECONDS = 20.0
_RETRYABLE_STATUS = {408, 409, 425, 429}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model: BaseChatModel


@dataclass(frozen=True)
class ModelSet:
    primary: ModelSpec
    fallback: ModelSpec | None = None

    @property
    def cache_name(self) -> str:
        """The name answers are cached under: the configured primary model's, even when the
        fallback answered (a re-run must not pay again because the primary is back)."""
        return self.primary.name

    def chain(self) -> list[ModelSpec]:
        return [self.primary] + ([self.fallback] if self.fallback else [])


class CallFailed(Exception):
    """No model produced a reply (errors after retries and fallback, or the rate limiter)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class CallResult:
    answers: list[dict[str, Any]] | None  # None: the response was not a usable answer list
    model: str
    usage: Usage
    latency_ms: int
    problem: str = ""


def cost(input_tokens: int, output_tokens: int) -> Decimal:
    price_in = Decimal(str(settings.LLM_PRICE_PER_1K_INPUT))
    price_out = Decimal(str(settings.LLM_PRICE_PER_1K_OUTPUT))
    value = (price_in * input_tokens + price_out * output_tokens) / 1000
    return value.quantize(Decimal("0.00000001"))


def build_model(spec: str) -> BaseChatModel:
    """A chat model for "provider:model" from settings. No network I/O happens here."""
    from langchain.chat_models import init_chat_model

    provider = spec.split(":", 1)[0].lower() if ":" in spec else ""
    kwargs: dict[str, Any] = {"temperature": 0}
    if settings.LLM_BASE_URL:
        kwargs["base_url"] = settings.LLM_BASE_URL
    if provider == "ollama":
        # ChatOllama has no timeout/max_retries fields; its httpx client takes the timeout.
        kwargs["client_kwargs"] = {"timeout": settings.LLM_TIMEOUT_SECONDS}
    else:
        kwargs["timeout"] = settings.LLM_TIMEOUT_SECONDS
        kwargs["max_retries"] = 0
        if settings.LLM_API_KEY:
            kwargs["api_key"] = settings.LLM_API_KEY
    return init_chat_model(spec, **kwargs)


@lru_cache(maxsize=4)
def _models(primary: str, fallback: str, _base_url: str, _timeout: float, _key: str) -> ModelSet:
    # The settings that shape a client are part of the cache key, so a changed setting (tests,
    # a reload) builds new clients instead of reusing stale ones.
    return ModelSet(
        primary=ModelSpec(primary, build_model(primary)),
        fallback=ModelSpec(fallback, build_model(fallback)) if fallback else None,
    )


def configured_models() -> ModelSet | None:
    """The configured models, or None when LLM_MODEL is unset (offline default)."""
    if not settings.LLM_MODEL:
        return None
    return _models(
        settings.LLM_MODEL,
        settings.LLM_FALLBACK_MODEL,
        settings.LLM_BASE_URL,
        settings.LLM_TIMEOUT_SECONDS,
        settings.LLM_API_KEY,
    )


def is_retryable(exc: BaseException) -> bool:
    """Timeouts, rate limits (429), server errors (5xx) and connection failures."""
    if isinstance(exc, ModelError):
        return bool(exc.is_retryable)
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True  # Ollama surfaces raw httpx errors
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in _RETRYABLE_STATUS or status >= 500
    return False


def _usage(raw: Any, messages: Sequence[BaseMessage]) -> Usage:
    meta = getattr(raw, "usage_metadata", None) or {}
    if meta.get("input_tokens") or meta.get("output_tokens"):
        return Usage(int(meta.get("input_tokens") or 0), int(meta.get("output_tokens") or 0))
    # No usage reported (some local servers): estimate at ~4 characters per token so budgets
    # still bind.
    sent = sum(len(str(m.content)) for m in messages)
    received = len(json.dumps(getattr(raw, "tool_calls", None) or str(getattr(raw, "content", ""))))
    return Usage(sent // 4 + 1, received // 4 + 1)


def _answers(raw: Any, schema_name: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The `answers` list from a raw reply (tool call or JSON content), or why there is none."""
    if not isinstance(raw, AIMessage):
        return None, "no message"
    args: Any = None
    calls = raw.tool_calls or []
    named = [c for c in calls if c.get("name") == schema_name]
    if named:
        args = named[0].get("args")
    elif calls:
        return None, f"unexpected tool call {calls[0].get('name')!r}"
    else:
        text = raw.content if isinstance(raw.content, str) else ""
        text = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
        try:
            args = json.loads(text) if text.strip() else None
        except ValueError:
            return None, "reply is neither a tool call nor JSON"
    if not isinstance(args, dict) or not isinstance(args.get("answers"), list):
        return None, "reply has no answers list"
    return [a for a in args["answers"] if isinstance(a, dict)], ""


def _invoke_once(
    spec: ModelSpec, messages: Sequence[BaseMessage], schema: type[BaseModel]
) -> CallResult:
    # The output schema is the only "tool" the model ever sees; nothing it can call exists.
    structured = spec.model.with_structured_output(schema, include_raw=True)
    started = time.monotonic()
    reply = structured.invoke(list(messages))
    latency = int((time.monotonic() - started) * 1000)
    raw = reply.get("raw") if isinstance(reply, dict) else None
    answers, problem = _answers(raw, schema.__name__)
    return CallResult(answers, spec.name, _usage(raw, messages), latency, problem)


def _with_retries(
    spec: ModelSpec, messages: Sequence[BaseMessage], schema: type[BaseModel]
) -> CallResult:
    attempts = settings.LLM_MAX_RETRIES + 1
    bucket = ratelimit.bucket_for(spec.name)
    for attempt in range(attempts):
        if bucket is not None:
            try:
                bucket.acquire(timeout=settings.LLM_TIMEOUT_SECONDS)
            except ratelimit.RateLimitTimeout as exc:
                raise CallFailed(ErrorCode.RATE_LIMITED, str(exc)) from exc
        try:
            return _invoke_once(spec, messages, schema)
        except Exception as exc:
            if not is_retryable(exc) or attempt == attempts - 1:
                raise
            pause = min(
                MAX_BACKOFF_SECONDS,
                settings.AGENT_RETRY_BACKOFF_SECONDS * 2**attempt * (1 + random.random() / 2),
            )
            logger.warning(
                "%s: %s (attempt %s of %s), retrying in %.1fs",
                spec.name,
                _describe(exc),
                attempt + 1,
                attempts,
                pause,
            )
            time.sleep(pause)
    raise AssertionError("unreachable")


def invoke(
    models: ModelSet, messages: Sequence[BaseMessage], schema: type[BaseModel]
) -> CallResult:
    """One structured call, primary then fallback. Raises CallFailed when every model failed;
    returns a CallResult with `answers=None` when a model answered with something unusable."""
    last: Exception | None = None
    for spec in models.chain():
        try:
            return _with_retries(spec, messages, schema)
        except CallFailed:
            raise
        except Exception as exc:
            # Any provider failure, retryable or not, is what a fallback is for.
            logger.warning("%s failed: %s", spec.name, _describe(exc))
            last = exc
    raise CallFailed(ErrorCode.MODEL_ERROR, _describe(last) if last else "no model")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
