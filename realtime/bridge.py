"""The NATS bridge process: outbox relay, `agents.{type}` responders and optional ingest.

Each part runs as its own task until the stop event is set (SIGTERM/SIGINT in
`manage.py nats_bridge`); a NATS outage pauses them, it does not end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from django.conf import settings
from nats.aio.client import Client as NatsClient

from realtime import jetstream
from realtime.ingest import IngestConsumer
from realtime.relay import Relay, RelayConfig
from realtime.rpc import AgentSpec, Responders

logger = logging.getLogger(__name__)


async def run_bridge(
    stop: asyncio.Event,
    *,
    url: str | None = None,
    relay: bool = True,
    responders: bool = True,
    ingest: bool | None = None,
    relay_config: RelayConfig | None = None,
    agents: dict[str, AgentSpec] | None = None,
) -> None:
    url = url or settings.NATS_URL
    ingest = settings.NATS_INGEST if ingest is None else ingest
    tasks: list[asyncio.Task[None]] = []
    if relay:
        config = relay_config or RelayConfig.from_settings()
        config.url = url
        tasks.append(asyncio.create_task(Relay(config).run(stop), name="relay"))
    nc: NatsClient | None = None
    serving: Responders | None = None
    try:
        if responders or ingest:
            # Responders and the consumer share one connection that reconnects by itself:
            # subscriptions are replayed, and a durable consumer resumes from its ack floor.
            nc = await _connect_until(stop, url)
            if nc is not None and responders:
                serving = Responders(nc, agents=agents)
                await serving.start()
            if nc is not None and ingest:
                tasks.append(asyncio.create_task(IngestConsumer(nc).run(stop), name="ingest"))
        logger.info(
            "nats bridge running on %s (relay: %s, responders: %s, ingest: %s)",
            url,
            "on" if relay else "off",
            "on" if responders else "off",
            "on" if ingest else "off",
        )
        await stop.wait()
    finally:
        stop.set()
        if serving is not None:
            await serving.stop()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        logger.info("nats bridge stopped")


async def _connect_until(stop: asyncio.Event, url: str) -> NatsClient | None:
    """Connect, waiting as long as NATS is away, unless `stop` comes first."""
    connecting = asyncio.create_task(jetstream.connect(url, name="infatium-bridge"))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        return None
    return connecting.result()
