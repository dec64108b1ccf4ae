"""Process-local fan-out of posts.created to the WebSocket connections of this process.

Each web process (one hub per event loop) owns one channel-layer channel, which is in a feed's
group while at least one local connection subscribes to the feed: the group is joined with the
first local subscriber and left with the last. A post reaches the process as one small message
(not one listing every local connection's channel), is encoded once into the frame every
subscriber receives (the same string object for all), and is handed to each connection's
`Subscriber` without awaiting any socket; no per-connection channel-layer receive or consumer
dispatch is involved.

A subscriber is the only writer to its socket: one task per connection drains its queue in
order, so a slow or stuck client waits on its own socket only. The posts a subscriber holds
(queued, or held back while a subscription replays) are bounded by its capacity; a post beyond
it ends every subscription of that connection with an `error` of code `lagging` carrying the
cursor to resume from, and the client subscribes again with `since`. Memory per connection stays
bounded and nobody else waits.

Each push names the feed's post before it. A post that overtook its predecessor (two workers
push a few milliseconds apart) waits up to REORDER_GRACE_SECONDS for it and both go out in
order; a predecessor that does not come ends the subscription with `lagging`, and the client
reads it from the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer

from realtime import counters
from realtime.groups import feed_group

logger = logging.getLogger(__name__)

POSTS_CREATED = "posts.created"
LAGGING = "lagging"
# How long a post whose predecessor in its feed has not arrived yet waits for it: pushes from
# two workers can overtake each other by a few milliseconds. Past this, the predecessor is
# taken as lost and the client catches up from the database (`lagging`).
REORDER_GRACE_SECONDS = 0.25
_RETRY_MAX_SECONDS = 10.0
_RENEW_MAX_SECONDS = 60.0


def post_frame(feed_id: int, post_id: int, post: dict[str, Any]) -> str:
    """The posts.created text frame, for live delivery and replay alike."""
    return json.dumps({"type": POSTS_CREATED, "feed": feed_id, "cursor": post_id, "post": post})


def lagging_frame(feed_id: int, cursor: int, *, why: str = "") -> str:
    why = why or f"too slow to read feed {feed_id}"
    return json.dumps(
        {
            "type": "error",
            "code": LAGGING,
            "feed": feed_id,
            "cursor": cursor,
            "message": f"{why}; subscribe again with since={cursor}",
        }
    )


@dataclass
class _Subscription:
    cursor: int = 0
    # Live posts (id, frame, the feed's post before it) that arrive while the subscription
    # replays from the database; None once live.
    held: list[tuple[int, str, int | None]] | None = field(default_factory=list)
    # Lagged while it was still replaying: the lagging error goes out once `subscribed` has.
    dropped: bool = False
    # Live posts that came before their predecessor, by the predecessor's id: (id, frame).
    early: dict[int, tuple[int, str]] = field(default_factory=dict)
    # Ends the wait for the predecessors of the early posts (REORDER_GRACE_SECONDS).
    gap_timer: asyncio.TimerHandle | None = None


class Subscriber:
    """One WebSocket connection as the hub sees it: its subscriptions, what it has yet to send,
    and the task that sends it, in order.

    Queue entries are (feed id, frame, waiter): posts carry their feed id and count towards the
    capacity; replies and replayed posts carry 0 and a future the writer awaits (so they are
    bounded by the writer, not by the capacity); lagging errors carry 0 and no waiter.
    """

    def __init__(self, hub: Hub, send: Callable[[str], Awaitable[None]], capacity: int) -> None:
        self.subscriptions: dict[int, _Subscription] = {}
        self._hub = hub
        self._send = send
        self._capacity = capacity
        self._queue: deque[tuple[int, str, asyncio.Future[None] | None]] = deque()
        self._posts = 0  # posts queued or held back, bounded by capacity
        # Set while the writer sleeps on an empty queue: a bare future is cheaper than an Event,
        # and this is woken once per post per connection.
        self._idle: asyncio.Future[None] | None = None
        self._closed = False
        self._pump_task = asyncio.create_task(self._pump())

    async def write(self, *frames: str) -> None:
        """Send frames after everything queued so far; return once they are written (or the
        socket is gone), so a client that does not read stops the caller too."""
        if self._closed or not frames:
            return
        waiter = asyncio.get_running_loop().create_future()
        for frame in frames[:-1]:
            self._queue.append((0, frame, None))
        self._queue.append((0, frames[-1], waiter))
        self._wake()
        await waiter

    async def listen(self, feed_id: int) -> None:
        """Start holding back the feed's live posts, and return once the process receives them.
        Call `go_live` with the cursor the database read reached."""
        previous = self.subscriptions.pop(feed_id, None)
        if previous is not None:
            self._forget(feed_id, previous)  # a resubscription: its replay supersedes them
        self.subscriptions[feed_id] = _Subscription()
        try:
            await self._hub.join(feed_id, self)
        except BaseException:
            self.subscriptions.pop(feed_id, None)
            self._hub.drop(feed_id, self)
            raise

    def go_live(self, feed_id: int, cursor: int) -> None:
        """Queue the held-back posts after `cursor` (the rest were read from the database) and
        deliver the feed's posts as they come from now on."""
        subscription = self.subscriptions.get(feed_id)
        if subscription is None or subscription.held is None:
            return
        if subscription.dropped:
            del self.subscriptions[feed_id]
            self._queue.append((0, lagging_frame(feed_id, cursor), None))
            self._wake()
            return
        held, subscription.held = subscription.held, None
        self._posts -= len(held)
        subscription.cursor = cursor
        # In id order: pushes from different workers may arrive in any order.
        for post_id, frame, after in sorted(held, key=lambda entry: entry[0]):
            if post_id > subscription.cursor:  # else the database read had it
                self._accept(feed_id, subscription, post_id, frame, after)
            if self.subscriptions.get(feed_id) is not subscription:
                break  # resynced
        self._wake()

    async def unsubscribe(self, feed_id: int) -> None:
        subscription = self.subscriptions.pop(feed_id, None)
        if subscription is not None:
            self._forget(feed_id, subscription)
            await self._hub.leave(feed_id, self)

    async def close(self) -> None:
        self._closed = True
        self._pump_task.cancel()
        subscriptions, self.subscriptions = self.subscriptions, {}
        for feed_id, subscription in subscriptions.items():
            self._stop_waiting(subscription)
            await self._hub.leave(feed_id, self)

    def deliver(self, feed_id: int, post_id: int, frame: str, after: int | None = None) -> None:
        """Called by the hub for every post of a feed this connection subscribes to; `after` is
        the feed's post before this one (None: not known)."""
        subscription = self.subscriptions.get(feed_id)
        if subscription is None or subscription.dropped or self._closed:
            return
        if subscription.held is None and post_id <= subscription.cursor:
            return  # already sent
        if self._posts >= self._capacity:
            counters.note_lagged()
            self.lag()
            return
        if subscription.held is not None:
            self._posts += 1
            subscription.held.append((post_id, frame, after))
            return
        self._accept(feed_id, subscription, post_id, frame, after)
        self._wake()

    def _accept(
        self,
        feed_id: int,
        subscription: _Subscription,
        post_id: int,
        frame: str,
        after: int | None,
    ) -> None:
        """Queue a live post after `subscription.cursor`, or keep it until its predecessor
        (`after`) has been queued, for at most REORDER_GRACE_SECONDS."""
        if after is not None and after > subscription.cursor:
            if after in subscription.early:
                self._resync(feed_id, subscription)  # two posts after one: not our feed's order
                return
            self._posts += 1
            subscription.early[after] = (post_id, frame)
            if subscription.gap_timer is None:
                subscription.gap_timer = asyncio.get_running_loop().call_later(
                    REORDER_GRACE_SECONDS, self._gap_expired, feed_id, subscription
                )
            return
        if after is None and subscription.early:
            # No predecessor named (an older sender) while others wait for theirs: taking it
            # would move the cursor past them. The client reads them all from the database.
            self._resync(feed_id, subscription)
            return
        self._posts += 1
        subscription.cursor = post_id
        self._queue.append((feed_id, frame, None))
        # The early posts that now follow, in their order.
        while subscription.early:
            following = subscription.early.pop(subscription.cursor, None)
            if following is None:
                break
            subscription.cursor = following[0]
            self._queue.append((feed_id, following[1], None))
        if not subscription.early:
            self._stop_waiting(subscription)

    def _gap_expired(self, feed_id: int, subscription: _Subscription) -> None:
        subscription.gap_timer = None
        if self._closed:
            return
        if self.subscriptions.get(feed_id) is subscription and subscription.early:
            self._resync(feed_id, subscription)

    def _stop_waiting(self, subscription: _Subscription) -> None:
        """Drop the early posts (counted in _posts) and the wait for their predecessors."""
        self._posts -= len(subscription.early)
        subscription.early.clear()
        if subscription.gap_timer is not None:
            subscription.gap_timer.cancel()
            subscription.gap_timer = None

    def _wake(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    def lag(self) -> None:
        """End every subscription: the client is told to subscribe again from its cursor."""
        logger.info(
            "WebSocket client lagging with %s posts waiting; ending its %s subscriptions",
            self._posts,
            len(self.subscriptions),
        )
        for feed_id, subscription in list(self.subscriptions.items()):
            self._hub.drop(feed_id, self)
            self._stop_waiting(subscription)
            if subscription.held is not None:
                self._posts -= len(subscription.held)
                subscription.held = []
                subscription.dropped = True  # go_live reports it with the replay's cursor
                continue
            del self.subscriptions[feed_id]
            # Behind the posts already queued, so the cursor is the last one the client gets.
            self._queue.append((0, lagging_frame(feed_id, subscription.cursor), None))
        self._wake()

    def _resync(self, feed_id: int, subscription: _Subscription) -> None:
        """A post of the feed before the one at hand never reached this process (its worker
        died between the commit and the push) or is still on its way (a later post's push
        overtook it). End the subscription with `lagging` at the cursor sent so far: the client
        subscribes again with `since` and reads the missing post from the database."""
        logger.info("feed %s: a post after %s is missing", feed_id, subscription.cursor)
        self._stop_waiting(subscription)
        del self.subscriptions[feed_id]
        self._hub.drop(feed_id, self)
        why = f"a post of feed {feed_id} did not reach this server in order"
        self._queue.append((0, lagging_frame(feed_id, subscription.cursor, why=why), None))
        self._wake()

    def _forget(self, feed_id: int, subscription: _Subscription) -> None:
        """Drop the feed's queued, held-back and early posts."""
        self._stop_waiting(subscription)
        if subscription.held:
            self._posts -= len(subscription.held)
        kept = deque(entry for entry in self._queue if entry[0] != feed_id)
        self._posts -= len(self._queue) - len(kept)
        self._queue = kept

    async def _pump(self) -> None:
        try:
            while True:
                if not self._queue:
                    self._idle = asyncio.get_running_loop().create_future()
                    await self._idle
                    continue
                feed_id, frame, waiter = self._queue.popleft()
                if feed_id:
                    self._posts -= 1
                await self._send(frame)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The socket is gone (uvicorn raises ClientDisconnected); the consumer hears of it
            # through websocket.disconnect.
            logger.debug("WebSocket writer stopped", exc_info=True)
        finally:
            self._closed = True
            for _, _, waiter in self._queue:
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            self._queue.clear()
            self._posts = sum(len(s.held or ()) + len(s.early) for s in self.subscriptions.values())


class Hub:
    """This event loop's channel-layer channel and the local subscribers of each feed."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[int, set[Subscriber]] = {}
        self.joined: set[int] = set()  # feeds whose group holds self.channel
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._receiver: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def open(self, send: Callable[[str], Awaitable[None]], *, capacity: int) -> Subscriber:
        return Subscriber(self, send, capacity)

    async def join(self, feed_id: int, subscriber: Subscriber) -> None:
        """Deliver the feed's posts to `subscriber`; returns once this process is in the group."""
        self.members.setdefault(feed_id, set()).add(subscriber)
        if self.channel is None:
            channel = await self.layer.new_channel()
            self.channel = self.channel or channel
        if self._receiver is None or self._receiver.done():
            self._receiver = asyncio.create_task(self._receive())
            self._refresher = asyncio.create_task(self._refresh())
        await self._sync(feed_id)

    async def leave(self, feed_id: int, subscriber: Subscriber) -> None:
        self._discard(feed_id, subscriber)
        await self._sync(feed_id)

    def drop(self, feed_id: int, subscriber: Subscriber) -> None:
        """`leave` for synchronous callers; the group is left in the background."""
        self._discard(feed_id, subscriber)
        self._spawn(self._sync(feed_id))

    def _discard(self, feed_id: int, subscriber: Subscriber) -> None:
        members = self.members.get(feed_id)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self.members[feed_id]

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("could not update a feed's group", exc_info=task.exception())

    async def _sync(self, feed_id: int) -> None:
        """Make the group's membership match whether any local connection wants the feed.
        Serialized per feed, so a join and a leave racing each other end in the right state (one
        lock per feed this process ever served: a few bytes each)."""
        if self.channel is None:
            return
        async with self._locks.setdefault(feed_id, asyncio.Lock()):
            wanted = feed_id in self.members
            if wanted and feed_id not in self.joined:
                await self.layer.group_add(feed_group(feed_id), self.channel)
                self.joined.add(feed_id)
            elif not wanted and feed_id in self.joined:
                await self.layer.group_discard(feed_group(feed_id), self.channel)
                self.joined.discard(feed_id)

    async def _receive(self) -> None:
        assert self.channel is not None
        delay = 0.5
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "lost the channel layer; this process's WebSocket subscribers are told to "
                    "subscribe again"
                )
                self._lag_everyone()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_SECONDS)
                continue
            delay = 0.5
            try:
                self._dispatch(message)
            except Exception:
                logger.exception("could not deliver a channel-layer message: %r", message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") != POSTS_CREATED:
            logger.warning("unexpected channel-layer message type %r", message.get("type"))
            return
        post = message["post"]
        feed_id = int(post["feed_id"])
        members = self.members.get(feed_id)
        if not members:
            return
        post_id = int(post["id"])
        frame = post_frame(feed_id, post_id, post)
        after = message.get("after")  # the feed's post before this one (realtime.broadcast)
        after = None if after is None else int(after)
        for subscriber in tuple(members):
            subscriber.deliver(feed_id, post_id, frame, after)

    def _lag_everyone(self) -> None:
        subscribers = {subscriber for members in self.members.values() for subscriber in members}
        for subscriber in subscribers:
            subscriber.lag()
        # Redis may have lost the groups: the next subscription to a feed joins its group again.
        self.joined.clear()

    async def _refresh(self) -> None:
        """Group membership expires after the layer's group_expiry, and this process stays in a
        group for as long as it has subscribers, which can be longer: renew it. Often enough to
        also put it back within a minute when Redis lost it (a restart without persistence)."""
        assert self.channel is not None
        every = min(_RENEW_MAX_SECONDS, max(1.0, getattr(self.layer, "group_expiry", 86400) / 3))
        while True:
            await asyncio.sleep(every)
            for feed_id in list(self.joined):
                try:
                    async with self._locks.setdefault(feed_id, asyncio.Lock()):
                        if feed_id in self.joined:
                            await self.layer.group_add(feed_group(feed_id), self.channel)
                except Exception:
                    logger.warning("could not renew the group of feed %s", feed_id, exc_info=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._settled)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (a web process has one; tests may run several)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub(get_channel_layer())
    return hub
