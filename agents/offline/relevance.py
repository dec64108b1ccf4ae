"""Offline relevance: BM25-style matching of a post against the feed description.

The description is read as a small query language, the way people write them:
- comma/semicolon/line/sentence-separated parts are *aspects* ("EU AI regulation, chip export
  controls"); a post needs to match one aspect well, not the whole list;
- "A: x, y, z" is one aspect: A plus any one of x, y, z ("Renewables in Africa: solar, wind");
  a parenthesis elaborates the aspect before it and counts half;
- "x and y" / "x or y" / "x/y" between two words are alternatives ("NASA and ESA",
  "vulnerabilities and breaches"): descriptions list topics, and a post is about one of them;
- "quoted phrases" match only as phrases (consecutive stems) and are required in their aspect;
- "not X", "no X", "without X", "except X", "excluding X" (X up to the next punctuation, split on
  "or"/"and"/"nor"/"/") exclude posts *about* X: X in the title or the lead, or twice anywhere;
- words that describe the feed rather than a topic ("news", "posts about", "I want") are ignored;
- a capitalized place after "in" restricts its aspect ("solar projects in Africa", "rate
  decisions in Europe and the US"): a post that names none of it keeps REQUIRED_MISSING of its
  coverage, like a post missing a quoted phrase;
- a few generic expansions widen a term: abbreviations ("EU" ~ "European Union"), regions to
  their countries ("Africa" ~ "Kenya"), spelling variants ("rumour" ~ "rumor"), kinds of item
  ("opinion" ~ "editorial", "review"). They count a little less than the word itself;
- a multi-word phrase also matches its initials written in capitals ("electric vehicles" ~
  "EVs", "artificial intelligence" ~ "AI").

An aspect's coverage is the IDF-weighted share of its terms the post contains, each term counted
through BM25's saturation (one mention in a long article counts less than one in a headline), out
of at most EVIDENCE_TERMS terms' worth: a post need not repeat every word of a long description.
The raw score blends the best aspect's coverage with the whole description's; a logistic maps it
to 0..1 with 0.5 at MIDPOINT, the decision threshold. MIDPOINT and EVIDENCE_TERMS were chosen on
five of the seven descriptions of `tests/fixtures/agents/labelled.jsonl` and checked on the other
two (`tests/agents/test_eval.py`); `manage.py eval_agents --sweep` shows other thresholds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache

from agents.offline.background import weight
from agents.offline.document import Document, document
from agents.offline.expansions import EXPANSIONS
from agents.schemas import MAX_ASPECT, MAX_ASPECTS, MAX_REASON, RelevanceOutput
from agents.text import STOPWORDS, clean, stem, wordlist, words

VERSION = "offline-relevance-3"

# Calibration: raw coverage at which the score is 0.5, and the steepness around it.
MIDPOINT = 0.35
SLOPE = 9.0
# Share of the best aspect's coverage in the raw score; the rest is the coverage of the whole
# description (a post that touches several aspects is more likely on topic).
BEST_WEIGHT = 0.7
# How many informative words of an aspect make a full match (see `strength`).
EVIDENCE_TERMS = 4
# An aspect counts as matched (reported in matched_aspects) at this coverage.
ASPECT_REPORT = 0.3
# An expansion ("Kenya" for "Africa") is good evidence, not as good as the word itself.
EXPANSION_FACTOR = 0.8
# An aspect whose quoted phrase is absent keeps this share of its coverage.
REQUIRED_MISSING = 0.25
# Weight of a parenthetical elaboration relative to the aspect it elaborates.
PARENTHESIS_WEIGHT = 0.5

# Words that say what kind of feed it is, not what it is about. Only removed from descriptions.
META_WORDS = wordlist(
    """
    news post posts article articles story stories update updates item items content feed
    feeds headline headlines coverage report reports reporting topic topics thing things
    stuff anything everything something related regarding relating concerning want wants
    wanted like interested interesting follow following track tracking keep keeping show
    give send please piece pieces especially particularly mainly mostly primarily focus
    focused focusing including include includes latest new recent current daily weekly info
    information developments development happening happenings around world general etc kind
    kinds type types various fine ok okay welcome allowed good great only mostly just
    """
)
_CONJUNCTIONS = frozenset({"and", "or", "nor", "и", "или"})
_LOCATIVES = frozenset({"in", "across", "within", "throughout", "в"})

_QUOTED = re.compile(r"\"([^\"]{1,120})\"|“([^”]{1,120})”|«([^»]{1,120})»|„([^“”]{1,120})[“”]")
_NEGATION = re.compile(
    r"(?<![\w-])(?:but\s+)?(?:not|no|without|except(?:\s+for)?|excluding|exclude|never|"
    r"(?:anything|everything)\s+(?:but|except)|other\s+than|"
    r"nothing\s+(?:about|on)|minus|ignore|ignoring|skip|avoid|кроме|без|не)"
    r"\s+(?!only\b|just\b|necessarily\b|longer\b|matter\b|least\b|more\b|less\b|later\b)"
    r"(?:(?:about|any|on|the|of|posts?\s+about|news\s+about)\s+)*"
    r"(?P<span>[^,.;:!?\n()\[\]]+)",
    re.IGNORECASE,
)
_CLAUSES = re.compile(r"[;\n•|]+|[.!?](?:\s+|$)")
_PARENTHESIS = re.compile(r"\(([^()]*)\)|\[([^\[\]]*)\]")
_SPLIT_EXCLUSIONS = re.compile(r"\s+(?:or|and|nor|или|и)\s+|/|&", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_TOKENS = re.compile(r"\x00\d+\x00|[^\W_]+")
# A negation span stops where a new positive clause starts ("no ads but reviews are fine").
# (The Russian words are "but".)
_SPAN_STOP = re.compile(
    r"\s+(?:but|though|although|however|yet|unless|а|но)\s+",  # noqa: RUF001
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Node:
    """A query tree: `term`/`phrase` leaves; `all` (weighted average of its children) and
    `any` (best child). `label` is the description's own wording, for reasons."""

    kind: str
    label: str
    weight: float
    stems: tuple[str, ...] = ()
    children: tuple[Node, ...] = ()
    factor: float = 1.0
    required: bool = False
    # The initials a multi-word phrase is abbreviated to ("electric vehicles" -> "ev"); a post
    # that writes them in capitals ("EVs") matches the phrase.
    acronym: str = ""


