"""The published contract: committed files match the models, and what reaches NATS matches
the committed JSON Schemas (checked by a plain nats-py client, not our helpers)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import jsonschema
import nats
import pytest
import yaml
from django.core.management import call_command

from feeds import services as feed_services
from feeds.models import Source
from processing import services as processing_services
from processing.models import Feed
from realtime.relay import Relay, RelayConfig
from tests.support.feedserver import rss

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_it_keeps_the_committed_contract_in_step_with_the_models(tmp_path):
    call_command("export_contract", docs=tmp_path, stdout=io.StringIO())

    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert [str(p) for p in generated] == [
        "asyncapi.yaml",
        "events/agents.input.schema.json",
        "events/agents.output.schema.json",
        "events/agents.reply.schema.json",
        "events/agents.request.schema.json",
        "events/posts.created.schema.json",
        "events/raw_posts.created.schema.json",
    ]
    for relative in generated:
        committed = DOCS / relative
        assert committed.is_file(), f"{relative} is missing: run manage.py export_contract"
        assert committed.read_text() == (tmp_path / relative).read_text(), (
            f"docs/{relative} is stale: run manage.py export_contract and commit the result"
        )


def test_it_publishes_an_asyncapi_3_document_naming_every_subject():
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())

    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"raw_posts.created", "posts.created", "agents.{type}"} <= addresses
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((DOCS / "events" / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.django_db(transaction=True)
def test_it_publishes_events_a_plain_subscriber_can_validate_against_the_schemas(
    nats_settings, feed_server, owner
):
    url = feed_server.serve("/a.xml", rss(("g1", "One"), ("g2", "Two")))
    source = Source.objects.create(url=url)
    feed = Feed.objects.create(owner=owner, name="All", summaries=False, tags=False)
    feed.sources.add(source)

    def produce() -> None:
        claim = feed_services.claim_source_now(source_id=source.id)
        ids = feed_services.poll_source(source_id=source.id, token=claim.token)
        processing_services.process_raw_posts(raw_post_ids=ids)

    async def scenario() -> list:
        await asyncio.to_thread(produce)
        await Relay(RelayConfig.from_settings()).step()
        nc = await nats.connect(nats_settings.NATS_URL)
        received = []

        async def collect(msg) -> None:
            received.append((msg.subject, dict(msg.headers or {}), json.loads(msg.data)))

        # Ordered consumers on both streams, from the first message, as any other service.
        js = nc.jetstream()
        await js.subscribe("raw_posts.>", cb=collect, ordered_consumer=True)
        await js.subscribe("posts.>", cb=collect, ordered_consumer=True)
        for _ in range(250):
            if len(received) >= 4:
                break
            await asyncio.sleep(0.02)
        await nc.close()
        return received

    received = asyncio.run(scenario())

    validators = {
        "raw_posts.created": _validator("raw_posts.created.schema.json"),
        "posts.created": _validator("posts.created.schema.json"),
    }
    assert (
        sorted(subject for subject, _, _ in received)
        == ["posts.created"] * 2 + ["raw_posts.created"] * 2
    )
    for subject, headers, body in received:
        validators[subject].validate(body)
        assert body["event_type"] == subject
        assert headers["Nats-Msg-Id"] == body["event_id"]
        assert body["occurred_at"].endswith("+00:00")


def test_it_rejects_an_event_the_schema_does_not_allow():
    validator = _validator("raw_posts.created.schema.json")

    errors = list(validator.iter_errors({"event_id": "not-a-uuid", "event_type": "posts.created"}))

    assert errors  # the committed schema is strict enough to catch a wrong event


@pytest.mark.django_db(transaction=True)
def test_it_answers_agents_relevance_to_a_plain_client_with_a_valid_reply(nats_server):
    from realtime import rpc

    request = {
        "request_id": "contract-1",
        "input": {
            "agent": "relevance",
            "items": [
                {"id": "a", "title": "Parliament adopts the AI Act", "text": "EU rules for AI."},
                {"id": "b", "title": "Derby ends three-nil", "text": "Two late goals."},
            ],
            "context": {"description": "EU AI regulation"},
        },
    }

    async def scenario() -> dict:
        server_side = await nats.connect(nats_server.url)
        responders = rpc.Responders(server_side)  # the registry, as the bridge builds it
        await responders.start()
        client = await nats.connect(nats_server.url)  # plain nats-py, not our helper
        try:
            msg = await client.request("agents.relevance", json.dumps(request).encode(), 10)
            return json.loads(msg.data)
        finally:
            await client.close()
            await responders.stop()
            await server_side.close()

    reply = asyncio.run(scenario())

    _validator("agents.reply.schema.json").validate(reply)
    _validator("agents.output.schema.json").validate(reply["output"])
    assert reply["ok"] is True and reply["request_id"] == "contract-1"
    verdicts = {r["item_id"]: r["output"]["relevant"] for r in reply["output"]["results"]}
    assert verdicts == {"a": True, "b": False}
