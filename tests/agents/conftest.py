from __future__ import annotations

import pytest

from agents import llm
from agents.schemas import FeedContext, PostItem


@pytest.fixture
def use_models(monkeypatch, settings):
    """Install fake chat models as the configured LLM (primary, optional fallback)."""
    settings.AGENT_RETRY_BACKOFF_SECONDS = 0
    settings.LLM_RATE_LIMIT_PER_MINUTE = 0
    settings.LLM_MAX_RETRIES = 2
    settings.AGENT_DAILY_TOKEN_BUDGET = 0

    def install(primary, fallback=None):
        settings.LLM_MODEL = "fake:primary"
        models = llm.ModelSet(
            primary=llm.ModelSpec("fake:primary", primary),
            fallback=llm.ModelSpec("fake:fallback", fallback) if fallback is not None else None,
        )
        monkeypatch.setattr(llm, "configured_models", lambda: models)
        return models

    return install


@pytest.fixture
def no_llm(settings):
    settings.LLM_MODEL = ""
    settings.LLM_FALLBACK_MODEL = ""


def post(id: str, title: str, text: str = "", **fields) -> PostItem:
    return PostItem(id=id, title=title, text=text, **fields)


AI_CONTEXT = FeedContext(description="EU AI regulation and the AI Act, not crypto")