def _leaf(token: str, language: str) -> Node:
    return Node("term", token, weight(token, language or "en"), stems=(stem(token, language),))


def _phrase(text: str, language: str, *, factor: float = 1.0, required: bool = False) -> Node:
    tokens = [t for t in words(text) if t not in STOPWORDS] or words(text)
    stems = tuple(stem(t, language) for t in tokens)
    # A phrase is worth its words together, but never more than twice its rarest word: long
    # quoted titles should not drown the rest of the aspect.
    w = sum(weight(t, language or "en") for t in tokens)
    w = min(w, 2 * max(weight(t, language or "en") for t in tokens)) if tokens else 0.0
    kind = "phrase" if len(stems) > 1 else "term"
    acronym = "".join(t[0] for t in tokens) if 2 <= len(tokens) <= 6 else ""
    return Node(
        kind,
        " ".join(text.split()),
        w,
        stems=stems,
        factor=factor,
        required=required,
        acronym=acronym,
    )


def _expanded(token: str, language: str) -> Node:
    leaf = _leaf(token, language)
    extra = EXPANSIONS.get(token)
    if not extra:
        return leaf
    alternatives = [leaf] + [
        _phrase(e, language, factor=EXPANSION_FACTOR) for e in extra if words(e)
    ]
    return Node("any", token, leaf.weight, children=tuple(alternatives))


def _either(left: Node, right: Node) -> Node:
    """Merge two alternatives ("NASA and ESA"), flattening nested choices."""
    parts = (left.children if left.kind == "any" and left.label.startswith("(") else (left,)) + (
        right,
    )
    label = "(" + " / ".join(p.label for p in parts) + ")"
    return Node("any", label, sum(p.weight for p in parts) / len(parts), children=parts)


def _is_content(token: str) -> bool:
    lowered = token.lower()
    if token.isupper() and len(token) > 1:
        return True  # "US", "IT", "WHO": acronyms, not the stopwords they spell
    return (
        lowered not in STOPWORDS
        and lowered not in META_WORDS
        and (len(lowered) > 1 or lowered.isdigit())
    )


