"""Infatium settings: environment variables only, validated at import.

Every variable is listed with one line of explanation in `.env.example`. A bad value stops
start-up with a message that names it; all bad values are reported together.
"""

from __future__ import annotations

import logging
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
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "feeds",
    "processing",
    "agents",
    "realtime",
]

MIDDLEWARE = [
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
ASGI_APPLICATION = "infatium.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
# Static files (the admin's) are served by WhiteNoise from the ASGI server itself; in DEBUG
# straight from the apps, in production from STATIC_ROOT after `collectstatic`.
WHITENOISE_USE_FINDERS = DEBUG
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
    "processing.tasks.*": {"queue": "process"},
    "agents.tasks.*": {"queue": "agents"},
}
# A time limit on every task: a hung socket or parser can never hold a worker slot forever.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 150, minimum=2)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower shows tasks live
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

POLL_DISPATCH_SECONDS = env_float("POLL_DISPATCH_SECONDS", 5.0, minimum=0.1)
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
        "schedule": 60.0,
        "options": {"expires": 60.0},
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
            # Per-connection backlog before group_send drops (channels_redis default is 100).
            "capacity": env_int("WS_CHANNEL_CAPACITY", 1000, minimum=10),
            "expiry": 60,
            "group_expiry": 3600,
        },
    },
}

# --- Polling and fetching ---------------------------------------------------------------
FETCH_TIMEOUT_SECONDS = env_float("FETCH_TIMEOUT_SECONDS", 20.0, minimum=0.1)
FETCH_MAX_BYTES = env_int("FETCH_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
FETCH_USER_AGENT = env_str(
    "FETCH_USER_AGENT", "Infatium/0.1 (+https://github.com/infatium/infatium; feed fetcher)"
)
POLL_DEFAULT_INTERVAL_SECONDS = env_int("POLL_DEFAULT_INTERVAL_SECONDS", 900, minimum=1)
POLL_MAX_INTERVAL_SECONDS = env_int("POLL_MAX_INTERVAL_SECONDS", 6 * 3600, minimum=1)
POLL_DISPATCH_BATCH = env_int("POLL_DISPATCH_BATCH", 200, minimum=1)
# How long a claimed poll may run before the dispatcher treats it as lost and polls again.
POLL_LEASE_SECONDS = CELERY_TASK_TIME_LIMIT + 30
# Raw posts whose processing did not finish (lost task, killed worker) are re-queued after this.
PROCESS_RETRY_AFTER_SECONDS = env_int("PROCESS_RETRY_AFTER_SECONDS", 120, minimum=1)
FEED_BACKFILL_LIMIT = env_int("FEED_BACKFILL_LIMIT", 50, minimum=0)

# --- Optional services ------------------------------------------------------------------
NATS_URL = env_url("NATS_URL", "", schemes=("nats", "tls", "ws", "wss"))
SENTRY_DSN = env_str("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in logging.getLevelNamesMapping():
    add_error(f"LOG_LEVEL={LOG_LEVEL!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    LOG_LEVEL = "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

raise_collected_errors()

if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
    )
