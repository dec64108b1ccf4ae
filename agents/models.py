"""Agent runs (what was decided and why), the result cache and per-feed token usage."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone

from agents.schemas import AgentType, Degraded


class AgentRun(models.Model):
    """One agent's outcome for one item: a model call's share, a cache hit or an offline run.

    Append-only; written by `agents.services` only. `output` is the validated output schema as
    JSON, or null with `error` set; never a partial answer.
    """

    agent = models.CharField(max_length=16, choices=[(t.value, t.value) for t in AgentType])
    model = models.CharField(max_length=200, help_text="'offline' for the built-in default.")
    prompt_version = models.CharField(max_length=64)
    item_key = models.CharField(max_length=128, help_text="The caller's id for the item.")
    input_hash = models.CharField(max_length=64, help_text="sha256 of the post content sent.")
    description_hash = models.CharField(
        max_length=64, help_text="sha256 of the feed context the agent reads."
    )
    feed = models.ForeignKey(
        "processing.Feed",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="agent_runs",
    )
    raw_post = models.ForeignKey(
        "feeds.RawPost",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="agent_runs",
    )
    output = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    cached = models.BooleanField(default=False)
    degraded = models.CharField(
        max_length=16,
        blank=True,
        choices=[(d.value, d.name.lower() if d.value else "no") for d in Degraded],
        help_text="Why the offline default ran instead of the configured model.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # Admin and replays: the history of one cache key
            # WHERE agent=? AND model=? AND prompt_version=? AND input_hash=? AND description_hash=?
            models.Index(
                fields=["agent", "model", "prompt_version", "input_hash", "description_hash"],
                name="agentrun_key_idx",
            ),
            # A feed's recent decisions ("why was this hidden"): WHERE feed_id=? ORDER BY id DESC
            models.Index(fields=["feed", "-id"], name="agentrun_feed_recent_idx"),
            # Admin default order and pruning of old runs: ORDER BY / WHERE created_at < ?
            models.Index(fields=["created_at"], name="agentrun_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.agent} {self.item_key} ({self.model})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class CacheState(models.TextChoices):
    PENDING = "pending", "Claimed, call in progress"
    DONE = "done", "Answer stored"


class AgentCacheEntry(models.Model):
    """The answer for one cache key, paid for once.

    A caller claims a key by inserting its row (INSERT … ON CONFLICT DO NOTHING) in state
    pending with its claim token; only the inserter calls the model. Others wait for the row
    to turn done, or take it over once `claimed_until` has passed (the claimer died). A failed
    call deletes its claim so a later attempt can pay again.
    """

    agent = models.CharField(max_length=16)
    prompt_version = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    input_hash = models.CharField(max_length=64)
    description_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=CacheState.choices)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    answered_by = models.CharField(max_length=200, blank=True, help_text="Model that answered.")
    run = models.ForeignKey(
        AgentRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "agent cache entries"
        constraints = [
            # The cache lookup and the claim: one row per key.
            models.UniqueConstraint(
                fields=["agent", "prompt_version", "model", "input_hash", "description_hash"],
                name="agentcache_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent} {self.input_hash[:12]} ({self.model}, {self.state})"


class TokenUsage(models.Model):
    """Tokens a feed spent on LLM calls on one UTC day (incremented atomically with F())."""

    feed = models.ForeignKey("processing.Feed", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    tokens = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "token usage"
        constraints = [
            # The budget check and the increment: WHERE feed_id=? AND day=?
            models.UniqueConstraint(fields=["feed", "day"], name="tokenusage_feed_day_uniq"),
        ]

    def __str__(self) -> str:
        return f"feed {self.feed_id} {self.day}: {self.tokens}"
