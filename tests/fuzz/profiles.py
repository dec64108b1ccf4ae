"""Hypothesis profiles for tests/fuzz.

- "ci" (the default): derandomized (the same examples on every run, so a red build is
  reproducible and never flaky), no example database, bounded example counts: the whole of
  tests/fuzz runs in well under a minute.
- "deep": random, thousands of examples per property, failures kept in var/hypothesis (and
  replayed first on the next run). For running by hand, e.g. overnight:

      HYPOTHESIS_PROFILE=deep .venv/bin/pytest --timeout=0 -x tests/fuzz

  (--timeout=0 lifts pytest-timeout's per-test limit from pyproject.toml.)

Properties ask for `scaled(n)` examples: n under "ci", DEEP_FACTOR times more under "deep".
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

DEEP_FACTOR = 50
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # Hostile documents are big by design; generation time is not what these tests measure.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    deadline=None,
    database=DirectoryBasedExampleDatabase("var/hypothesis"),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(PROFILE)


def scaled(examples: int) -> int:
    """Examples for one property: `examples` in CI, many more in the deep profile."""
    return examples * DEEP_FACTOR if PROFILE == "deep" else examples
