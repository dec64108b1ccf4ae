"""factory-boy factories for the API tests."""

from __future__ import annotations

from datetime import UTC, datetime

import factory
from django.contrib.auth import get_user_model

from feeds.models import RawPost, Source
from processing.models import Feed, Post


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass-123-word")


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    url = factory.Sequence(lambda n: f"https://feeds.example.org/{n}.xml")
    title = factory.Sequence(lambda n: f"Source {n}")


class RawPostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RawPost

    source = factory.SubFactory(SourceFactory)
    external_id = factory.Sequence(lambda n: f"item-{n}")
    url = factory.Sequence(lambda n: f"https://news.example.org/items/{n}")
    title = factory.Sequence(lambda n: f"Item {n}")
    published_at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    content_hash = factory.Sequence(lambda n: f"{n:064d}")


class FeedFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feed
        skip_postgeneration_save = True

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Feed {n}")

    @factory.post_generation
    def sources(self, create: bool, extracted: list[Source] | None, **kwargs: object) -> None:
        if create and extracted:
            # The through model directly: no backfill signal in tests that do not test it.
            through = Feed.sources.through
            through.objects.bulk_create([through(feed=self, source=s) for s in extracted])


class PostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Post

    feed = factory.SubFactory(FeedFactory)
    raw_post = factory.SubFactory(RawPostFactory)
    title = factory.LazyAttribute(lambda post: post.raw_post.title)
    url = factory.LazyAttribute(lambda post: post.raw_post.url)
    published_at = factory.LazyAttribute(lambda post: post.raw_post.published_at)
