"""Per-feed daily token budgets: a feed's own `token_budget_daily` overrides the global default."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents import services
from agents.models import AgentRun, TokenUsage
from agents.schemas import FeedContext, PostItem
from processing.api.serializers import FeedInputSerializer, FeedSerializer
from processing.models import Feed
from tests.agents.fakes import ToolCallingFakeChatModel, relevance_responder

pytestmark = pytest.mark.django_db

CONTEXT = FeedContext(description="EU AI regulation")


def _items(n: int) -> list[PostItem]:
    return [PostItem(id=f"p{i}", title=f"AI Act story {i}", text=f"Body {i}.") for i in range(n)]


@pytest.fixture
def fake(use_models, settings):
    settings.AGENT_BATCH_SIZE = 2
    model = ToolCallingFakeChatModel(
        responder=relevance_responder(lambda text: "AI Act" in text, tokens=(100, 20))
    )
    use_models(model)
    return model


def _models(results) -> list[str]:
    return [r.model for r in results.values()]


def test_a_feed_with_a_small_budget_degrades_to_offline_and_one_without_does_not(
    fake, settings, owner
):
    settings.AGENT_DAILY_TOKEN_BUDGET = 100_000
    small = Feed.objects.create(owner=owner, name="Small", token_budget_daily=150)
    default = Feed.objects.create(owner=owner, name="Default")

    capped = services.run_agent(
        agent="relevance", items=_items(6), context=CONTEXT, feed_id=small.id
    )
    free = services.run_agent(
        agent="relevance",
        items=[i.model_copy(update={"text": i.text + " (b)"}) for i in _items(6)],
        context=CONTEXT,
        feed_id=default.id,
    )

    # 120 tokens per call: the small feed's second call would pass 150, so it stops after two;
    # the feed on the global default pays for all three batches.
    assert _models(capped) == ["fake:primary"] * 4 + ["offline"] * 2
    assert [r.degraded for r in capped.values()][-2:] == ["budget", "budget"]
    assert _models(free) == ["fake:primary"] * 6
    assert len(fake.calls) == 2 + 3
    usage = dict(TokenUsage.objects.values_list("feed_id", "tokens"))
    assert usage == {small.id: 240, default.id: 360}


def test_a_budget_override_above_the_global_default_lets_the_feed_spend_more(fake, settings, owner):
    settings.AGENT_DAILY_TOKEN_BUDGET = 100
    generous = Feed.objects.create(owner=owner, name="Big", token_budget_daily=10_000)
    plain = Feed.objects.create(owner=owner, name="Plain")
    today = timezone.now().date()
    for feed in (generous, plain):
        TokenUsage.objects.create(feed=feed, day=today, tokens=500)

    more = services.run_agent(
        agent="relevance", items=_items(2), context=CONTEXT, feed_id=generous.id
    )
    none = services.run_agent(
        agent="relevance", items=_items(2), context=FeedContext(description="x"), feed_id=plain.id
    )

    assert _models(more) == ["fake:primary"] * 2 and not any(r.cached for r in more.values())
    assert _models(none) == ["offline"] * 2


def test_a_zero_budget_never_calls_a_model(fake, settings, owner):
    settings.AGENT_DAILY_TOKEN_BUDGET = 0  # unlimited globally
    offline_only = Feed.objects.create(owner=owner, name="Offline", token_budget_daily=0)

    results = services.run_agent(
        agent="relevance", items=_items(3), context=CONTEXT, feed_id=offline_only.id
    )

    assert fake.calls == []
    assert _models(results) == ["offline"] * 3
    assert AgentRun.objects.filter(feed=offline_only, degraded="budget").count() == 3


def test_clearing_the_override_returns_the_feed_to_the_global_default(fake, settings, owner):
    settings.AGENT_DAILY_TOKEN_BUDGET = 0
    feed = Feed.objects.create(owner=owner, name="F", token_budget_daily=0)
    assert _models(
        services.run_agent(agent="relevance", items=_items(1), context=CONTEXT, feed_id=feed.id)
    ) == ["offline"]

    Feed.objects.filter(pk=feed.pk).update(token_budget_daily=None)
    again = services.run_agent(
        agent="relevance",
        items=_items(1),
        context=FeedContext(description="other"),
        feed_id=feed.id,
    )

    assert _models(again) == ["fake:primary"]


# --- API and admin ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 5_000, None])
def test_the_owner_may_set_a_budget_within_the_bound(value, settings):
    settings.AGENT_FEED_TOKEN_BUDGET_MAX = 5_000
    serializer = FeedInputSerializer(data={"name": "F", "token_budget_daily": value})

    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["token_budget_daily"] == value


@pytest.mark.parametrize("value", [-1, 5_001, "lots", 1.5])
def test_the_api_refuses_a_budget_out_of_bounds(value, settings):
    settings.AGENT_FEED_TOKEN_BUDGET_MAX = 5_000
    serializer = FeedInputSerializer(data={"name": "F", "token_budget_daily": value})

    assert not serializer.is_valid()
    assert set(serializer.errors) == {"token_budget_daily"}


def test_the_feed_shows_its_budget(owner):
    feed = Feed.objects.create(owner=owner, name="F", token_budget_daily=1234)

    assert FeedSerializer(feed).data["token_budget_daily"] == 1234
    assert "token_budget_daily" in FeedSerializer.Meta.read_only_fields


def test_staff_set_the_budget_in_the_admin(client, django_user_model, owner):
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "pw-123456")
    client.force_login(admin)
    feed = Feed.objects.create(owner=owner, name="F")

    page = client.get(f"/admin/processing/feed/{feed.pk}/change/").content.decode()
    response = client.post(
        f"/admin/processing/feed/{feed.pk}/change/",
        {
            "name": "F",
            "owner": owner.pk,
            "active": "on",
            "summaries": "on",
            "tags": "on",
            "token_budget_daily": "2500",
        },
    )

    assert 'name="token_budget_daily"' in page
    assert response.status_code == 302, response.content.decode()[:2000]
    feed.refresh_from_db()
    assert feed.token_budget_daily == 2500
