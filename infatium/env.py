"""Typed readers for environment variables.

Every setting comes from the environment (12-factor). Each reader fails loudly with a message
that names the variable and says what a good value looks like; `collect_errors` gathers all of
them so one start-up shows every bad value at once instead of one per attempt.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_errors: list[str] = []

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    """Value of NAME, or the content of the file named by NAME_FILE (for secrets)."""
    value = os.environ.get(name)
    if value is not None:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            _errors.append(f"{name}_FILE: cannot read {file_name!r}: {exc.strerror}")
    return None


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    _errors.append(f"{name}={value!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")
    return default


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        _errors.append(f"{name}={value!r} is not an integer")
        return default
    if minimum is not None and number < minimum:
        _errors.append(f"{name}={number} is below the minimum of {minimum}")
        return default
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None or not value.strip():
        return default
    try:
        number = float(value.strip())
    except ValueError:
        _errors.append(f"{name}={value!r} is not a number")
        return default
    if minimum is not None and number < minimum:
        _errors.append(f"{name}={number} is below the minimum of {minimum}")
        return default
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    """A URL whose scheme is one of `schemes` and that names a host (or a path for sqlite)."""
    value = env_str(name, default)
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        _errors.append(
            f"{name}={_redact(value)!r} has scheme {parts.scheme or '(none)'!r}; "
            f"expected one of {', '.join(schemes)}"
        )
        return default
    if parts.scheme != "sqlite" and not parts.hostname:
        _errors.append(f"{name}={_redact(value)!r} names no host")
        return default
    return value


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def add_error(message: str) -> None:
    _errors.append(message)


def raise_collected_errors() -> None:
    """Raise one ImproperlyConfigured listing every bad value seen so far."""
    if _errors:
        lines = "\n  - ".join(_errors)
        _errors.clear()
        raise ImproperlyConfigured(f"Invalid configuration:\n  - {lines}")
