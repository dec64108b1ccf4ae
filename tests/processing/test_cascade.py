"""The processing cascade: stories, candidates, the gate, agents, and re-evaluation."""

from __future__ import annotations

import itertools

import pytest

from agents.models import AgentRun
from feeds.models import RawPost, Source
from processing import decisions, services
from processing.models import Candidate, Feed, Post, Story
from tests.agents.conftest import use_models  # noqa: F401 (fixture)
from tests.agents.fakes import ToolCallingFakeChatModel, relevance_responder

pytestmark = pytest.mark.django_db

_n = itertools.count(1)

FLOOD = (
    "Twelve coastal cities agreed on Monday to pool tide gauges and climate models into one "
    "public flood warning network, officials said, with the first alerts expected next spring "
    "after a pilot in three harbours."
)
FLOOD_EDITED = FLOOD.replace("into one public", "into a single public") + " (Reporting by desk)"
AI_ACT = (
    "The European Parliament adopted the AI Act on Tuesday. The regulation sets obligations for "
    "providers of general-purpose artificial intelligence models, including transparency about "
    "training data, and bans some uses of biometric surveillance."
)
FOOTBALL = (
    "The home side won three-nil in the derby on Saturday, with two late goals from the "
    "substitute striker sealing the points in front of a sold-out stadium."
)


def _raw(source: Source, title: str, text: str) -> RawPost:
    n = next(_n)
    return RawPost.objects.create(
        source=source, external_id=f"c{n}", title=title, text=text, content_hash=f"{n:064d}"
    )


def test_it_groups_copies_from_two_sources_into_one_story_and_one_post(owner):
    wire, paper = (Source.objects.create(url=f"http://feeds.invalid/{n}.xml") for n in "ab")
    feed = Feed.objects.create(owner=owner, name="All", summaries=False, tags=False)
    feed.sources.add(wire, paper)
    first, copy = (
        _raw(wire, "Cities build flood alerts", FLOOD),
        _raw(paper, "Flood network", FLOOD_EDITED),
    )
    other = _raw(paper, "Derby", FOOTBALL)

    services.process_raw_posts(raw_post_ids=[first.id, copy.id, other.id])

    story = Story.objects.get(members__raw_post=first)
    assert story.members.filter(raw_post=copy).exists()
    assert (story.source_count, story.raw_post_count, story.first_source_id) == (2, 2, wire.id)
    assert Story.objects.count() == 2
    assert Post.objects.filter(feed=feed).count() == 2  # the copy adds no second post
    assert Post.objects.get(feed=feed, raw_post=first).story == story


def test_it_keeps_relevant_candidates_with_summaries_and_tags_and_explains_the_rest(owner):
    source = Source.objects.create(url="http://feeds.invalid/eu.xml")
    feed = Feed.objects.create(
        owner=owner, name="EU AI", description="EU AI regulation, the AI Act"
    )
    feed.sources.add(source)
    ai, ball = _raw(source, "Parliament adopts the AI Act", AI_ACT), _raw(source, "Derby", FOOTBALL)

    staged = services.stage_raw_posts(raw_post_ids=[ai.id, ball.id])
    assert staged.post_ids == [] and len(staged.candidate_ids) == 2

    saved = decisions.decide_candidates(candidate_ids=staged.candidate_ids)

    post = Post.objects.get(id__in=saved)
    assert post.raw_post == ai and len(saved) == 1
    assert post.summary and post.relevance is not None and post.relevance_reason
    assert isinstance(post.tags, list)
    rejected = AgentRun.objects.get(feed=feed, raw_post=ball, agent="relevance")
    assert rejected.output["relevant"] is False and rejected.output["reason"]
    assert not Candidate.objects.exists()
    # Redelivered: nothing more is saved.
    assert decisions.decide_candidates(candidate_ids=staged.candidate_ids) == []
    assert Post.objects.filter(feed=feed).count() == 1


def test_it_leaves_undecided_candidates_for_the_sweeper(owner, settings):
    settings.PROCESS_RETRY_AFTER_SECONDS = 0
    source = Source.objects.create(url="http://feeds.invalid/s.xml")
    feed = Feed.objects.create(owner=owner, name="Summaries")
    feed.sources.add(source)
    raw = _raw(source, "Parliament adopts the AI Act", AI_ACT)

    staged = services.stage_raw_posts(raw_post_ids=[raw.id])  # the agents task is then lost

    assert services.stale_candidate_ids(older_than_seconds=0) == staged.candidate_ids
    decisions.decide_candidates(candidate_ids=services.stale_candidate_ids(older_than_seconds=0))
    assert Post.objects.filter(feed=feed, raw_post=raw).exists()


def test_it_gates_implausible_posts_before_the_model_and_calls_it_once_per_story(
    owner,
    use_models,  # noqa: F811
):
    model = ToolCallingFakeChatModel(responder=relevance_responder(lambda text: True))
    use_models(model)
    wire, paper = (Source.objects.create(url=f"http://feeds.invalid/g{n}.xml") for n in "ab")
    feed = Feed.objects.create(
        owner=owner, name="EU AI", description="EU AI regulation, the AI Act",
        summaries=False, tags=False,
    )  # fmt: skip
    feed.sources.add(wire, paper)
    raws = [
        _raw(wire, "Parliament adopts the AI Act", AI_ACT),
        _raw(paper, "Parliament adopts the AI Act", AI_ACT + " More later."),
        _raw(wire, "Derby", FOOTBALL),
    ]

    staged = services.stage_raw_posts(raw_post_ids=[r.id for r in raws])
    decisions.decide_candidates(candidate_ids=staged.candidate_ids)

    assert len(staged.candidate_ids) == 2  # the AI Act copy is in the first post's story
    assert len(model.calls) == 1  # the football post never reached the model
    prompt = "\n".join(str(m.content) for m in model.calls[0])
    assert "Derby" not in prompt
    gate = AgentRun.objects.get(raw_post=raws[2], model=decisions.GATE_MODEL)
    assert gate.output["relevant"] is False
    assert list(Post.objects.filter(feed=feed).values_list("raw_post_id", flat=True)) == [
        raws[0].id
    ]


def test_it_hides_recent_posts_an_edited_description_no_longer_wants(owner):
    source = Source.objects.create(url="http://feeds.invalid/r.xml")
    feed = Feed.objects.create(
        owner=owner, name="Mixed", description="EU AI regulation, the AI Act", tags=False
    )
    feed.sources.add(source)
    ai = _raw(source, "Parliament adopts the AI Act", AI_ACT)
    decisions.decide_candidates(
        candidate_ids=services.stage_raw_posts(raw_post_ids=[ai.id]).candidate_ids
    )
    assert Post.objects.filter(feed=feed, hidden=False).count() == 1

    feed.description = "football derby results"
    feed.save()
    candidates = decisions.reevaluate_feed(feed_id=feed.id)

    post = Post.objects.get(feed=feed)
    assert post.hidden and post.hidden_reason
    assert candidates == []  # every recent raw post of the source already has its post