def _units(text: str, quoted: list[str], language: str) -> list[Node]:
    """The content units of a clause, with "x and y" merged into alternatives. A place after
    "in" ("… in Africa", "… in Europe and the US") restricts the aspect: it is required."""
    units: list[Node] = []
    pending_choice = False
    locative = False  # just after "in"/"across"/…: a capitalized word next is a place
    place = False  # the last unit is such a place (alternatives joined to it stay required)
    for token in _TOKENS.findall(text.replace("&", " and ").replace("/", " or ")):
        held = _PLACEHOLDER.fullmatch(token)
        if held:
            unit = _phrase(quoted[int(held.group(1))], language, required=True)
        elif token.lower() in _CONJUNCTIONS:
            pending_choice = bool(units)
            continue
        elif token.lower() in _LOCATIVES:
            locative = True
            continue
        elif not _is_content(token):
            continue
        else:
            unit = _expanded(token.lower(), language)
            if locative and token[0].isupper():
                unit = replace(unit, required=True)
        if pending_choice and units and place:
            units[-1] = replace(_either(units[-1], unit), required=True)
        elif pending_choice and units and not unit.required and not units[-1].required:
            units[-1] = _either(units[-1], unit)
        else:
            units.append(unit)
            place = locative and unit.required and not held
        pending_choice = False
        locative = False
    return units


def _all(label: str, children: list[Node]) -> Node | None:
    if not children:
        return None
    label = _trim(label)[:MAX_ASPECT]
    return Node("all", label, sum(c.weight for c in children), children=tuple(children))


def _trim(label: str) -> str:
    """The label without placeholders and leading/trailing filler: "I want posts about climate
    change" -> "climate change"."""
    parts = _PLACEHOLDER.sub('"…"', label).split()

    def filler(part: str) -> bool:
        return all(not _is_content(w) for w in re.findall(r"[^\W_]+", part))

    while parts and filler(parts[0]):
        parts.pop(0)
    while parts and filler(parts[-1]):
        parts.pop()
    return " ".join(parts)


@dataclass(frozen=True)
class Query:
    aspects: tuple[Node, ...]
    exclusions: tuple[Node, ...]

    @property
    def empty(self) -> bool:
        return not self.aspects and not self.exclusions


def _restore(text: str, quoted: list[str]) -> str:
    return _PLACEHOLDER.sub(lambda m: f'"{quoted[int(m.group(1))]}"', text)


@lru_cache(maxsize=1024)
def parse_description(description: str, language: str = "") -> Query:
    """The description as aspects and exclusions (memoised: one feed, many posts)."""
    text = clean(description)
    quoted: list[str] = []

    def hold(match: re.Match[str]) -> str:
        quoted.append(next(g for g in match.groups() if g is not None))
        return f"\x00{len(quoted) - 1}\x00"

    text = _QUOTED.sub(hold, text)

    exclusions: list[Node] = []

    def exclude(match: re.Match[str]) -> str:
        span = _SPAN_STOP.split(match.group("span"), maxsplit=1)
        rest = f" , {span[1]}" if len(span) > 1 else ""
        for part in _SPLIT_EXCLUSIONS.split(span[0]):
            node = _all(_restore(part, quoted), _units(part, quoted, language))
            if node is not None:
                exclusions.append(node)
        return " , " + rest

    text = _NEGATION.sub(exclude, text)

    aspects: list[Node] = []
    for clause in _CLAUSES.split(text):
        # Parenthetical elaborations, attached to the aspect they follow.
        notes = [m.group(1) or m.group(2) or "" for m in _PARENTHESIS.finditer(clause)]
        clause = _PARENTHESIS.sub(" ", clause)
        head, colon, tail = clause.partition(":")
        if colon and tail.strip():
            items = [_all(i, _units(i, quoted, language)) for i in tail.split(",")]
            choice = [i for i in items if i is not None]
            units = _units(head, quoted, language)
            if choice:
                units.append(
                    choice[0]
                    if len(choice) == 1
                    else Node(
                        "any",
                        "(" + " / ".join(c.label for c in choice) + ")",
                        sum(c.weight for c in choice) / len(choice),
                        children=tuple(choice),
                    )
                )
            node = _all(_restore(head, quoted), units)
            found = [node] if node is not None else []
        else:
            parts = [
                _all(_restore(p, quoted), _units(p, quoted, language)) for p in clause.split(",")
            ]
            found = [p for p in parts if p is not None]
        extra = [u for n in notes for u in _units(n, quoted, language)]
        if found and extra:
            last = found[-1]
            weight_ = sum(u.weight for u in extra) * PARENTHESIS_WEIGHT
            note = Node("all", _trim(" ".join(notes)), weight_, children=tuple(extra))
            children = (*last.children, note)
            found[-1] = Node("all", last.label, last.weight + weight_, children=children)
        aspects.extend(found)
    return Query(aspects=tuple(aspects), exclusions=tuple(exclusions))


# --- Scoring ---------------------------------------------------------------------------------


