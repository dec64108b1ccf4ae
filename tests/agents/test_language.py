"""Summaries in the feed's language: translated by a configured model, kept as they are (and
said so) by the offline default; the post's language told apart without a model."""

from __future__ import annotations

import pytest

from agents import language, services
from agents.models import AgentRun
from agents.schemas import ErrorCode, FeedContext, PostItem
from feeds.models import RawPost, Source
from processing import decisions
from processing.models import Candidate, Feed, Post
from tests.agents.fakes import ToolCallingFakeChatModel, data_block, posts_in, tool_reply

FRENCH_TITLE = "Bruxelles adopte les premières règles sur l'IA à haut risque"
FRENCH_TEXT = (
    "La Commission européenne a adopté mercredi les premières lignes directrices sur les "
    "systèmes d'intelligence artificielle à haut risque. Les entreprises auront deux ans pour "
    "se mettre en conformité, et les autorités nationales pourront infliger des amendes."
)
ENGLISH_TITLE = "Brussels adopts its first rules on high-risk AI"
ENGLISH_SUMMARY = (
    "The European Commission adopted its first guidelines on high-risk AI systems on "
    "Wednesday. Companies have two years to comply."
)
FRENCH = PostItem(id="fr1", title=FRENCH_TITLE, text=FRENCH_TEXT)
ENGLISH_FEED = FeedContext(description="EU AI regulation", language="en")


def _summary(local_id: str, **fields) -> dict:
    return {"id": local_id, "title": ENGLISH_TITLE, "summary": ENGLISH_SUMMARY, **fields}


def _translator(messages):
    """A model that writes in whatever language the instructions name, and says it translated
    when the post was French."""
    answers = []
    for local_id, block in posts_in(messages).items():
        french = "Commission européenne" in block
        answers.append(_summary(local_id, language="en", translated=french))
    return tool_reply("SummarizeBatch", answers)


# --- Detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,text",
    [
        ("fr", FRENCH_TEXT),
        ("en", ENGLISH_SUMMARY),
        ("de", "Die Europäische Kommission hat am Mittwoch neue Leitlinien für KI angenommen."),
        ("es", "La Comisión Europea adoptó el miércoles las primeras directrices sobre la IA."),
        ("it", "La Commissione europea ha adottato mercoledì le prime linee guida sull'IA."),
        ("ru", "Европейская комиссия в среду приняла первые руководящие принципы для систем ИИ."),
        ("uk", "Європейська комісія в середу ухвалила перші настанови щодо систем ШІ для України."),
        ("ja", "欧州委員会は水曜日、高リスクAIシステムに関する最初のガイドラインを採択した。"),
        ("zh", "欧盟委员会周三通过了关于高风险人工智能系统的首批指南。"),
    ],
)
def test_it_tells_the_language_of_a_text(code, text):
    assert language.detect(text) == code


@pytest.mark.parametrize("text", ["", "🔥🔥 $$$ 2025", "Fed holds rates", "AI Act: GPAI"])
def test_it_does_not_guess_when_the_text_says_too_little(text):
    assert language.detect(text) == ""


def test_a_language_hint_wins_over_the_guess():
    assert language.post_language(title="", text=ENGLISH_SUMMARY, hint="fr-CA") == "fr"
    assert language.post_language(title=FRENCH_TITLE, text=FRENCH_TEXT) == "fr"


# --- With a model: translated ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_french_post_in_an_english_feed_gets_an_english_summary_from_the_model(use_models):
    fake = ToolCallingFakeChatModel(responder=_translator)
    use_models(fake)

    result = services.run_agent(agent="summarize", items=[FRENCH], context=ENGLISH_FEED)["fr1"]

    output = result.output
    assert (output.title, output.summary) == (ENGLISH_TITLE, ENGLISH_SUMMARY)
    assert (output.language, output.translated, output.source_language) == ("en", True, "fr")
    assert output.note == ""
    system = fake.calls[0][0]
    # The instructions ask for English; the post travels only as delimited data.
    assert "Write the title and summary in English" in system.content
    assert "translated into English" in system.content
    inside, outside = data_block(fake.calls[0])
    assert FRENCH_TEXT in inside and FRENCH_TITLE in inside
    assert "Commission européenne" not in outside
    assert "untrusted" in system.content


@pytest.mark.django_db
def test_without_a_feed_language_the_model_is_told_not_to_translate(use_models):
    def keep(messages):
        return tool_reply(
            "SummarizeBatch",
            [_summary("1", language="fr", translated=False, title=FRENCH_TITLE)],
        )

    fake = ToolCallingFakeChatModel(responder=keep)
    use_models(fake)

    result = services.run_agent(
        agent="summarize", items=[FRENCH], context=FeedContext(description="x")
    )["fr1"]

    assert "do not translate" in fake.calls[0][0].content
    assert (result.output.language, result.output.translated) == ("fr", False)


