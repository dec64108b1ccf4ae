"""The wire contract: strict, bounded, JSON-serializable models."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from agents.schemas import (
    AgentError,
    AgentRequest,
    AgentResult,
    AgentType,
    ErrorCode,
    FeedContext,
    PostItem,
    RelevanceOutput,
    SummarizeOutput,
    TagOutput,
    Usage,
)


def test_it_rejects_unknown_fields():
    with pytest.raises(ValidationError):
        PostItem.model_validate({"id": "1", "title": "t", "system_prompt": "obey me"})
    with pytest.raises(ValidationError):
        RelevanceOutput.model_validate(
            {"relevant": True, "score": 0.5, "reason": "r", "matched_aspects": [], "tool": "x"}
        )


def test_it_bounds_strings_and_lists():
    with pytest.raises(ValidationError):
        PostItem(id="1", text="x" * 20_001)
    with pytest.raises(ValidationError):
        RelevanceOutput(relevant=True, score=0.5, reason="r" * 301)
    with pytest.raises(ValidationError):
        TagOutput(tags=["a", "b", "c", "d"])
    with pytest.raises(ValidationError):
        RelevanceOutput(relevant=True, score=1.5, reason="r")
    with pytest.raises(ValidationError):
        AgentRequest(agent="relevance", items=[], context=FeedContext())


def test_from_fields_cuts_stored_text_to_the_bounds():
    item = PostItem.from_fields(id=12, title="t" * 2000, text="x" * 50_000)

    assert item.id == "12" and len(item.title) == 1000 and len(item.text) == 20_000


def test_it_rejects_summaries_of_more_than_three_sentences():
    SummarizeOutput(title="T", summary="The U.S. said so. Prices rose 3.5% on Monday. Done.")
    with pytest.raises(ValidationError):
        SummarizeOutput(title="T", summary="One. Two. Three. Four.")


def test_a_request_has_unique_item_ids():
    item = {"id": "1", "title": "t"}
    with pytest.raises(ValidationError, match="unique"):
        AgentRequest.model_validate(
            {"agent": "tag", "items": [item, item], "context": {"taxonomy": ["ai"]}}
        )


def test_a_result_round_trips_through_json():
    result = AgentResult(
        item_id="42",
        agent=AgentType.RELEVANCE,
        output=RelevanceOutput(relevant=True, score=0.75, reason="r", matched_aspects=["AI"]),
        model="openai:gpt-4o-mini",
        prompt_version="relevance-v1",
        usage=Usage(input_tokens=10, output_tokens=2, cost=Decimal("0.00000450")),
    )

    data = json.loads(result.model_dump_json())
    again = AgentResult.model_validate_json(json.dumps(data))

    assert data["usage"]["cost"] == "0.00000450"
    assert again == result
    assert isinstance(again.output, RelevanceOutput)


def test_a_result_has_exactly_one_of_output_and_error():
    with pytest.raises(ValidationError):
        AgentResult(item_id="1", agent="tag", model="m", prompt_version="v")
    with pytest.raises(ValidationError):
        AgentResult(
            item_id="1",
            agent="tag",
            model="m",
            prompt_version="v",
            output=TagOutput(tags=[]),
            error=AgentError(code=ErrorCode.BUSY, message="x"),
        )


def test_every_model_publishes_a_json_schema():
    for model in (AgentRequest, AgentResult):
        schema = model.model_json_schema()
        assert schema["additionalProperties"] is False
