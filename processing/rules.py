"""A feed's keyword rules: include (any of) and exclude (none of), on title and text."""

from __future__ import annotations

import re
from dataclasses import dataclass


def _compile(lines: str) -> re.Pattern[str] | None:
    words = sorted({line.strip() for line in lines.splitlines() if line.strip()}, key=len)
    if not words:
        return None
    # Whole words or phrases, case-insensitive; \w-boundaries work for any script.
    alternatives = "|".join(re.escape(word) for word in reversed(words))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Rules:
    include: re.Pattern[str] | None
    exclude: re.Pattern[str] | None

    @classmethod
    def from_text(cls, *, include: str, exclude: str) -> Rules:
        return cls(include=_compile(include), exclude=_compile(exclude))

    def matches(self, *, title: str, text: str) -> bool:
        haystack = f"{title}\n{text}"
        if self.exclude is not None and self.exclude.search(haystack):
            return False
        return self.include is None or self.include.search(haystack) is not None
