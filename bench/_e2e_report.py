"""The figures of bench/e2e.py: latencies, deliveries (lost, duplicated), throughput, process
usage and the reader comparison, from what the feed server and the clients recorded."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from _procstats import Watch

ITEM_URL = "http://example.test/item/"  # bench/_e2e_feeds.py puts the guid after it


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _lat(values: list[float]) -> str:
    if not values:
        return "p50    n/a   p99    n/a"
    return f"p50 {_pct(values, 0.5):6.3f} s  p99 {_pct(values, 0.99):6.3f} s  (n={len(values)})"


def _guid(url: str) -> str | None:
    return url.removeprefix(ITEM_URL) if url.startswith(ITEM_URL) else None


def _where(counts: Counter[str]) -> str:
    parts = [f"{name} {n}" for name, n in counts.items() if n]
    return f" ({', '.join(parts)})" if parts else ""


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


@dataclass
class Delivery:
    """What one set of receivers (the WebSocket clients, or the NATS consumer) got of a feed."""

    expected: int = 0  # deliveries owed: posts x receivers
    received: int = 0  # distinct (receiver, post) pairs
    duplicated: int = 0
    lost: int = 0
    latencies: list[float] = field(default_factory=list)  # served -> received, first copies


def _deliveries(
    receipts: dict[int, list[tuple[int, str | None, float]]],  # receiver -> (post, guid, at)
    owed: dict[int, str | None],  # post id -> guid, for the posts every receiver should get
    served_at: dict[str, float],
) -> Delivery:
    result = Delivery()
    for got in receipts.values():
        counts = Counter(post for post, _, _ in got)
        result.duplicated += sum(n - 1 for n in counts.values())
        firsts: dict[int, tuple[str | None, float]] = {}
        for post, guid, at in got:
            firsts.setdefault(post, (guid, at))
        result.expected += len(owed)
        result.received += sum(1 for post in owed if post in firsts)
        result.lost += sum(1 for post in owed if post not in firsts)
        for post, (guid, at) in firsts.items():
            if post in owed and guid in served_at:
                result.latencies.append(at - served_at[guid])
    return result


def print_report(
    args,
    *,
    feeds,
    items,
    report,
    db_posts,
    watch: Watch,
    window: tuple[float, float],
    names: list[str],
    batch: tuple[int, float],
    reader: tuple[int, float],
) -> int:
    started, drained_at = window
    served_at = {guid: first for guid, _, _, first in items if first is not None}
    added_at = {guid: at for guid, _, at, _ in items}
    never_served = len(items) - len(served_at)
    main = feeds[0]
    lines: list[str] = []
    out = lines.append

    out("")
    out(
        f"items: {len(items)} added, {len(served_at)} served"
        + (f", {never_served} NEVER POLLED" if never_served else "")
        + f"; {args.clients} WebSocket clients, one NATS consumer per subject"
    )
    lost: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    summary: dict[str, Any] = {}
    events = Counter(e for e, *_ in report["posts"])
    dup_events = sum(n - 1 for n in events.values())
    for feed in feeds:
        posts = db_posts[feed.id]
        owed = {post_id: _guid(url) for post_id, url in posts}
        ws: dict[int, list[tuple[int, str | None, float]]] = defaultdict(list)
        for client, got in enumerate(report["ws"]):
            ws[client] = [(p, _guid(u), at) for f, p, u, at in got if f == feed.id]
        for client in range(args.clients):
            ws.setdefault(client, [])
        nats_got = [(p, _guid(u), at) for _, f, p, u, _, _, at in report["posts"] if f == feed.id]
        ws_d = _deliveries(ws, owed, served_at)
        nats_d = _deliveries({0: nats_got}, owed, served_at)
        lost.update(WebSocket=ws_d.lost, NATS=nats_d.lost)
        duplicated.update(WebSocket=ws_d.duplicated, NATS=nats_d.duplicated)
        label = "rules-only feed" if feed is main else "agents feed"
        out("")
        out(f"{label} '{feed.name}' (id {feed.id}): {len(posts)} posts in the database")
        if feed is main:
            guids = Counter(owed.values())
            missing = [g for g in served_at if g not in guids]
            twice = sum(n - 1 for n in guids.values())
            lost.update(pipeline=len(missing))
            duplicated.update(pipeline=twice)
            out(
                f"  pipeline: {len(served_at) - len(missing)}/{len(served_at)} served items "
                f"became posts ({len(missing)} missing, {twice} duplicated)"
                + (f", e.g. {missing[:5]}" if missing else "")
            )
        out(
            f"  WebSocket: {ws_d.received}/{ws_d.expected} deliveries, {ws_d.lost} lost, "
            f"{ws_d.duplicated} duplicated; served -> received {_lat(ws_d.latencies)}"
        )
        resyncs = [r for r in report["resyncs"] if r[1] == feed.id]
        if resyncs:
            out(
                f"  WebSocket: {len(resyncs)} 'lagging' errors answered by subscribing again "
                f"with since (on {len({r[0] for r in resyncs})} clients)"
            )
            summary.setdefault("resyncs", 0)
            summary["resyncs"] += len(resyncs)
        out(
            f"  NATS:      {nats_d.received}/{nats_d.expected} posts.created, {nats_d.lost} lost, "
            f"{nats_d.duplicated} duplicated ({dup_events} repeated event ids over both feeds); "
            f"served -> received {_lat(nats_d.latencies)}"
        )
        if feed is main:
            window_end = max((at for got in ws.values() for _, _, at in got), default=drained_at)
            span = window_end - started
            delivered = len({p for got in ws.values() for p, _, _ in got if p in owed})
            first_ws: dict[int, float] = {}
            for got in ws.values():
                for post, _, at in got:
                    first_ws[post] = min(at, first_ws.get(post, at))
            added_lat = [
                at - added_at[owed[p]] for p, at in first_ws.items() if owed.get(p) in added_at
            ]
            out(
                f"  throughput: {delivered} posts in {span:.1f} s = {delivered / span:.1f} posts/s "
                f"end to end (offered {args.rate:g}/s), "
                f"{ws_d.received / span:.0f} WebSocket deliveries/s"
            )
            out(f"  added -> WS (includes the wait for the next poll): {_lat(added_lat)}")
            # Where the time goes, per post (first WebSocket copy; NATS stamps).
            stages: dict[str, list[float]] = defaultdict(list)
            for _, guid, fetched, stored, _ in report["raw"]:
                if guid in served_at:
                    stages["raw post row built (fetched_at)"].append(_ts(fetched) - served_at[guid])
                    stages["raw_posts.created stored in NATS"].append(stored - served_at[guid])
            for _, f, _, url, created, stored, at in report["posts"]:
                guid = _guid(url)
                if f == feed.id and guid in served_at:
                    stages["post row built (created_at)"].append(_ts(created) - served_at[guid])
                    stages["posts.created stored in NATS"].append(stored - served_at[guid])
                    stages["posts.created at the consumer"].append(at - served_at[guid])
            for post, at in first_ws.items():
                if owed.get(post) in served_at:
                    stages["first WebSocket client"].append(at - served_at[owed[post]])
            out("  served -> each stage (per post):")
            for stage, values in stages.items():
                out(f"    {stage:<33} {_lat(values)}")
            summary.update(
                posts=delivered,
                rate=delivered / span,
                ws=ws_d.latencies,
                nats=nats_d.latencies,
            )
        elif ws_d.latencies:
            summary["agents"] = ws_d.latencies
    if report["errors"]:
        out(f"client errors: {report['errors'][:10]}")
        lost.update(client_errors=len(report["errors"]))

    elapsed = drained_at - started
    out("")
    out(
        f"processes over the {elapsed:.0f} s run (CPU; peak RSS: sum of VmHWM over the tree, an "
        "upper bound; peak PSS: largest sum of PSS at a 1 s sample):"
    )
    rss: dict[str, float] = {}
    pss: dict[str, float] = {}
    for name in [*names, "redis-server", "nats-server", "postgres"]:
        if name not in watch.groups:
            continue
        use = watch.usage(name)
        rss[name] = use.peak_rss_kb / 1024
        pss[name] = use.peak_pss_kb / 1024
        note = {
            "feeds": " (bench: feed server)",
            "clients": " (bench: clients)",
            "postgres": " (bench database backends, sampled: short-lived ones undercounted)",
        }.get(name, "")
        out(
            f"  {name:<12} {use.processes:3d} proc  CPU {use.cpu:7.1f} s ({use.cpu / elapsed:4.0%}"
            f" of a core)  peak RSS {rss[name]:5.0f} MB  PSS {pss[name]:5.0f} MB{note}"
        )
    if not watch.available:
        out("  (no /proc here: CPU and memory are not measured)")

    batch_entries, batch_seconds = batch
    reader_entries, reader_seconds = reader
    ours_batch = batch_entries / batch_seconds if batch_seconds else math.nan
    theirs = reader_entries / reader_seconds if reader_seconds else math.nan
    steady = summary.get("rate", math.nan) / theirs
    batch_ratio = ours_batch / theirs
    out("")
    out(
        f"reader 3.26, update_feeds(workers=8) of the same {args.sources} feeds: "
        f"{reader_entries} entries in {reader_seconds:.2f} s = {theirs:.0f} entries/s"
    )
    out(
        f"infatium batch (same feeds as new sources, one poll each by the running worker, its "
        f"processing paused): "
        f"{batch_entries} entries in {batch_seconds:.2f} s = {ours_batch:.0f} entries/s "
        f"= {batch_ratio:.2f}x reader"
    )
    out(
        f"infatium steady state: {summary.get('rate', math.nan):.1f} posts/s = {steady:.3f}x "
        "reader's batch rate (bounded by the offered load, not a capacity figure)"
    )

    n_lost, n_duplicated = lost.total(), duplicated.total()
    status = 0 if n_lost == 0 and n_duplicated == 0 and summary.get("posts") else 1
    ws, nats = summary.get("ws", []), summary.get("nats", [])
    workers_rss = sum(v for k, v in rss.items() if k.startswith("worker"))
    workers_pss = sum(v for k, v in pss.items() if k.startswith("worker"))
    parts = [
        f"summary: {summary.get('posts', 0)} posts in {args.seconds:g} s",
        f"{summary.get('rate', math.nan):.1f} posts/s e2e",
        f"ws p50 {_pct(ws, 0.5):.2f} s p99 {_pct(ws, 0.99):.2f} s",
        f"nats p50 {_pct(nats, 0.5):.2f} s p99 {_pct(nats, 0.99):.2f} s",
    ]
    if "agents" in summary:
        parts.append(f"agents feed ws p50 {_pct(summary['agents'], 0.5):.2f} s")
    if summary.get("resyncs"):
        parts.append(f"{summary['resyncs']} ws resyncs")
    parts += [
        f"{n_lost} lost{_where(lost)}",
        f"{n_duplicated} duplicated{_where(duplicated)}",
        f"reader ratio {batch_ratio:.2f}x batch / {steady:.3f}x steady",
        f"peak RSS web {rss.get('web', 0):.0f} MB worker {workers_rss:.0f} MB "
        f"(PSS {workers_pss:.0f} MB) beat {rss.get('beat', 0):.0f} MB "
        f"bridge {rss.get('bridge', 0):.0f} MB",
    ]
    out("")
    out(", ".join(parts) + ("" if status == 0 else "  [FAILED]"))
    print("\n".join(lines), flush=True)
    return status
