"""Load the Hypothesis profile (tests/fuzz/profiles.py) before any property runs."""

from tests.fuzz import profiles  # noqa: F401
