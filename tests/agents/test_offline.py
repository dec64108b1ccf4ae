"""The offline default on real text: relevance (phrases, negation, reasons), summaries, tags."""

# ruff: noqa: RUF001 - Russian test text is meant.
from __future__ import annotations

import pytest

from agents import services
from agents.models import AgentRun
from agents.offline import relevance, summarize
from agents.schemas import (
    AgentType,
    FeedContext,
    PostItem,
    RelevanceOutput,
    SummarizeOutput,
    TagOutput,
)
from agents.text import split_sentences

AI_ACT = (
    "EU lawmakers agree on AI Act enforcement rules",
    "The European Parliament and member states agreed on Thursday how the AI Act will be "
    "enforced. National regulators will supervise high-risk systems, and the AI Office in "
    "Brussels will oversee general-purpose models. Fines reach 7% of global turnover.",
)
BITCOIN_ETF = (
    "Bitcoin ETF inflows hit a record",
    "Crypto funds took in $2 billion last week as bitcoin rallied. Analysts said AI trading "
    "bots and new regulation in the EU had little to do with it.",
)
RECIPE = (
    "Ten-minute tomato pasta",
    "Boil the pasta, fry garlic in olive oil, add chopped tomatoes and basil. Serve at once.",
)


def _score(description: str, title: str, text: str) -> RelevanceOutput:
    return relevance.score(title=title, text=text, description=description)


def test_it_finds_posts_that_match_the_description():
    on_topic = _score("EU AI regulation", *AI_ACT)
    off_topic = _score("EU AI regulation", *RECIPE)

    assert on_topic.relevant and on_topic.score > 0.8
    assert not off_topic.relevant and off_topic.score < 0.1


def test_it_scores_more_matching_posts_higher():
    full = _score("EU AI regulation", *AI_ACT)
    partial = _score("EU AI regulation", "New AI model tops benchmark", "A lab released a model.")

    assert 0.0 <= partial.score < full.score <= 1.0


def test_it_excludes_posts_about_negated_topics():
    description = "EU AI regulation, not crypto"

    excluded = _score(description, *BITCOIN_ETF)
    kept = _score(description, *AI_ACT)

    assert not excluded.relevant
    assert excluded.score == 0.0
    assert "crypto" in excluded.reason
    assert kept.relevant


def test_it_does_not_exclude_a_post_that_only_mentions_the_topic_in_passing():
    text = (
        "The European Parliament adopted the AI Act implementing rules today. Regulators "
        "will publish guidance for providers of high-risk systems next month, and national "
        "authorities will start audits in the autumn. One member asked whether crypto "
        "mining data centres using AI would be covered."
    )

    result = _score("EU AI regulation, no crypto", "Parliament adopts AI Act rules", text)

    assert result.relevant


@pytest.mark.parametrize("negation", ["not", "no", "without", "except", "excluding"])
def test_it_understands_each_negation_word(negation):
    result = _score(f"AI regulation {negation} crypto", *BITCOIN_ETF)

    assert not result.relevant
    assert result.score == 0.0


def test_it_matches_quoted_phrases_only_as_phrases():
    description = '"machine learning" research'
    phrase = _score(
        description,
        "New machine learning research on calibration",
        "Researchers studied how machine learning classifiers can be calibrated.",
    )
    scattered = _score(
        description,
        "Learning to repair a washing machine",
        "Research shows most people learn machine repair from videos.",
    )

    assert phrase.relevant
    assert not scattered.relevant
    assert scattered.score < phrase.score


def test_it_treats_listed_topics_as_alternatives():
    description = "Space missions and launches by NASA and ESA"

    result = _score(
        description,
        "ESA probe launches towards Jupiter",
        "The European Space Agency launched its probe from Kourou on Friday.",
    )

    assert result.relevant


def test_a_phrase_matches_its_initials_written_in_capitals():
    description = '"electric vehicles" battery supply chain'

    initials = _score(description, "EV battery cell plant opens", "It will supply carmakers.")
    lower_case = _score(description, "Ev's battery cell plant opens", "It will supply carmakers.")

    assert initials.relevant and "electric vehicles" in initials.reason
    assert not lower_case.relevant  # a name that happens to spell the initials is no match


def test_a_place_after_in_restricts_the_description():
    description = "Solar and wind projects in Africa"

    kenya = _score(description, "Kenya commissions 80 MW wind project", "The farm feeds the grid.")
    chile = _score(description, "Chile commissions 80 MW wind project", "The farm feeds the grid.")

    assert kenya.relevant  # "Africa" reaches its countries through the region expansion
    assert not chile.relevant and chile.score < 0.3


def test_a_few_words_of_a_long_description_are_a_full_match():
    description = (
        "Grassroots football club youth academy player development and coaching qualifications"
    )
    text = "The new scheme starts in May."

    some = _score(description, "Youth academy coaching qualifications overhauled", text)
    every = _score(
        description,
        "Grassroots football club youth academy overhauls player development and coaching "
        "qualifications",
        text,
    )

    assert some.relevant
    assert every.score - some.score < 0.05


@pytest.mark.parametrize("genre", ["Book review", "Satire", "Letters", "Editorial", "Column"])
def test_opinion_covers_the_opinion_pages(genre):
    result = _score(
        "EU AI regulation, no opinion pieces",
        f"{genre}: what the EU's AI Act gets wrong",
        "EU lawmakers wrote the AI Act regulation in a hurry, and it shows.",
    )

    assert not result.relevant and "opinion" in result.reason


