"""A fake chat model for the LLM path: structured output, scripted or computed replies.

LangChain's stock fakes raise NotImplementedError from `with_structured_output`, because they
do not implement `bind_tools`. This subclass does (recording what was bound), and answers either
from a script (replies or exceptions, in order) or from a function of the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from agents.prompts import DATA_CLOSE, DATA_OPEN

Reply = AIMessage | BaseException
Responder = Callable[[list[BaseMessage]], Reply]


class ToolCallingFakeChatModel(GenericFakeChatModel):
    messages: Iterator[Any] = Field(default_factory=lambda: iter(()))
    responder: Responder | None = None
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[list[Any]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        self.bound_tools.append(list(tools))
        return self.bind(**kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        reply = self.responder(messages) if self.responder else next(self.messages)
        if isinstance(reply, BaseException):
            raise reply
        return ChatResult(generations=[ChatGeneration(message=reply)])


def tool_reply(
    schema_name: str, answers: list[dict[str, Any]], *, tokens: tuple[int, int] = (100, 20)
) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[
            {"name": schema_name, "args": {"answers": answers}, "id": "call_1", "type": "tool_call"}
        ],
        usage_metadata={
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            "total_tokens": sum(tokens),
        },
    )


_POST = re.compile(r'<post id="(\d+)">\n(.*?)\n</post>', re.S)


def data_block(messages: list[BaseMessage]) -> tuple[str, str]:
    """(inside, outside) of the data block, as a naive model would split the prompt: from the
    first DATA_OPEN to the first DATA_CLOSE after it. Text that closes the block early ends up
    outside."""
    system = "\n".join(str(m.content) for m in messages if m.type == "system")
    user = "\n".join(str(m.content) for m in messages if m.type != "system")
    start = user.find(DATA_OPEN)
    end = user.find(DATA_CLOSE, start + len(DATA_OPEN))
    if start < 0 or end < 0:
        return "", system + "\n" + user
    inside = user[start + len(DATA_OPEN) : end]
    outside = system + "\n" + user[:start] + user[end + len(DATA_CLOSE) :]
    return inside, outside


def posts_in(messages: list[BaseMessage]) -> dict[str, str]:
    """Local post id -> its block text, wherever the post blocks are in the user message."""
    user = "\n".join(str(m.content) for m in messages if m.type != "system")
    return {m.group(1): m.group(2) for m in _POST.finditer(user)}


def relevance_responder(
    decide: Callable[[str], bool],
    *,
    drop_from_batches: Callable[[str], bool] | None = None,
    tokens: tuple[int, int] = (100, 20),
) -> Responder:
    """Answers every post in the prompt with decide(post text); in calls with several posts it
    leaves out those for which drop_from_batches(post text) is true."""

    def respond(messages: list[BaseMessage]) -> Reply:
        answers = []
        posts = posts_in(messages)
        for local_id, text in posts.items():
            if drop_from_batches and len(posts) > 1 and drop_from_batches(text):
                continue
            relevant = decide(text)
            answers.append(
                {
                    "id": local_id,
                    "relevant": relevant,
                    "score": 0.9 if relevant else 0.1,
                    "reason": "fake verdict",
                    "matched_aspects": ["fake"] if relevant else [],
                }
            )
        return tool_reply("RelevanceBatch", answers, tokens=tokens)

    return respond
