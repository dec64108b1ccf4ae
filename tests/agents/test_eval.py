"""manage.py eval_agents on the mini fixture."""

from __future__ import annotations

import hashlib
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents.management.commands.eval_agents import Metrics
from agents.offline import relevance as offline_relevance

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "agents" / "mini.jsonl"
LABELLED = MINI.with_name("labelled.jsonl")

pytestmark = pytest.mark.django_db


def test_it_prints_precision_recall_and_f1_of_the_relevance_agent(no_llm):
    out = StringIO()

    call_command("eval_agents", str(MINI), "--sweep", stdout=out)

    text = out.getvalue()
    assert "20 posts, 4 descriptions, model offline" in text
    metrics = dict(re.findall(r"(precision|recall|F1|accuracy) ([0-9.]+)", text))
    assert set(metrics) == {"precision", "recall", "F1", "accuracy"}
    assert float(metrics["F1"]) >= 0.8  # the offline default does real work
    counts = dict(re.findall(r"\b(TP|FP|FN|TN) (\d+)", text))
    assert sum(int(v) for v in counts.values()) == 20
    assert "tokens per 100 posts: 0" in text and "cost per 100 posts: 0.0000" in text
    assert text.count("\n") > 20  # the sweep table


def test_a_second_evaluation_with_an_llm_is_served_from_the_cache(use_models):
    from tests.agents.fakes import ToolCallingFakeChatModel, relevance_responder

    fake = ToolCallingFakeChatModel(responder=relevance_responder(lambda text: "tennis" in text))
    use_models(fake)
    call_command("eval_agents", str(MINI), stdout=StringIO())
    calls = len(fake.calls)
    out = StringIO()

    call_command("eval_agents", str(MINI), stdout=out)

    assert calls == 4  # one batch per description
    assert len(fake.calls) == calls
    assert "cached 20" in out.getvalue()
    assert "tokens per 100 posts: 0 " in out.getvalue()


def test_it_names_the_bad_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"description": "x", "post": {"id": 1, "title": "t"}, "relevant": true}\n{"nope": 1}\n'
    )

    with pytest.raises(CommandError, match=r"bad.jsonl:2"):
        call_command("eval_agents", str(bad), stdout=StringIO())


def test_the_offline_scorer_holds_its_f1_on_the_labelled_set(no_llm):
    out = StringIO()

    call_command("eval_agents", str(LABELLED), stdout=out)

    # A regression guard: 0.633 before offline-relevance-3, 0.709 with it.
    f1 = float(re.search(r"F1 ([0-9.]+)", out.getvalue()).group(1))
    assert f1 >= 0.70, out.getvalue()


# --- Held-out descriptions ------------------------------------------------------------------
#
# The offline scorer's free numbers (MIDPOINT, EVIDENCE_TERMS) were chosen on five of the
# labelled set's seven descriptions. The other two were held out: the two feeds whose key has
# the smallest sha256 (a rule fixed before tuning, not a choice of easy or hard feeds). F1 on
# them must not fall below what the scorer before that tuning (offline-relevance-2) scored.
HELD_OUT = ("oss_security", "ev_battery_supply")
HELD_OUT_F1_BEFORE = 0.500  # offline-relevance-2: TP 13, FP 5, FN 21 on the two feeds


def _metrics(rows: list[dict]) -> Metrics:
    metrics = Metrics()
    for row in rows:
        post = row["post"]
        output = offline_relevance.score(
            title=post["title"], text=post["text"], description=row["description"]
        )
        metrics.add(output.relevant, row["relevant"])
    return metrics


def _split() -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    feeds = sorted({row["feed"] for row in rows}, key=lambda f: hashlib.sha256(f.encode()).digest())
    assert tuple(feeds[:2]) == HELD_OUT  # the rule above, checked
    tune = [row for row in rows if row["feed"] not in HELD_OUT]
    held = [row for row in rows if row["feed"] in HELD_OUT]
    return tune, held


def test_the_offline_scorer_generalizes_to_descriptions_it_was_not_tuned_on():
    tune, held = _split()

    tuned, unseen = _metrics(tune), _metrics(held)

    report = f"tuning set F1 {tuned.f1:.3f}, held-out F1 {unseen.f1:.3f}"
    assert unseen.f1 >= HELD_OUT_F1_BEFORE, report
    assert tuned.f1 >= 0.70, report  # 0.730 when tuned (0.670 before)
    # Not tuned into uselessness on the unseen feeds either: it still finds and rejects posts.
    assert unseen.precision >= 0.6 and unseen.recall >= 0.4, report