def strength(node: Node, doc: Document) -> float:
    """How well the post matches a query node, 0..1."""
    if node.kind == "term":
        return node.factor * doc.term_strength(node.stems[0])
    if node.kind == "phrase":
        value = doc.phrase_strength(node.stems)
        if node.acronym:
            value = max(value, doc.acronym_strength(node.acronym))
        return node.factor * value
    values = [strength(child, doc) for child in node.children]
    if node.kind == "any":
        return max(values, default=0.0)
    total = sum(c.weight for c in node.children) or 1.0
    # Full marks need about EVIDENCE_TERMS of the aspect's words (of average weight), however
    # many the description lists: a long description names ways to say what is wanted, and a
    # post about it uses some of them; a short one names what a post must all be about.
    total = min(total, EVIDENCE_TERMS * total / len(node.children))
    value = min(1.0, sum(c.weight * v for c, v in zip(node.children, values, strict=True)) / total)
    if any(c.required and v == 0 for c, v in zip(node.children, values, strict=True)):
        value *= REQUIRED_MISSING
    return value


def _present(node: Node, doc: Document, *, lead_only: bool) -> float:
    """Occurrences of a node's wording (exact stems; all children of an `all` node). Initials
    count anywhere, not as the lead (their position is not kept)."""
    if node.kind in ("term", "phrase"):
        count = doc.phrase_count(node.stems, lead_only=lead_only)
        if node.acronym and not lead_only:
            count = max(count, doc.acronyms[node.acronym])
        return count
    values = [_present(child, doc, lead_only=lead_only) for child in node.children]
    if node.kind == "any":
        return max(values, default=0.0)
    return min(values, default=0.0)


def _excluded_by(query: Query, doc: Document) -> Node | None:
    """The exclusion the post is about: in the title or lead, or at least twice anywhere."""
    for exclusion in query.exclusions:
        if (
            _present(exclusion, doc, lead_only=True)
            or _present(exclusion, doc, lead_only=False) >= 2
        ):
            return exclusion
    return None


def _found(node: Node, doc: Document, hit: list[str], miss: list[str]) -> None:
    """Split the aspect's top-level parts into matched and missing wording, for the reason."""
    for child in node.children if node.kind == "all" else (node,):
        (hit if strength(child, doc) > 0 else miss).append(child.label)


def calibrate(raw: float) -> float:
    return 1.0 / (1.0 + math.exp(-SLOPE * (raw - MIDPOINT)))


def score(*, title: str, text: str, description: str, language: str = "") -> RelevanceOutput:
    """Relevance of a post to a description; `relevant` is `score >= 0.5`."""
    query = parse_description(description, language)
    doc = document(title, text, language)
    if doc.empty:
        return RelevanceOutput(relevant=False, score=0.0, reason="The post has no text.")
    excluded = _excluded_by(query, doc)
    if excluded is not None:
        return RelevanceOutput(
            relevant=False,
            score=0.0,
            reason=_cut(f"Excluded by the description: the post is about '{excluded.label}'."),
        )
    if not query.aspects:
        reason = (
            "The feed has no description, so every post matches."
            if query.empty
            else "Not excluded, and the description names no required topic."
        )
        return RelevanceOutput(relevant=True, score=1.0, reason=reason)

    scored = sorted(((strength(a, doc), a) for a in query.aspects), key=lambda s: -s[0])
    best_cov = scored[0][0]
    total = sum(a.weight for a in query.aspects)
    overall = sum(cov * a.weight for cov, a in scored) / total
    raw = BEST_WEIGHT * best_cov + (1 - BEST_WEIGHT) * overall
    value = round(calibrate(raw), 4)
    matched = [a.label for cov, a in scored if cov >= ASPECT_REPORT][:MAX_ASPECTS]
    return RelevanceOutput(
        relevant=value >= 0.5,
        score=value,
        reason=_reason(scored, doc, value),
        matched_aspects=matched,
    )


def _reason(scored: list[tuple[float, Node]], doc: Document, value: float) -> str:
    cov, aspect = scored[0]
    hit: list[str] = []
    miss: list[str] = []
    _found(aspect, doc, hit, miss)
    if not hit:
        return _cut("None of the description's terms appear in the post.")
    verdict = "Matches" if value >= 0.5 else "Weak match for"
    text = f"{verdict} '{aspect.label}' ({cov:.0%} of its weight): found {', '.join(hit)}"
    if miss:
        text += f"; missing {', '.join(miss)}"
    others = [a.label for c, a in scored[1:] if c >= ASPECT_REPORT]
    if others:
        text += f". Also matches: {'; '.join(others)}"
    return _cut(text + ".")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
