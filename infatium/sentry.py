"""Error reporting to Sentry, or to GlitchTip (which accepts the same SDK and DSN).

Started from settings when SENTRY_DSN is set, so every process that loads the settings (web,
worker, beat, bridge, gateway) reports: Django requests, Celery tasks and Redis calls through the
SDK's integrations. No personal data is sent (send_default_pii off, no request bodies), and every
event passes through the logs' redaction before it leaves the process.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from infatium.logging import current_context, redact_data

BASE_DIR = Path(__file__).resolve().parent.parent


def init_sentry(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.redis import RedisIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release or default_release(),
        integrations=[DjangoIntegration(), CeleryIntegration(), RedisIntegration()],
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        # Form and JSON bodies hold passwords, descriptions, OPML files: never sent.
        max_request_body_size="never",
        before_send=before_send,
        before_send_transaction=before_send,
        before_breadcrumb=before_breadcrumb,
    )


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Redact the event like a log line, and tag it with the ids in the log context (the
    request id a client sees in X-Request-ID, the task id, the source id)."""
    event = redact_data(event)
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = {}
    for key, value in current_context().items():
        tags.setdefault(key, str(value))
    return event


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = redact_data(crumb)
    return result


def default_release() -> str:
    """`infatium@<commit>` when this is a git checkout (the image copies .git), else
    `infatium@<version>` from pyproject.toml."""
    commit = git_commit(BASE_DIR / ".git")
    if commit:
        return f"infatium@{commit[:12]}"
    try:
        version = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        version = "unknown"
    return f"infatium@{version}"


def git_commit(git: Path) -> str:
    """The commit HEAD points at, read from the files (no git binary); '' when unreadable."""
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (git.parent / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head if _is_sha(head) else ""
        ref = head.split(":", 1)[1].strip()
        for root in (git, _common_dir(git)):
            loose = root / ref
            if loose.is_file():
                sha = loose.read_text().strip()
                return sha if _is_sha(sha) else ""
            packed = root / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    sha, _, name = line.partition(" ")
                    if name == ref and _is_sha(sha):
                        return sha
    except (OSError, IndexError):
        pass
    return ""


def _common_dir(git: Path) -> Path:
    try:
        return (git / (git / "commondir").read_text().strip()).resolve()
    except OSError:
        return git


def _is_sha(value: str) -> bool:
    return len(value) in (40, 64) and all(c in "0123456789abcdef" for c in value)
