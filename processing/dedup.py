"""Exact and near-duplicate detection for raw posts (pure functions, no database).

Exact duplicates share a hash of their normalized text. Near duplicates (the same wire story
lightly edited by two outlets) are found with MinHash over word shingles and LSH banding: two
texts whose shingle sets have Jaccard similarity s share at least one band with probability
1 - (1 - s^ROWS)^BANDS (about 0.98 at s = 0.6 and 0.05 at s = 0.2 with 16 bands of 4 rows),
and a candidate is then confirmed by the estimated similarity itself.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

NUM_PERM = 64
BANDS = 16
ROWS = NUM_PERM // BANDS
SHINGLE = 3
# Posts at least this similar are one story.
NEAR_DUPLICATE_SIMILARITY = 0.5
_WORD = re.compile(r"\w+", re.UNICODE)


def _permutations() -> list[int]:
    # One random 64-bit mask per "permutation": min over (hash XOR mask) is a cheap MinHash
    # family (a C-level map per mask). Fixed seeds: signatures must stay comparable across
    # processes and releases.
    return [
        int.from_bytes(hashlib.sha256(f"infatium-minhash-{i}".encode()).digest()[:8], "little")
        for i in range(NUM_PERM)
    ]


_PERMS = _permutations()


def normalize(text: str) -> str:
    """Lowercase, accents folded, punctuation and spacing removed: what "the same text" means."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(stripped))


def exact_hash(title: str, text: str) -> str:
    return hashlib.sha256(normalize(f"{title}\n{text}").encode()).hexdigest()


def _shingles(normalized: str) -> set[int]:
    words = normalized.split()
    if len(words) < SHINGLE:
        grams = [" ".join(words)] if words else []
    else:
        grams = [" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)]
    return {
        int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") for g in grams
    }


@dataclass(frozen=True)
class Signature:
    values: tuple[int, ...]

    def bands(self) -> list[str]:
        """One hash per LSH band, prefixed by the band index so bands never collide."""
        out = []
        for band in range(BANDS):
            chunk = self.values[band * ROWS : (band + 1) * ROWS]
            digest = hashlib.blake2b(repr(chunk).encode(), digest_size=8).hexdigest()
            out.append(f"{band:02d}:{digest}")
        return out

    def similarity(self, other: Signature) -> float:
        same = sum(1 for a, b in zip(self.values, other.values, strict=True) if a == b)
        return same / NUM_PERM

    def to_hex(self) -> str:
        return "".join(f"{v:016x}" for v in self.values)

    @classmethod
    def from_hex(cls, data: str) -> Signature:
        return cls(tuple(int(data[i : i + 16], 16) for i in range(0, len(data), 16)))


def signature(title: str, text: str) -> Signature | None:
    """MinHash signature of a post, or None when it has too few words to compare safely."""
    normalized = normalize(f"{title}\n{text}")
    if len(normalized.split()) < 8:
        # Very short posts ("Breaking:", a single link) would merge unrelated items.
        return None
    shingles = _shingles(normalized)
    return Signature(tuple(min(map(mask.__xor__, shingles)) for mask in _PERMS))
