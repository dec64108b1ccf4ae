"""The agents over NATS request-reply: the responders' handlers (registered with the bridge in
AgentsConfig.ready) and the client Celery tasks use when AGENTS_REMOTE is on. Both sides call
`agents.services.run_agent`, so they share one cache, one budget and one rate limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agents import services
from agents.schemas import AgentReply, AgentRequest, AgentResult, AgentType, FeedContext, PostItem


def _handler(agent: AgentType) -> Callable[[AgentRequest], object]:
    from realtime import rpc

    def handle(request: AgentRequest) -> rpc.AgentResult:
        if request.agent != agent:
            raise rpc.AgentFailed(
                "bad_request", f"agents.{agent.value} got a request for {request.agent.value}"
            )
        try:
            results = services.run_agent(
                agent=agent, items=request.items, context=request.context, feed_id=request.feed_id
            )
        except ValueError as exc:  # unknown feed, duplicate ids: the caller's mistake
            raise rpc.AgentFailed("bad_request", str(exc)) from None
        ordered = [results[item.id] for item in request.items]
        return rpc.AgentResult(
            output=AgentReply(results=ordered),
            model=ordered[0].model if ordered else None,
            usage={
                "input_tokens": sum(r.usage.input_tokens for r in ordered),
                "output_tokens": sum(r.usage.output_tokens for r in ordered),
                "cost": str(sum(r.usage.cost for r in ordered)),
            },
        )

    return handle


def register() -> None:
    """Serve every agent type as `agents.{type}` in each NATS bridge."""
    from realtime import rpc

    for agent in AgentType:
        rpc.register_agent(
            agent.value,
            request_model=AgentRequest,
            reply_model=AgentReply,
            handler=_handler(agent),
        )


def run_agent_remote(
    *,
    agent: AgentType,
    items: Sequence[PostItem],
    context: FeedContext,
    feed_id: int | None = None,
) -> dict[str, AgentResult]:
    """`services.run_agent` through `agents.{type}` on NATS. Raises realtime.rpc.AgentCallError
    (AgentUnavailable for "no responders", AgentTimeout for "no reply in time")."""
    from realtime import rpc

    request = AgentRequest(agent=agent, items=list(items), context=context, feed_id=feed_id)
    reply = rpc.call_agent(agent.value, request)
    output = rpc.output_of(reply, AgentReply)
    assert isinstance(output, AgentReply)
    return {result.item_id: result for result in output.results}
