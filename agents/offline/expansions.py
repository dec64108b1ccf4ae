"""Generic query expansions for description words: abbreviations, regions, spelling variants.

Deliberately small and domain-neutral: what any reader knows a word covers. A description word
(lower case) maps to alternatives that also count as a match, at EXPANSION_FACTOR of the word
itself (see relevance.py). Topic synonyms are left to the LLM path.
"""

from __future__ import annotations

_AFRICA = """
algeria angola benin botswana burkina burundi cameroon chad congo djibouti egypt eritrea
eswatini ethiopia gabon gambia ghana guinea ivory kenya lesotho liberia libya madagascar malawi
mali mauritania mauritius morocco mozambique namibia niger nigeria rwanda senegal sierra
somalia sudan tanzania togo tunisia uganda zambia zimbabwe african sahel maghreb
"""
_EUROPE = """
albania austria belgium bosnia bulgaria croatia cyprus czech czechia denmark estonia finland
france germany greece hungary iceland ireland italy latvia lithuania luxembourg malta moldova
montenegro netherlands norway poland portugal romania serbia slovakia slovenia spain sweden
switzerland ukraine britain england scotland wales european eurozone french german italian
spanish dutch swiss swedish norwegian danish polish
"""
_ASIA = """
china india japan korea indonesia vietnam thailand malaysia philippines singapore pakistan
bangladesh taiwan mongolia cambodia laos myanmar nepal sri lanka kazakhstan uzbekistan asian
chinese indian japanese korean
"""
_LATIN_AMERICA = """
mexico brazil argentina chile colombia peru venezuela ecuador bolivia paraguay uruguay cuba
guatemala honduras nicaragua panama
"""


_OPINION = (
    "op-ed",
    "editorial",
    "column",
    "columnist",
    "commentary",
    "letters",
    "review",
    "satire",
)


def _words(block: str) -> tuple[str, ...]:
    return tuple(block.split())


EXPANSIONS: dict[str, tuple[str, ...]] = {
    # Abbreviations, both ways.
    "eu": ("european union", "european commission", "european parliament", "brussels"),
    "us": ("usa", "united states", "america", "american", "washington"),
    "usa": ("us", "united states", "america", "american", "washington"),
    "uk": ("united kingdom", "britain", "british"),
    "ai": ("artificial intelligence",),
    "ml": ("machine learning",),
    "ev": ("electric vehicle", "electric car"),
    "evs": ("electric vehicle", "electric car"),
    "un": ("united nations",),
    "nato": ("north atlantic treaty organization",),
    # Regions to their countries and adjectives.
    "africa": _words(_AFRICA),
    "europe": _words(_EUROPE),
    "asia": _words(_ASIA),
    "latin": _words(_LATIN_AMERICA),
    # Spelling variants (British / American).
    "rumour": ("rumor", "gossip", "speculation", "unconfirmed"),
    "rumours": ("rumors", "gossip", "speculation", "unconfirmed"),
    "rumor": ("rumour", "gossip", "speculation", "unconfirmed"),
    "rumors": ("rumours", "gossip", "speculation", "unconfirmed"),
    "defence": ("defense",),
    "defense": ("defence",),
    "colour": ("color",),
    "organisation": ("organization",),
    "organization": ("organisation",),
    # Kinds of news item. Opinion is what a newspaper's opinion pages carry: editorials,
    # columns, op-eds, commentary, letters to the editor, reviews and satire.
    "opinion": _OPINION,
    "opinions": _OPINION,
    "advert": ("advertisement", "sponsored", "promo"),
    "ads": ("advertisement", "sponsored", "promo"),
}