def test_it_explains_which_description_terms_matched():
    result = _score("EU AI regulation, chip export controls", *AI_ACT)

    assert result.matched_aspects == ["EU AI regulation"]
    assert "EU AI regulation" in result.reason
    assert "regulation" in result.reason
    assert len(result.reason) <= 300


def test_it_matches_everything_when_the_description_is_empty():
    result = _score("", *RECIPE)

    assert result.relevant and result.score == 1.0


def test_it_stems_russian_text():
    result = _score(
        "выборы в парламент",
        "Итоги парламентских выборов",
        "На выборах в парламент победила правящая партия.",
    )

    assert result.relevant


def test_it_summarizes_in_at_most_three_sentences():
    text = (
        "The European Central Bank cut its deposit rate by a quarter point on Thursday. "
        "It was the third cut this year. Inflation in the euro area fell to 2.1% in May. "
        "President Lagarde said further cuts depend on the data. Markets had expected the move. "
        "Bond yields fell slightly after the announcement. Some economists warned about wages."
    )

    result = summarize.summarize(title="ECB cuts rates again", text=text)

    assert isinstance(result, SummarizeOutput)
    assert result.title == "ECB cuts rates again"
    assert 1 <= len(split_sentences(result.summary)) <= 3
    assert "deposit rate" in result.summary  # the lead survives
    assert not result.translated


def test_it_takes_the_title_from_the_first_sentence_when_there_is_none():
    result = summarize.summarize(
        title="", text="A storm closed the port of Gdansk. Ferries resume on Monday."
    )

    assert result.title == "A storm closed the port of Gdansk."
    assert result.summary == "Ferries resume on Monday."


def test_it_cuts_long_titles_at_a_word_boundary():
    result = summarize.summarize(title="word " * 60, text="Short body text here.")

    assert len(result.title) <= 150
    assert result.title.endswith("…")


def test_it_tags_from_the_taxonomy_only():
    item = PostItem(id="1", title=AI_ACT[0], text=AI_ACT[1])
    context = FeedContext(taxonomy=["ai", "politics", "sports"])

    result = services.offline_output(agent="tag", item=item, context=context)

    assert isinstance(result, TagOutput)
    assert set(result.tags) <= {"ai", "politics", "sports"}
    assert "ai" in result.tags
    assert "sports" not in result.tags


def test_it_tags_with_configured_keywords(settings):
    settings.AGENT_TAXONOMY_KEYWORDS = {"rust": ["rust", "cargo", "crates.io"]}
    item = PostItem(id="1", title="Cargo 1.80 speeds up builds", text="The Rust build tool...")

    result = services.offline_output(
        agent="tag", item=item, context=FeedContext(taxonomy=["rust", "sports"])
    )

    assert result.tags == ["rust"]


def test_it_gives_no_tag_to_a_post_about_nothing_in_the_taxonomy():
    item = PostItem(id="1", title=RECIPE[0], text=RECIPE[1])

    result = services.offline_output(
        agent="tag", item=item, context=FeedContext(taxonomy=["politics", "security"])
    )

    assert result.tags == []


def test_the_gate_stops_posts_that_share_nothing_with_the_description():
    context = FeedContext(description="EU AI regulation, not crypto")

    passes, score = services.relevance_gate(
        item=PostItem(id="1", title=AI_ACT[0], text=AI_ACT[1]), context=context
    )
    stopped, low = services.relevance_gate(
        item=PostItem(id="2", title=RECIPE[0], text=RECIPE[1]), context=context
    )
    excluded, zero = services.relevance_gate(
        item=PostItem(id="3", title=BITCOIN_ETF[0], text=BITCOIN_ETF[1]), context=context
    )

    assert passes and score > 0.5
    assert not stopped and low < score
    assert not excluded and zero == 0.0


@pytest.mark.django_db
def test_it_runs_offline_without_an_llm_and_records_each_run(no_llm):
    items = [
        PostItem(id="a", title=AI_ACT[0], text=AI_ACT[1]),
        PostItem(id="b", title=RECIPE[0], text=RECIPE[1]),
    ]
    context = FeedContext(description="EU AI regulation")

    results = services.run_agent(agent="relevance", items=items, context=context)

    assert list(results) == ["a", "b"]
    assert results["a"].output.relevant and not results["b"].output.relevant
    assert {r.model for r in results.values()} == {"offline"}
    runs = AgentRun.objects.order_by("item_key")
    assert [r.item_key for r in runs] == ["a", "b"]
    assert runs[0].model == "offline" and runs[0].prompt_version == relevance.VERSION
    assert runs[0].output["relevant"] is True and runs[0].input_tokens == 0
    assert len(runs[0].input_hash) == 64 and len(runs[0].description_hash) == 64


@pytest.mark.django_db
def test_it_summarizes_and_tags_through_the_service(no_llm):
    item = PostItem(id="a", title=AI_ACT[0], text=AI_ACT[1])
    context = FeedContext(description="EU AI regulation")

    summary = services.run_agent(agent=AgentType.SUMMARIZE, items=[item], context=context)["a"]
    tags = services.run_agent(agent=AgentType.TAG, items=[item], context=context)["a"]

    assert summary.ok and summary.output.title == AI_ACT[0]
    assert tags.ok and "ai" in tags.output.tags
