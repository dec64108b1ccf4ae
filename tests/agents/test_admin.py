"""The agent-run admin: read-only, filterable, and it shows why."""

from __future__ import annotations

import pytest

from agents import services
from agents.models import AgentRun
from agents.schemas import FeedContext, PostItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.org", "pw-123456")
    client.force_login(user)
    return client


def test_it_lists_runs_with_their_verdict_and_reason(admin_client, no_llm):
    services.run_agent(
        agent="relevance",
        items=[PostItem(id="a", title="EU AI Act enforcement starts", text="Regulators act.")],
        context=FeedContext(description="EU AI regulation"),
    )

    response = admin_client.get("/admin/agents/agentrun/", {"agent": "relevance", "cached": "0"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "relevant (0." in page
    assert "Matches" in page  # the reason
    assert "offline" in page


def test_runs_cannot_be_added_or_edited(admin_client, no_llm):
    services.run_agent(
        agent="tag", items=[PostItem(id="a", title="t")], context=FeedContext(taxonomy=["ai"])
    )
    run = AgentRun.objects.get()

    assert admin_client.get("/admin/agents/agentrun/add/").status_code == 403
    response = admin_client.post(f"/admin/agents/agentrun/{run.pk}/change/", {"model": "x"})
    assert response.status_code == 403
    assert AgentRun.objects.get().model == "offline"


def test_it_filters_runs_with_errors(admin_client):
    AgentRun.objects.create(
        agent="relevance", model="m", prompt_version="v", item_key="bad", input_hash="h",
        description_hash="d", error_code="invalid_output", error="the model said nonsense",
    )  # fmt: skip
    AgentRun.objects.create(
        agent="relevance", model="m", prompt_version="v", item_key="good", input_hash="h",
        description_hash="d", output={"relevant": True, "score": 0.9, "reason": "fine"},
    )  # fmt: skip

    page = admin_client.get("/admin/agents/agentrun/", {"has_error": "yes"}).content.decode()

    assert "the model said nonsense" in page and "fine" not in page