@pytest.mark.django_db
def test_a_summary_in_another_language_than_the_feeds_is_rejected(use_models):
    french_again = tool_reply(
        "SummarizeBatch", [_summary("1", language="French", translated=False)]
    )
    fake = ToolCallingFakeChatModel(messages=iter([french_again, french_again]))
    use_models(fake)

    result = services.run_agent(agent="summarize", items=[FRENCH], context=ENGLISH_FEED)["fr1"]

    # Retried once (the single re-run), then recorded as an error, never saved as English.
    assert len(fake.calls) == 2
    assert result.error.code == ErrorCode.INVALID_OUTPUT
    assert "the feed wants 'en'" in AgentRun.objects.get(agent="summarize").error


@pytest.mark.django_db
def test_a_language_name_in_the_answer_counts_as_its_code(use_models):
    named = tool_reply("SummarizeBatch", [_summary("1", language="English", translated=True)])
    use_models(ToolCallingFakeChatModel(messages=iter([named])))

    result = services.run_agent(agent="summarize", items=[FRENCH], context=ENGLISH_FEED)["fr1"]

    assert result.ok and result.output.language == "en"


# --- Offline: kept as it is, and said so ----------------------------------------------------


@pytest.mark.django_db
def test_offline_a_french_post_stays_french_and_the_decision_says_why(no_llm):
    result = services.run_agent(agent="summarize", items=[FRENCH], context=ENGLISH_FEED)["fr1"]

    output = result.output
    assert result.model == "offline"
    assert output.title == FRENCH_TITLE
    assert output.summary.startswith("La Commission européenne a adopté mercredi")
    assert (output.language, output.translated, output.source_language) == ("fr", False, "fr")
    assert "Not translated" in output.note
    assert "French" in output.note and "English" in output.note
    # The stored decision carries the reason too (the API's decisions endpoint shows it).
    stored = AgentRun.objects.get(agent="summarize").output
    assert stored["note"] == output.note and stored["language"] == "fr"


@pytest.mark.django_db
def test_offline_a_post_already_in_the_feeds_language_has_no_note(no_llm):
    item = PostItem(id="en1", title=ENGLISH_TITLE, text=ENGLISH_SUMMARY)

    output = services.run_agent(agent="summarize", items=[item], context=ENGLISH_FEED)["en1"].output

    assert (output.language, output.translated, output.note) == ("en", False, "")


@pytest.mark.django_db
def test_a_spent_budget_gives_the_untranslated_summary_with_its_reason(use_models, owner):
    feed = Feed.objects.create(owner=owner, name="AI", language="en", token_budget_daily=0)
    fake = ToolCallingFakeChatModel(responder=_translator)
    use_models(fake)

    result = services.run_agent(
        agent="summarize", items=[FRENCH], context=ENGLISH_FEED, feed_id=feed.id
    )["fr1"]

    assert fake.calls == []
    assert result.degraded == "budget" and result.output.language == "fr"
    assert "Not translated" in result.output.note


# --- Through the processing cascade ---------------------------------------------------------


def _french_candidate(owner) -> tuple[Feed, Candidate]:
    source = Source.objects.create(url="http://feeds.invalid/fr.xml")
    feed = Feed.objects.create(owner=owner, name="EU", language="en", tags=False)
    feed.sources.add(source)
    raw = RawPost.objects.create(
        source=source, external_id="fr-1", title=FRENCH_TITLE, text=FRENCH_TEXT, content_hash="f1"
    )
    return feed, Candidate.objects.create(feed=feed, raw_post=raw)


@pytest.mark.django_db
def test_the_feed_shows_the_translated_summary_when_a_model_is_configured(use_models, owner):
    feed, candidate = _french_candidate(owner)
    use_models(ToolCallingFakeChatModel(responder=_translator))

    decisions.decide_candidates(candidate_ids=[candidate.id])

    post = Post.objects.get(feed=feed)
    assert (post.title, post.summary) == (ENGLISH_TITLE, ENGLISH_SUMMARY)


@pytest.mark.django_db
def test_offline_the_feed_shows_the_original_summary_and_the_decision_explains(no_llm, owner):
    feed, candidate = _french_candidate(owner)

    decisions.decide_candidates(candidate_ids=[candidate.id])

    post = Post.objects.get(feed=feed)
    assert post.title == FRENCH_TITLE and "Commission européenne" in post.summary
    run = AgentRun.objects.get(feed=feed, agent="summarize")
    assert run.output["source_language"] == "fr" and "Not translated" in run.output["note"]
