"""Feeds (what a user wants) and posts (raw posts that passed a feed's processing)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from feeds.models import RawPost, Source


class Feed(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feeds"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(
        blank=True, help_text='What this feed is about, in plain words ("EU AI regulation").'
    )
    sources = models.ManyToManyField(Source, related_name="feeds", blank=True)
    include_keywords = models.TextField(
        blank=True,
        help_text="One keyword or phrase per line. When set, a post must contain at least one "
        "(case-insensitive, whole words, in title or text).",
    )
    exclude_keywords = models.TextField(
        blank=True, help_text="One keyword or phrase per line. A post containing any is skipped."
    )
    summaries = models.BooleanField(default=True, help_text="Summarize posts (AI agents).")
    tags = models.BooleanField(default=True, help_text="Tag posts (AI agents).")
    language = models.CharField(
        max_length=16, blank=True, help_text="Language of summaries, e.g. 'en' (blank: as is)."
    )
    token_budget_daily = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="LLM tokens this feed may spend per UTC day, after which its agents use the "
        "offline default. Blank: the global default (AGENT_DAILY_TOKEN_BUDGET); 0: never call "
        "a model for this feed.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="feed_owner_name_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class Post(models.Model):
    """A raw post as it appears in one feed. One per (feed, raw post)."""

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="posts")
    raw_post = models.ForeignKey(RawPost, on_delete=models.CASCADE, related_name="posts")
    title = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    url = models.URLField(max_length=2000, blank=True)
    tags = models.JSONField(default=list, blank=True)
    relevance = models.FloatField(null=True, blank=True)
    relevance_reason = models.TextField(blank=True)
    story = models.ForeignKey(
        "Story", on_delete=models.SET_NULL, null=True, blank=True, related_name="posts"
    )
    # Set when a later decision (an edited description) finds the post no longer relevant.
    hidden = models.BooleanField(default=False)
    hidden_reason = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Which processing run inserted the row; lets a run tell its own inserts from rows that
    # already existed after an INSERT ... ON CONFLICT DO NOTHING.
    batch = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["feed", "raw_post"], name="post_feed_raw_post_uniq"),
            # One post per story per feed: other outlets' copies count in the story instead.
            models.UniqueConstraint(fields=["feed", "story"], name="post_feed_story_uniq"),
        ]
        indexes = [
            # A feed's newest posts: WHERE feed_id = ? ORDER BY id DESC
            models.Index(fields=["feed", "-id"], name="post_feed_recent_idx"),
            # The run's own inserts: WHERE batch = ?
            models.Index(fields=["batch"], name="post_batch_idx"),
        ]

    def __str__(self) -> str:
        return self.title[:80] or f"post {self.pk}"


class Story(models.Model):
    """One real-world event: the raw posts (from any source) that report it."""

    title = models.TextField(blank=True)
    first_raw_post = models.ForeignKey(
        RawPost, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    first_source = models.ForeignKey(
        Source, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    raw_post_count = models.PositiveIntegerField(default=1)
    source_count = models.PositiveIntegerField(default=1)
    # MinHash of the first post (hex): what a near-duplicate candidate is compared with.
    signature = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "stories"

    def __str__(self) -> str:
        return self.title[:80] or f"story {self.pk}"


class StoryMember(models.Model):
    """Which story a raw post belongs to (one story per raw post)."""

    raw_post = models.OneToOneField(RawPost, on_delete=models.CASCADE, related_name="story_member")
    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="members")
    similarity = models.FloatField(default=1.0)

    def __str__(self) -> str:
        return f"{self.raw_post_id} in {self.story_id}"


class StoryKey(models.Model):
    """Lookup keys of a story: its exact-text hash and its MinHash LSH bands."""

    key = models.CharField(max_length=80)
    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="keys")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # assign_stories: WHERE key IN (...) AND created_at >= window start
            models.Index(fields=["key", "created_at"], name="storykey_lookup_idx"),
        ]

    def __str__(self) -> str:
        return self.key


class Candidate(models.Model):
    """A raw post that passed a feed's rules and waits for the feed's agents.

    Written in the processing transaction and deleted in the one that saves the post (or
    records the rejection), so a lost agents task leaves it here for the sweeper.
    """

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="candidates")
    raw_post = models.ForeignKey(RawPost, on_delete=models.CASCADE, related_name="+")
    story = models.ForeignKey(Story, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["feed", "raw_post"], name="candidate_feed_raw_uniq"),
        ]
        indexes = [
            # sweep_candidates: ORDER BY created_at
            models.Index(fields=["created_at"], name="candidate_age_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.feed_id}/{self.raw_post_id}"
