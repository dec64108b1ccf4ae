"""Agents over NATS request-reply: `agents.{type}` responders and the client helper.

The responders serve every agent type in the registry, in the queue group `agents`, so any
number of bridges share the requests. They call the very function the Celery task calls (same
cache, same budgets); this module only parses, validates, bounds and replies.

Registering an agent (the agents app does this in `AppConfig.ready()`)::

    from realtime.rpc import register_agent

    register_agent(
        "relevance",
        request_model=RelevanceRequest,  # validates the request's `input`
        reply_model=RelevanceReply,  # validates the handler's output before it is sent
        handler=services.relevance,  # sync; gets a RelevanceRequest; may use the ORM
    )

A handler returns an instance of `reply_model` (or a dict it accepts), or an `AgentResult` to
also report the model name and token usage. An exception becomes `internal_error` (logged);
`AgentFailed` becomes an error reply with its own code and message.

Replies are `AgentReplyEnvelope` (realtime.events): `ok: true` with `output`, or `ok: false`
with `error.code` one of bad_request, payload_too_large, unknown_agent, timeout, busy,
invalid_output, internal_error. A timed-out handler keeps its thread until it returns (Python
threads cannot be killed), so a bridge runs at most NATS_AGENT_CONCURRENCY handlers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import nats.errors
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import close_old_connections
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ValidationError

from realtime import jetstream
from realtime.events import (
    AGENT_QUEUE_GROUP,
    AGENT_TYPE_PATTERN,
    AgentReplyEnvelope,
    AgentReplyError,
    AgentRequestEnvelope,
    agent_subject,
)

logger = logging.getLogger(__name__)


# --- Registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentResult:
    """What a handler may return to report more than the output."""

    output: BaseModel | dict[str, Any]
    model: str | None = None
    usage: dict[str, Any] | None = None


class AgentFailed(Exception):
    """Raised by a handler to send a specific error reply (e.g. `bad_request`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Handler = Callable[[Any], BaseModel | dict[str, Any] | AgentResult]


@dataclass(frozen=True)
class AgentSpec:
    agent_type: str
    request_model: type[BaseModel]
    reply_model: type[BaseModel]
    handler: Handler


_registry: dict[str, AgentSpec] = {}


def register_agent(
    agent_type: str,
    *,
    request_model: type[BaseModel],
    reply_model: type[BaseModel],
    handler: Handler,
) -> None:
    """Make `agents.{agent_type}` answered by `handler` in every bridge started afterwards.

    Registering the same type again replaces it (a reloaded app). Types are lower-case
    identifiers: they are NATS subject tokens.
    """
    if not re.match(AGENT_TYPE_PATTERN, agent_type):
        raise ValueError(f"agent type {agent_type!r} must match {AGENT_TYPE_PATTERN}")
    _registry[agent_type] = AgentSpec(agent_type, request_model, reply_model, handler)


def unregister_agent(agent_type: str) -> None:
    _registry.pop(agent_type, None)


def registered_agents() -> dict[str, AgentSpec]:
    return dict(_registry)


# --- Responders ----------------------------------------------------------------------------


class Responders:
    """Subscribes one queue-group subscription per registered agent type."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        agents: dict[str, AgentSpec] | None = None,
        timeout: float | None = None,
        max_payload: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.nc = nc
        self.agents = registered_agents() if agents is None else agents
        self.timeout = timeout or settings.NATS_AGENT_TIMEOUT_SECONDS
        self.max_payload = max_payload or settings.NATS_AGENT_MAX_PAYLOAD_BYTES
        self.concurrency = concurrency or settings.NATS_AGENT_CONCURRENCY
        # Requests beyond this many waiting or running get `busy` at once: with a queue group
        # another bridge (or a retry) can serve them sooner than this one's backlog would.
        self.backlog = self.concurrency * 8
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="agent")
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for agent_type, spec in sorted(self.agents.items()):
            sub = await self.nc.subscribe(
                agent_subject(agent_type), queue=AGENT_QUEUE_GROUP, cb=self._callback(spec)
            )
            self._subs.append(sub)
        # The server has the subscriptions once it answers a PING: requests from here on reach us.
        await self.nc.flush()
        if self.agents:
            logger.info("agents responders: %s", ", ".join(sorted(self.agents)))
        else:
            logger.info("agents responders: no agent types registered")

    async def stop(self) -> None:
        """Stop taking requests, let those in flight finish (up to their deadline)."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.timeout + 1)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _callback(self, spec: AgentSpec) -> Callable[[Msg], Any]:
        async def on_request(msg: Msg) -> None:
            # nats-py runs one subscription's callbacks one after another: hand each request
            # to a task so a slow agent does not hold up the next request.
            if not msg.reply:
                return
            if len(self._tasks) >= self.backlog:
                await self._reply(msg, None, _error("busy", "too many requests in progress"))
                return
            task = asyncio.create_task(self._serve(spec, msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_request

    async def _serve(self, spec: AgentSpec, msg: Msg) -> None:
        request_id: str | None = None
        try:
            if len(msg.data) > self.max_payload:
                raise AgentFailed(
                    "payload_too_large",
                    f"request is {len(msg.data)} bytes; the limit is {self.max_payload}",
                )
            try:
                envelope = AgentRequestEnvelope.model_validate_json(msg.data)
                request_id = envelope.request_id
                payload = spec.request_model.model_validate(envelope.input)
            except ValidationError as exc:
                raise AgentFailed("bad_request", _describe(exc)) from None
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, _call, spec.handler, payload)
            try:
                result = await asyncio.wait_for(future, timeout=self.timeout)
            except TimeoutError:
                raise AgentFailed(
                    "timeout", f"the agent did not answer within {self.timeout:g} s"
                ) from None
            reply = _reply_from(spec, request_id, result)
        except AgentFailed as exc:
            reply = _error(exc.code, exc.message, request_id)
        except Exception:
            logger.exception("agent %s failed on request %s", spec.agent_type, request_id)
            reply = _error("internal_error", "the agent failed; see the bridge's log", request_id)
        await self._reply(msg, request_id, reply)

    async def _reply(self, msg: Msg, request_id: str | None, reply: AgentReplyEnvelope) -> None:
        data = reply.model_dump_json().encode()
        if len(data) > self.max_payload:
            data = (
                _error(
                    "payload_too_large",
                    f"the reply is {len(data)} bytes; the limit is {self.max_payload}",
                    request_id,
                )
                .model_dump_json()
                .encode()
            )
        try:
            await msg.respond(data)
        except Exception as exc:  # the requester is gone or NATS is down: nothing to do
            logger.warning("could not reply to %s: %s", msg.subject, exc)


def _call(handler: Handler, payload: BaseModel) -> Any:
    close_old_connections()
    try:
        return handler(payload)
    finally:
        close_old_connections()


def _reply_from(spec: AgentSpec, request_id: str | None, result: Any) -> AgentReplyEnvelope:
    model = usage = None
    if isinstance(result, AgentResult):
        model, usage, result = result.model, result.usage, result.output
    try:
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        output = spec.reply_model.model_validate(result).model_dump(mode="json")
    except ValidationError as exc:
        logger.error("agent %s returned an invalid output: %s", spec.agent_type, exc)
        raise AgentFailed("invalid_output", "the agent produced an invalid output") from None
    return AgentReplyEnvelope(
        request_id=request_id, ok=True, output=output, model=model, usage=usage
    )


def _error(code: str, message: str, request_id: str | None = None) -> AgentReplyEnvelope:
    return AgentReplyEnvelope(
        request_id=request_id,
        ok=False,
        error=AgentReplyError.model_validate({"code": code, "message": message[:1000]}),
    )


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# --- Client --------------------------------------------------------------------------------


class AgentCallError(Exception):
    """The call did not produce an output. `code` is the reply's error code, or one of
    `no_responders`, `timeout` (no reply in time), `payload_too_large` (refused before sending),
    `bad_reply` (a reply that is not an AgentReplyEnvelope)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentUnavailable(AgentCallError):
    """No responder for this agent type (no bridge runs, or none registered it). Immediate."""


class AgentTimeout(AgentCallError):
    """A responder exists but no reply came within the timeout."""


async def request_agent(
    nc: NatsClient,
    agent_type: str,
    payload: BaseModel | dict[str, Any],
    *,
    timeout: float | None = None,
    request_id: str | None = None,
    max_payload: int | None = None,
) -> AgentReplyEnvelope:
    """Call `agents.{agent_type}` and return its reply (which may be `ok: false`).

    Raises AgentUnavailable when nobody serves the type (NATS says so at once), AgentTimeout
    when a responder did not reply in `timeout` seconds, AgentCallError("payload_too_large")
    without sending when the request is over the limit. A retry after a timeout should reuse
    `request_id`, so the agent's cache can answer it.
    """
    timeout = timeout or settings.NATS_AGENT_TIMEOUT_SECONDS
    max_payload = max_payload or settings.NATS_AGENT_MAX_PAYLOAD_BYTES
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    envelope = AgentRequestEnvelope(request_id=request_id or uuid.uuid4().hex, input=body)
    data = envelope.model_dump_json().encode()
    if len(data) > min(max_payload, nc.max_payload or max_payload):
        raise AgentCallError(
            "payload_too_large", f"request is {len(data)} bytes; the limit is {max_payload}"
        )
    try:
        msg = await nc.request(agent_subject(agent_type), data, timeout=timeout)
    except nats.errors.NoRespondersError:
        raise AgentUnavailable("no_responders", f"no responder for agents.{agent_type}") from None
    except nats.errors.TimeoutError:
        raise AgentTimeout(
            "timeout", f"agents.{agent_type} did not reply in {timeout:g} s"
        ) from None
    try:
        return AgentReplyEnvelope.model_validate_json(msg.data)
    except ValidationError as exc:
        raise AgentCallError("bad_reply", _describe(exc)) from None


async def call_agent_async(
    agent_type: str,
    payload: BaseModel | dict[str, Any],
    *,
    url: str | None = None,
    **options: Any,
) -> AgentReplyEnvelope:
    """`request_agent` on a connection of its own (opened and closed around the call)."""
    url = url or settings.NATS_URL
    if not url:
        raise AgentUnavailable("no_responders", "NATS_URL is not set")
    try:
        nc = await jetstream.connect(url, name="infatium-agent-client", reconnect=False)
    except Exception as exc:
        raise AgentUnavailable("no_responders", f"cannot reach NATS: {exc}") from None
    try:
        return await request_agent(nc, agent_type, payload, **options)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def call_agent(
    agent_type: str, payload: BaseModel | dict[str, Any], **options: Any
) -> AgentReplyEnvelope:
    """Sync `call_agent_async`, for Celery tasks and other sync code (not in an event loop)."""
    return async_to_sync(call_agent_async)(agent_type, payload, **options)


def output_of(reply: AgentReplyEnvelope, model: type[BaseModel]) -> BaseModel:
    """The reply's output as `model`, or AgentCallError with the reply's error."""
    if not reply.ok or reply.output is None:
        error = reply.error
        raise AgentCallError(error.code if error else "bad_reply", error.message if error else "")
    return model.model_validate(reply.output)
