from __future__ import annotations

from processing.dedup import Signature, exact_hash, signature

WIRE = (
    "Twelve coastal cities agreed on Monday to pool tide gauges and climate models into one "
    "public flood warning network, officials said, with the first alerts expected next spring "
    "after a pilot in three harbours."
)
EDITED = (
    "Twelve coastal cities agreed on Monday to pool tide gauges and climate models into a "
    "single public flood warning network, officials said, with the first alerts expected next "
    "spring after a pilot in three harbours. (Reporting by the desk)"
)
OTHER = (
    "The central bank held its main interest rate at 3.5 percent for a fourth meeting in a row, "
    "citing sticky services inflation and a labour market that is still tight."
)


def test_it_gives_texts_that_differ_in_case_and_punctuation_one_exact_hash():
    assert exact_hash("Flood network", WIRE) == exact_hash("FLOOD network!", WIRE.upper())
    assert exact_hash("Flood network", WIRE) != exact_hash("Flood network", EDITED)


def test_it_finds_an_edited_copy_similar_and_an_unrelated_story_not():
    a, b, c = (
        signature("Flood network", WIRE),
        signature("Cities build flood alerts", EDITED),
        (signature("Rates on hold", OTHER)),
    )
    assert a is not None and b is not None and c is not None

    assert a.similarity(b) >= 0.5
    assert a.similarity(c) < 0.2
    assert set(a.bands()) & set(b.bands())
    assert not set(a.bands()) & set(c.bands())


def test_it_round_trips_a_signature_and_skips_very_short_posts():
    sig = signature("Flood network", WIRE)
    assert sig is not None
    assert Signature.from_hex(sig.to_hex()) == sig
    assert signature("Breaking", "More soon") is None
