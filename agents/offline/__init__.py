"""The offline default: real, deterministic agents that need no model and no network.

Used when no LLM is configured, when a feed's token budget is spent, and as the cheap relevance
gate in front of the LLM. Same inputs and outputs as the LLM path (`agents.schemas`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agents.offline import relevance, summarize, tags
from agents.offline.document import document
from agents.schemas import AgentOutput, AgentType, FeedContext, PostItem

MODEL_NAME = "offline"
VERSIONS = {
    AgentType.RELEVANCE: relevance.VERSION,
    AgentType.SUMMARIZE: summarize.VERSION,
    AgentType.TAG: tags.VERSION,
}


def run(
    agent: AgentType,
    item: PostItem,
    context: FeedContext,
    *,
    taxonomy: Sequence[str],
    keywords: Mapping[str, Sequence[str]],
) -> AgentOutput:
    """One agent's output for one item. Pure: no database, no settings, no I/O."""
    language = item.language or context.language
    if agent is AgentType.RELEVANCE:
        return relevance.score(
            title=item.title, text=item.text, description=context.description, language=language
        )
    if agent is AgentType.SUMMARIZE:
        return summarize.summarize(
            title=item.title, text=item.text, language=item.language, target=context.language
        )
    doc = document(item.title, item.text, language)
    return tags.tag(doc=doc, taxonomy=taxonomy, keywords=keywords)
