"""Evaluate the relevance agent on a labelled JSONL file: precision, recall, F1, tokens, cost.

Each line: {"description": str, "post": {"id", "title", "text", "url", "author"}, "relevant":
bool, ...}; other keys are ignored. Runs whatever model is configured (the offline default
without LLM_MODEL) through `agents.services.run_agent`, so the cache applies: a second run of the
same file costs nothing. `--sweep` prints the metrics at other score thresholds, for calibrating
a prompt version or the offline scorer on a labelled set.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from pydantic import ValidationError

from agents import services
from agents.schemas import AgentType, FeedContext, PostItem, RelevanceOutput

_CHUNK = 100


@dataclass
class Example:
    item: PostItem
    relevant: bool


@dataclass
class Metrics:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, predicted: bool, actual: bool) -> None:
        if predicted and actual:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif actual:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accuracy(self) -> float:
        total = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.tn) / total if total else 0.0


def load(path: Path) -> OrderedDict[str, list[Example]]:
    """Examples grouped by description, in file order."""
    groups: OrderedDict[str, list[Example]] = OrderedDict()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                post = row["post"]
                item = PostItem.from_fields(
                    # Line numbers keep ids unique when a file repeats a post id.
                    id=f"{number}:{post.get('id', '')}",
                    title=post.get("title") or "",
                    text=post.get("text") or "",
                    url=post.get("url") or "",
                    author=post.get("author") or "",
                    language=post.get("language") or "",
                )
                description = str(row["description"])
                relevant = row["relevant"]
                if not isinstance(relevant, bool):
                    raise TypeError("'relevant' must be true or false")
            except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
                raise CommandError(f"{path}:{number}: {exc}") from exc
            groups.setdefault(description, []).append(Example(item, relevant))
    return groups


class Command(BaseCommand):
    help = "Precision, recall and F1 of the relevance agent on a labelled JSONL file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument(
            "--sweep", action="store_true", help="Also print metrics at other score thresholds."
        )
        parser.add_argument(
            "--show-errors", type=int, default=0, help="Print up to N misclassified posts."
        )

    def handle(self, *args: object, **options: object) -> None:
        path = options["path"]
        assert isinstance(path, Path)
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        groups = load(path)
        total = sum(len(g) for g in groups.values())
        if not total:
            raise CommandError(f"{path}: no examples")

        started = time.monotonic()
        scored: list[tuple[float, bool, bool, Example, RelevanceOutput | None]] = []
        metrics = Metrics()
        errors = cached = degraded = input_tokens = output_tokens = 0
        cost = Decimal("0")
        models: set[str] = set()
        versions: set[str] = set()
        for description, examples in groups.items():
            context = FeedContext.model_validate({"description": description[:4000]})
            for start in range(0, len(examples), _CHUNK):
                chunk = examples[start : start + _CHUNK]
                results = services.run_agent(
                    agent=AgentType.RELEVANCE, items=[e.item for e in chunk], context=context
                )
                for example in chunk:
                    result = results[example.item.id]
                    models.add(result.model)
                    versions.add(result.prompt_version)
                    cached += result.cached
                    degraded += bool(result.degraded)
                    input_tokens += result.usage.input_tokens
                    output_tokens += result.usage.output_tokens
                    cost += result.usage.cost
                    output = result.output if isinstance(result.output, RelevanceOutput) else None
                    if output is None:
                        errors += 1
                    predicted = bool(output and output.relevant)
                    metrics.add(predicted, example.relevant)
                    score = output.score if output else 0.0
                    scored.append((score, predicted, example.relevant, example, output))
        elapsed = time.monotonic() - started

        out = self.stdout.write
        out(
            f"eval_agents: {total} posts, {len(groups)} descriptions, "
            f"model {', '.join(sorted(models))} ({', '.join(sorted(versions))})"
        )
        out(
            f"precision {metrics.precision:.3f}  recall {metrics.recall:.3f}  "
            f"F1 {metrics.f1:.3f}  accuracy {metrics.accuracy:.3f}"
        )
        out(
            f"TP {metrics.tp}  FP {metrics.fp}  FN {metrics.fn}  TN {metrics.tn}  "
            f"errors {errors}  cached {cached}  degraded {degraded}"
        )
        per100 = 100 / total
        out(
            f"tokens per 100 posts: {(input_tokens + output_tokens) * per100:.0f} "
            f"(input {input_tokens * per100:.0f}, output {output_tokens * per100:.0f})  "
            f"cost per 100 posts: {cost * Decimal(per100):.4f}"
        )
        out(f"time: {elapsed:.2f} s ({total / max(elapsed, 1e-9):.0f} posts/s)")

        if options["sweep"]:
            out("threshold  precision  recall  F1")
            for step in range(1, 20):
                threshold = step / 20
                swept = Metrics()
                for score, _, truth, _, _ in scored:
                    swept.add(score >= threshold, truth)
                out(
                    f"{threshold:9.2f}  {swept.precision:9.3f}  {swept.recall:6.3f}  {swept.f1:.3f}"
                )
        limit = options["show_errors"]
        assert isinstance(limit, int)
        wrong = [s for s in scored if s[1] != s[2]][:limit]
        for score, predicted, _truth, example, output in wrong:
            kind = "FP" if predicted else "FN"
            reason = output.reason if output else "error"
            out(f"{kind} {score:.2f} {example.item.id} {example.item.title[:70]!r}: {reason}")
