"""Writes for sources: claiming due polls, polling, storing raw posts.

Scheduling contract: a poll runs only under a claim (`Source.claim_token`), taken by one
conditional UPDATE, so two dispatcher ticks or two workers never poll one source at once. A claim
expires after POLL_LEASE_SECONDS (longer than the task's hard time limit), so a poll lost with a
killed worker or a flushed broker is simply dispatched again.

Layout: `claims` (claiming due sources, "poll now"), `polling` (reading claimed sources and
recording their polls), `storing` (the identity ladder, raw post inserts and edits, the
gateway's `ingest`, deletions, purging), `schedule` (rhythm, next interval, backoff, closing a
poll), `sources` (adding and changing sources, the quota). Other code imports from here; a test
that patches a private helper patches it in the module that looks it up.
"""

from __future__ import annotations

from feeds.services.claims import Claim, claim_due_sources, claim_source_now
from feeds.services.polling import poll_source, poll_sources
from feeds.services.schedule import next_interval
from feeds.services.sources import (
    QuotaExceeded,
    SourceExists,
    create_source,
    discover_feed_url,
    lock_user,
    update_source,
)
from feeds.services.storing import (
    Stored,
    advance_cursor,
    ingest,
    known_external_ids,
    purge_raw_posts,
    record_deletions,
    record_source_error,
    set_telegram_identity,
    store_entries,
)

__all__ = [
    "Claim",
    "QuotaExceeded",
    "SourceExists",
    "Stored",
    "advance_cursor",
    "claim_due_sources",
    "claim_source_now",
    "create_source",
    "discover_feed_url",
    "ingest",
    "known_external_ids",
    "lock_user",
    "next_interval",
    "poll_source",
    "poll_sources",
    "purge_raw_posts",
    "record_deletions",
    "record_source_error",
    "set_telegram_identity",
    "store_entries",
    "update_source",
]
