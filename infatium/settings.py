"""Infatium settings: environment variables only, validated at import.

Every variable is listed with one line of explanation in `.env.example`. A bad value stops
start-up with a message that names it; all bad values are reported together.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path

import dj_database_url

from infatium.env import (
    add_error,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    raise_collected_errors,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("INFATIUM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if DEBUG:
        # Only for a developer's own machine; `make run` writes a random key into var/ instead.
        SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
    else:
        add_error("SECRET_KEY is required when DEBUG is off (any long random string)")
elif len(SECRET_KEY) < 32 and not DEBUG:
    add_error("SECRET_KEY is too short: use at least 32 random characters")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # django.contrib.admin; its index shows the system's health (infatium.admin_site).
    "infatium.apps.InfatiumAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally: no CDN
    "channels",
    "feeds",
    "processing",
    "agents",
    "realtime",
]

MIDDLEWARE = [
    # /healthz and /readyz answer before host checks and sessions (probes use the container's
    # own address, not a public host name).
    "infatium.middleware.ProbeMiddleware",
    # X-Request-ID in and out; the id is in every log line of the request (infatium.logging).
    "infatium.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "infatium.urls"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
ASGI_APPLICATION = "infatium.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "infatium" / "templates"],  # the admin index (infatium.admin_site)
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'infatium.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
DB_POOL = env_bool("DB_POOL", True)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10, minimum=1)


def _database(url: str) -> dict[str, object]:
    config: dict[str, object] = dict(dj_database_url.parse(url))
    options: dict[str, object] = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # The embedded default runs web, worker and beat against one file: WAL lets readers
        # proceed beside a writer, IMMEDIATE transactions take the write lock up front so two
        # writers queue on the busy timeout instead of failing with "database is locked".
        options.update(
            {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    elif DB_POOL:
        # Django's psycopg 3 pool; persistent connections must then stay off.
        options["pool"] = {"min_size": 1, "max_size": DB_POOL_MAX_SIZE, "timeout": 10}
        config["CONN_MAX_AGE"] = 0
        # The pool tests a connection before lending it (one empty query): workers keep theirs
        # between tasks, and one the database dropped must not reach the next task.
        config["CONN_HEALTH_CHECKS"] = True
    else:
        config["CONN_MAX_AGE"] = 60
        config["CONN_HEALTH_CHECKS"] = True
    config["OPTIONS"] = options
    return config


DATABASES = {"default": _database(DATABASE_URL)}
if DATABASE_URL.startswith("sqlite"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# Static files (the admin's, the live page's) are served by WhiteNoise from the ASGI server
# itself, from STATIC_ROOT after `collectstatic` and otherwise straight from the apps.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)

# --- Redis, Celery, Channels ------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss"))

# Seconds. Every countdown, retry backoff and task time limit stays far below this, or Redis
# would hand a still-running task to a second worker.
CELERY_VISIBILITY_TIMEOUT = 3600
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_DEFAULT_QUEUE = "process"
CELERY_TASK_ROUTES = {
    "feeds.tasks.dispatch_due_sources": {"queue": "poll"},
    "feeds.tasks.poll_source": {"queue": "poll"},
    "feeds.tasks.poll_sources": {"queue": "poll"},
    "feeds.tasks.purge_raw_posts": {"queue": "poll"},
    "processing.tasks.decide_candidates": {"queue": "agents"},
    "processing.tasks.reevaluate_feed": {"queue": "agents"},
    "processing.tasks.*": {"queue": "process"},
    "agents.tasks.*": {"queue": "agents"},
}
# A time limit on every task: a hung socket or parser can never hold a worker slot forever.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 150, minimum=2)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connections (and, in prefork children, the whole
# pool) only every this many tasks; infatium.celery gives them back to the pool after each task.
CELERY_DB_REUSE_MAX = 1000
# Reconnects when the broker goes away with acks_late tasks unacknowledged (infatium.celery).
CELERY_WORKER_CONSUMER = "infatium.celery:Consumer"
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower shows tasks live
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

POLL_DISPATCH_SECONDS = env_float("POLL_DISPATCH_SECONDS", 5.0, minimum=0.1)
# Raw posts whose processing did not finish (lost task, killed worker) are re-queued after this,
# by a sweep every half of it (at most every minute): lost work waits 1.5 times this at most.
PROCESS_RETRY_AFTER_SECONDS = env_int("PROCESS_RETRY_AFTER_SECONDS", 120, minimum=1)
_SWEEP_SECONDS = min(60.0, max(1.0, PROCESS_RETRY_AFTER_SECONDS / 2))
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-sources": {
        "task": "feeds.tasks.dispatch_due_sources",
        "schedule": POLL_DISPATCH_SECONDS,
        # A tick that waits longer than its period in the queue is stale: the next one does
        # the same work, so old ones are dropped rather than piling up behind a busy worker.
        "options": {"expires": max(POLL_DISPATCH_SECONDS * 2, 5.0)},
    },
    "sweep-unprocessed-raw-posts": {
        "task": "processing.tasks.sweep_unprocessed",
        "schedule": _SWEEP_SECONDS,
        "options": {"expires": _SWEEP_SECONDS},
    },
    "purge-raw-posts": {
        "task": "feeds.tasks.purge_raw_posts",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}

# Throttle counters and WebSocket tickets must be shared by every web process: Redis, under a
# prefix of its own. Every entry has a TTL, as the broker's Redis runs with noeviction.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "infatium:cache",
        "TIMEOUT": 300,
    },
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults socket_timeout to 5 s, the same as channels_redis's blocking
            # BZPOPMIN: an idle WebSocket then dies with "Timeout reading from Redis". It must be
            # off, not just longer: with any socket_timeout redis-py sends through
            # asyncio.wait_for, which on Python 3.11 can swallow a cancellation (gh-86296), so a
            # consumer whose client leaves at once (every refused handshake) never stops. Reads
            # stay bounded by BZPOPMIN's own 5 s timeout.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None, "socket_connect_timeout": 5}],
            "prefix": "infatium:asgi",
            # Messages waiting for one web process (all its WebSockets share one channel, see
            # realtime.hub) before group_send drops (channels_redis default is 100).
            "capacity": env_int("WS_CHANNEL_CAPACITY", 1000, minimum=10),
            "expiry": 60,
            "group_expiry": 3600,
        },
    },
}

# --- WebSocket limits ------------------------------------------------------------------
# Largest inbound message; a bigger one closes the socket (1009).
WS_MAX_MESSAGE_BYTES = env_int("WS_MAX_MESSAGE_BYTES", 16 * 1024, minimum=256)
# Inbound messages per second per connection (token bucket) and the burst allowed.
WS_RATE_PER_SECOND = env_float("WS_RATE_PER_SECOND", 10.0, minimum=0.1)
WS_RATE_BURST = env_int("WS_RATE_BURST", 30, minimum=1)
# Open connections per user, counted across web processes in Redis.
WS_MAX_CONNECTIONS_PER_USER = env_int("WS_MAX_CONNECTIONS_PER_USER", 20, minimum=1)
# Feeds one connection may subscribe to.
WS_MAX_FEEDS = env_int("WS_MAX_FEEDS", 50, minimum=1)
# Posts a `subscribe` with `since` replays before telling the client to catch up over REST.
WS_REPLAY_MAX = env_int("WS_REPLAY_MAX", 5000, minimum=1)
# Posts one connection may have waiting to be written; beyond, its subscriptions end with a
# `lagging` error and it subscribes again with `since` (memory per slow client stays bounded).
WS_SEND_QUEUE = env_int("WS_SEND_QUEUE", 256, minimum=1)

# --- Polling and fetching ---------------------------------------------------------------
FETCH_TIMEOUT_SECONDS = env_float("FETCH_TIMEOUT_SECONDS", 20.0, minimum=0.1)
FETCH_MAX_BYTES = env_int("FETCH_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
FETCH_USER_AGENT = env_str(
    "FETCH_USER_AGENT", "Infatium/0.1 (+https://github.com/infatium/infatium; feed fetcher)"
)
POLL_DEFAULT_INTERVAL_SECONDS = env_int("POLL_DEFAULT_INTERVAL_SECONDS", 900, minimum=1)
# Bounds of the adaptive interval (posting rate, ttl, Cache-Control, Expires, backoff).
POLL_MIN_INTERVAL_SECONDS = env_int("POLL_MIN_INTERVAL_SECONDS", 60, minimum=1)
POLL_MAX_INTERVAL_SECONDS = env_int("POLL_MAX_INTERVAL_SECONDS", 6 * 3600, minimum=1)
if POLL_MIN_INTERVAL_SECONDS > POLL_MAX_INTERVAL_SECONDS:
    add_error("POLL_MIN_INTERVAL_SECONDS is larger than POLL_MAX_INTERVAL_SECONDS")
# Polls in flight at once against one host (a site with many feeds is not hammered).
POLL_PER_HOST_CONCURRENCY = env_int("POLL_PER_HOST_CONCURRENCY", 4, minimum=1)
# A network error counts as an outage (not against the source) when, in the last
# OUTAGE_WINDOW_SECONDS, at least OUTAGE_MIN_SOURCES distinct sources failed on the network and
# none succeeded.
OUTAGE_WINDOW_SECONDS = env_int("OUTAGE_WINDOW_SECONDS", 300, minimum=1)
OUTAGE_MIN_SOURCES = env_int("OUTAGE_MIN_SOURCES", 3, minimum=1)
# A source is silent when no new item came for SILENT_GAP_FACTOR times its mean gap (and at
# least SILENT_MIN_SECONDS).
SILENT_GAP_FACTOR = env_float("SILENT_GAP_FACTOR", 5.0, minimum=1.0)
SILENT_MIN_SECONDS = env_int("SILENT_MIN_SECONDS", 2 * 86400, minimum=1)
# Raw posts older than this that no feed kept are purged (tombstoned: they never return as new).
RAW_POST_RETENTION_DAYS = env_int("RAW_POST_RETENTION_DAYS", 90, minimum=1)
# Web page sources: article links taken from a listing per poll, and articles fetched per poll
# (the rest wait for the next poll).
WEB_MAX_ARTICLES = env_int("WEB_MAX_ARTICLES", 20, minimum=1)
WEB_MAX_FETCHES_PER_POLL = env_int("WEB_MAX_FETCHES_PER_POLL", 10, minimum=1)
# Polls in which an article's fetch may fail before it is kept as its title and link.
WEB_ARTICLE_MAX_ATTEMPTS = env_int("WEB_ARTICLE_MAX_ATTEMPTS", 6, minimum=1)
POLL_DISPATCH_BATCH = env_int("POLL_DISPATCH_BATCH", 200, minimum=1)
# Most sources one poll task reads (their network waits overlap, a thread each): fewer,
# fuller tasks, so polls are not bound by Celery's tasks per second (each costs a few ms of
# messaging and bookkeeping). A tick's claims are cut into even batches of at most this.
POLL_BATCH_SIZE = env_int("POLL_BATCH_SIZE", 50, minimum=1)
POLL_THREADS = env_int("POLL_THREADS", 8, minimum=1)
# A poll task stores its reads as they finish, this many per transaction, while its other
# reads go on.
POLL_STORE_BATCH = env_int("POLL_STORE_BATCH", 20, minimum=1)
# How long a claimed poll may run before the dispatcher treats it as lost and polls again: the
# longest pause of a source whose poll went with a killed worker or a restarted Redis. Longer
# than the hard time limit, so a poll still running is not started twice.
POLL_LEASE_SECONDS = env_int("POLL_LEASE_SECONDS", CELERY_TASK_TIME_LIMIT + 30, minimum=1)
if POLL_LEASE_SECONDS <= CELERY_TASK_TIME_LIMIT:
    add_error("POLL_LEASE_SECONDS must be longer than CELERY_TASK_TIME_LIMIT")
FEED_BACKFILL_LIMIT = env_int("FEED_BACKFILL_LIMIT", 50, minimum=0)
# Near-duplicate posts published within this many hours of each other form one story.
STORY_WINDOW_HOURS = env_int("STORY_WINDOW_HOURS", 48, minimum=1)

# --- Telegram ---------------------------------------------------------------------------
# Without credentials public channels are read from the t.me/s web preview by the normal poll.
# With API id + hash (https://my.telegram.org/apps) and a session string (`manage.py
# telegram_login`), `manage.py telegram_gateway` reads them over MTProto instead.
TELEGRAM_API_ID = env_int("TELEGRAM_API_ID", 0, minimum=0)
TELEGRAM_API_HASH = env_str("TELEGRAM_API_HASH")
TELEGRAM_SESSION = env_str("TELEGRAM_SESSION")  # a password equivalent: TELEGRAM_SESSION_FILE
if bool(TELEGRAM_API_ID) != bool(TELEGRAM_API_HASH):
    add_error("TELEGRAM_API_ID and TELEGRAM_API_HASH go together: set both or neither")
if TELEGRAM_SESSION and not TELEGRAM_API_ID:
    add_error("TELEGRAM_SESSION is set but TELEGRAM_API_ID/TELEGRAM_API_HASH are not")
TELEGRAM_GATEWAY_ENABLED = bool(TELEGRAM_API_ID and TELEGRAM_API_HASH and TELEGRAM_SESSION)
# Seconds between two reads of each channel's history by the gateway (live updates come between).
TELEGRAM_RECONCILE_SECONDS = env_int("TELEGRAM_RECONCILE_SECONDS", 300, minimum=10)
# The web preview: base URL (tests point it at a local server) and pages read back to the cursor.
TELEGRAM_PREVIEW_BASE_URL = env_url(
    "TELEGRAM_PREVIEW_BASE_URL", "https://t.me/s/", schemes=("http", "https")
)
TELEGRAM_PREVIEW_MAX_PAGES = env_int("TELEGRAM_PREVIEW_MAX_PAGES", 5, minimum=1)

# --- Optional services ------------------------------------------------------------------
NATS_URL = env_url("NATS_URL", "", schemes=("nats", "tls", "ws", "wss"))
# JetStream streams RAW_POSTS and POSTS, created or updated by `manage.py nats_bridge`.
NATS_STREAM_MAX_AGE_SECONDS = env_int("NATS_STREAM_MAX_AGE_SECONDS", 7 * 86400, minimum=60)
NATS_STREAM_MAX_BYTES = env_int("NATS_STREAM_MAX_BYTES", 1024**3, minimum=-1)
NATS_STREAM_MAX_MSGS = env_int("NATS_STREAM_MAX_MSGS", -1, minimum=-1)
NATS_STREAM_REPLICAS = env_int("NATS_STREAM_REPLICAS", 1, minimum=1)
# JetStream drops an event whose event_id it stored less than this long ago. The relay re-sends
# an event only when it was not marked published (a crash or a database outage between the ack
# and the UPDATE), so this must outlast the longest such gap; it costs ~150 bytes of server
# memory per event published within the window.
NATS_DUPLICATE_WINDOW_SECONDS = env_int("NATS_DUPLICATE_WINDOW_SECONDS", 3600, minimum=1)
if NATS_DUPLICATE_WINDOW_SECONDS > NATS_STREAM_MAX_AGE_SECONDS:
    add_error(
        "NATS_DUPLICATE_WINDOW_SECONDS must not exceed NATS_STREAM_MAX_AGE_SECONDS "
        "(JetStream refuses such a stream)"
    )
# Outbox relay: events per batch, how long to wait for a batch's acks, idle poll period and the
# longest pause between retries while NATS is unreachable.
NATS_RELAY_BATCH = env_int("NATS_RELAY_BATCH", 1000, minimum=1)
NATS_RELAY_ACK_TIMEOUT_SECONDS = env_float("NATS_RELAY_ACK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
NATS_RELAY_IDLE_SECONDS = env_float("NATS_RELAY_IDLE_SECONDS", 0.2, minimum=0.01)
NATS_RELAY_MAX_BACKOFF_SECONDS = env_float("NATS_RELAY_MAX_BACKOFF_SECONDS", 30.0, minimum=0.1)
# Published outbox rows are deleted after this many seconds (the stream keeps the events).
NATS_OUTBOX_KEEP_SECONDS = env_int("NATS_OUTBOX_KEEP_SECONDS", 7 * 86400, minimum=60)
# Largest event; bigger raw posts lose `html`, then the end of `text` (marked `truncated`).
NATS_MAX_EVENT_BYTES = env_int("NATS_MAX_EVENT_BYTES", 256 * 1024, minimum=4096)
# agents.{type} request-reply: largest request or reply, per-request deadline, concurrent
# requests one bridge handles.
NATS_AGENT_MAX_PAYLOAD_BYTES = env_int("NATS_AGENT_MAX_PAYLOAD_BYTES", 256 * 1024, minimum=1024)
NATS_AGENT_TIMEOUT_SECONDS = env_float("NATS_AGENT_TIMEOUT_SECONDS", 30.0, minimum=0.1)
NATS_AGENT_CONCURRENCY = env_int("NATS_AGENT_CONCURRENCY", 4, minimum=1)
# Processing calls the agents over NATS (agents.{type}) instead of in the worker; it falls back
# to a local call when no bridge answers.
AGENTS_REMOTE = env_bool("AGENTS_REMOTE", False)
# Optional ingest of raw_posts.created from other publishers (a durable pull consumer).
NATS_INGEST = env_bool("NATS_INGEST", False)
NATS_INGEST_DURABLE = env_str("NATS_INGEST_DURABLE", "infatium-ingest")
NATS_INGEST_MAX_DELIVER = env_int("NATS_INGEST_MAX_DELIVER", 5, minimum=1)
NATS_INGEST_ACK_WAIT_SECONDS = env_float("NATS_INGEST_ACK_WAIT_SECONDS", 30.0, minimum=1.0)
NATS_INGEST_BATCH = env_int("NATS_INGEST_BATCH", 100, minimum=1)

# --- Observability ----------------------------------------------------------------------
# Errors to Sentry or GlitchTip (any Sentry-compatible DSN); unset: off. See infatium.sentry.
SENTRY_DSN = env_str("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")
# Release tag; unset: the git commit of this checkout if there is one, else the version.
SENTRY_RELEASE = env_str("SENTRY_RELEASE")
# Share of requests and tasks traced for performance monitoring (0: errors only).
SENTRY_TRACES_SAMPLE_RATE = env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0, minimum=0.0)
if SENTRY_TRACES_SAMPLE_RATE > 1:
    add_error(f"SENTRY_TRACES_SAMPLE_RATE={SENTRY_TRACES_SAMPLE_RATE} is above 1 (a share: 0..1)")
# Bearer token for /metrics (Prometheus); staff sessions can read it too. Unset: staff only.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Flower's HTTP basic auth, user:password; required when DEBUG is off (checked by Flower's own
# configuration, infatium/flowerconfig.py, so other processes start without it).
FLOWER_BASIC_AUTH = env_str("FLOWER_BASIC_AUTH")
if FLOWER_BASIC_AUTH and not re.fullmatch(r"[^:]+:.+", FLOWER_BASIC_AUTH):
    add_error("FLOWER_BASIC_AUTH must be user:password")

# --- AI agents (agents/) ----------------------------------------------------------------
# Without LLM_MODEL every agent runs the offline default (BM25 relevance, TextRank summary,
# keyword tags): real output, no network. With it, LangChain's init_chat_model builds the client
# ("openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest", "ollama:llama3"); building it never
# touches the network. Provider keys come from LLM_API_KEY or the provider's own variable
# (OPENAI_API_KEY, ANTHROPIC_API_KEY).
LLM_MODEL = env_str("LLM_MODEL")
LLM_FALLBACK_MODEL = env_str("LLM_FALLBACK_MODEL")
for _name, _spec in (("LLM_MODEL", LLM_MODEL), ("LLM_FALLBACK_MODEL", LLM_FALLBACK_MODEL)):
    if _spec and (any(ch.isspace() for ch in _spec) or _spec.startswith(":")):
        add_error(f"{_name}={_spec!r} is not a model; use provider:model, e.g. openai:gpt-4o-mini")
if LLM_FALLBACK_MODEL and not LLM_MODEL:
    add_error("LLM_FALLBACK_MODEL is set but LLM_MODEL is not")
LLM_BASE_URL = env_url("LLM_BASE_URL", "", schemes=("http", "https"))
LLM_API_KEY = env_str("LLM_API_KEY")
LLM_TIMEOUT_SECONDS = env_float("LLM_TIMEOUT_SECONDS", 30.0, minimum=1.0)
# Our retries, for retryable errors only (timeouts, 429, 5xx, connection); the provider SDK's
# own retries are turned off so the two layers do not multiply.
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2, minimum=0)
# Requests per minute for all workers together (a token bucket in Redis); 0: no limit.
LLM_RATE_LIMIT_PER_MINUTE = env_int("LLM_RATE_LIMIT_PER_MINUTE", 0, minimum=0)
# Prices in your currency per 1,000 tokens, for the recorded cost of each call.
LLM_PRICE_PER_1K_INPUT = env_float("LLM_PRICE_PER_1K_INPUT", 0.0, minimum=0.0)
LLM_PRICE_PER_1K_OUTPUT = env_float("LLM_PRICE_PER_1K_OUTPUT", 0.0, minimum=0.0)
# Tokens one feed may spend per UTC day before its calls degrade to the offline default; 0: no
# limit. A feed's own `token_budget_daily` overrides it.
AGENT_DAILY_TOKEN_BUDGET = env_int("AGENT_DAILY_TOKEN_BUDGET", 200_000, minimum=0)
# The largest `token_budget_daily` a feed's owner may set through the API (staff: any, in admin).
AGENT_FEED_TOKEN_BUDGET_MAX = env_int("AGENT_FEED_TOKEN_BUDGET_MAX", 1_000_000, minimum=0)
# Posts per LLM call (answers come back keyed by post id).
AGENT_BATCH_SIZE = env_int("AGENT_BATCH_SIZE", 10, minimum=1)
# Offline relevance score a post needs to reach the LLM (the cheap gate in the cascade). A post
# sharing no word with the description scores 0.04; the gate stops those and little more.
AGENT_GATE_THRESHOLD = env_float("AGENT_GATE_THRESHOLD", 0.05, minimum=0.0)
# Tag taxonomy: comma-separated tags, each optionally with its offline keywords after "=",
# separated by "|" (e.g. "politics,ai=ai|llm|machine learning,rust=rust|cargo").
AGENT_TAXONOMY_KEYWORDS: dict[str, list[str]] = {}
AGENT_TAXONOMY: list[str] = []
_DEFAULT_TAXONOMY = ["politics", "business", "technology", "ai", "science"]
_DEFAULT_TAXONOMY += ["health", "climate", "security", "sports", "culture"]
for _entry in env_list("AGENT_TAXONOMY", _DEFAULT_TAXONOMY):
    _tag, _, _keywords = _entry.partition("=")
    _tag = _tag.strip()
    if not _tag or len(_tag) > 64 or _tag in AGENT_TAXONOMY:
        add_error(f"AGENT_TAXONOMY entry {_entry!r}: a tag must be unique and 1-64 characters")
        continue
    AGENT_TAXONOMY.append(_tag)
    if _keywords.strip():
        AGENT_TAXONOMY_KEYWORDS[_tag.lower()] = [
            k.strip() for k in _keywords.split("|") if k.strip()
        ]
if len(AGENT_TAXONOMY) > 50:
    add_error("AGENT_TAXONOMY has more than 50 tags")
# Not from the environment: pacing of our retries and of waiting on another worker's claim.
AGENT_RETRY_BACKOFF_SECONDS = 1.0
AGENT_CLAIM_WAIT_SECONDS = 20.0

# --- REST API ---------------------------------------------------------------------------
# Throttle rates are "<count>/<period>" with period s, min, hour or day (DRF's format).
_RATE_PERIODS = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}


def _env_rate(name: str, default: str) -> str:
    value = env_str(name, default)
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) > 0 and period in _RATE_PERIODS):
        add_error(f"{name}={value!r} is not a rate; use e.g. 60/min (periods: s, min, hour, day)")
        return default
    return value


REST_FRAMEWORK = {
    # Token first: an anonymous client then gets 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default; the few anonymous endpoints (token, schema, docs) say so themselves.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every list is paginated with a bounded page size, even one that forgets to choose.
    "DEFAULT_PAGINATION_CLASS": "infatium.api_policy.IdCursorPagination",
    "DEFAULT_THROTTLE_CLASSES": [
        "infatium.api_policy.AnonThrottle",
        "infatium.api_policy.UserThrottle",
        "infatium.api_policy.WriteThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": _env_rate("API_THROTTLE_ANON", "60/min"),
        "user": _env_rate("API_THROTTLE_USER", "1200/min"),
        "writes": _env_rate("API_THROTTLE_WRITES", "120/min"),
        "auth": _env_rate("API_THROTTLE_AUTH", "10/min"),
    },
    # Throttles identify anonymous clients by address. With None DRF would use the whole
    # client-supplied X-Forwarded-For, which a client can change on every request; set this to
    # the number of proxies in front of the web process (0: use the socket's peer address).
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0, minimum=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Infatium API",
    "DESCRIPTION": "Sources, AI-curated feeds and their posts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs describe the API, not anyone's data: open to all, like /healthz.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Hard limits (throttles are approximate; these are counted in the database).
SOURCE_QUOTA_PER_USER = env_int("SOURCE_QUOTA_PER_USER", 50, minimum=0)
# OPML uploads (admin and API): largest file in bytes, and most <outline> elements in one.
OPML_MAX_BYTES = env_int("OPML_MAX_BYTES", 2 * 1024 * 1024, minimum=1024)
OPML_MAX_OUTLINES = env_int("OPML_MAX_OUTLINES", 5000, minimum=1)
FEED_QUOTA_PER_USER = env_int("FEED_QUOTA_PER_USER", 50, minimum=0)
# Networks (CIDR) and host names the fetcher may reach although they are private, loopback or
# link-local (the demo and the tests serve feeds on 127.0.0.0/8,::1). Checked at connect time
# and at save time; see feeds.fetcher. Empty: only public addresses.
FETCH_ALLOWED_NETWORKS = env_list("FETCH_ALLOWED_NETWORKS", [])
for _entry in FETCH_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_entry.strip("[]"), strict=False)
    except ValueError:
        if "/" in _entry or not all(c.isalnum() or c in "-._" for c in _entry):
            add_error(
                f"FETCH_ALLOWED_NETWORKS: {_entry!r} is neither a network (10.0.0.0/8, fd00::/8,"
                " 127.0.0.1) nor a host name"
            )
# Lifetime of a WebSocket ticket from POST /api/ws-ticket/ (single use).
WS_TICKET_TTL_SECONDS = env_int("WS_TICKET_TTL_SECONDS", 30, minimum=1)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in logging.getLevelNamesMapping():
    add_error(f"LOG_LEVEL={LOG_LEVEL!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    LOG_LEVEL = "INFO"
# json: one JSON object per line (for a log collector); text: readable lines.
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json").lower()
if LOG_FORMAT not in ("json", "text"):
    add_error(f"LOG_FORMAT={LOG_FORMAT!r} is not json or text")
    LOG_FORMAT = "json"
# Every process (web, worker, beat, bridge, gateway) logs through this one handler: context ids
# and redaction of credentials (infatium.logging). Celery applies it from its setup_logging
# signal; uvicorn's loggers are routed to it too.
LOGGING_CONFIG = "infatium.logging.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "infatium.logging.ContextFilter"},
        "redact": {"()": "infatium.logging.RedactFilter"},
    },
    "formatters": {
        "json": {"()": "infatium.logging.JsonFormatter"},
        "text": {"()": "infatium.logging.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default handlers would print its records a second time.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.db.backends": {"level": "INFO"},
        # uvicorn set up handlers of its own before it imported Django (infatium.logging.configure
        # keeps --no-access-log). Its WebSocket lines carry ?ticket=, redacted here.
        "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

raise_collected_errors()

if SENTRY_DSN:
    from infatium.sentry import init_sentry

    init_sentry(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )
