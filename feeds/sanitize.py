"""The one HTML sanitizer: an allow-list for feed content, and plain-text extraction.

Feed parsing needs both for every entry; `clean_fragment` gives both from one nh3 pass. Its
text is exactly `html_to_text`'s: the text is hashed to tell edited entries, so it must not
change with the code path that made it.
"""

from __future__ import annotations

import re

import nh3

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "q", "s", "small",
    "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
_OPTIONS: dict[str, object] = {
    "tags": _TAGS,
    "attributes": _ATTRIBUTES,
    "url_schemes": {"http", "https", "mailto"},
    "link_rel": "noopener noreferrer nofollow",
    "clean_content_tags": {"script", "style"},
}
_cleaner = nh3.Cleaner(**_OPTIONS)  # type: ignore[arg-type]
_text_cleaner = nh3.Cleaner(tags=set(), clean_content_tags={"script", "style"})
# One cleaner per base URL that relative links and images are resolved against; a feed has one
# or two. Bounded, since the bases come from the documents.
_based_cleaners: dict[str, nh3.Cleaner] = {}
_MAX_BASED_CLEANERS = 256

# </p>, </div>, </li>, </h1>-</h6>, </blockquote>, </tr>, </pre> and <br> in any letter case.
# Spelled without re.IGNORECASE, which makes this scan of every fragment about twice as fast.
_BLOCK_END = re.compile(
    r"(<(?:/(?:[pP]|[dD][iI][vV]|[lL][iI]|[hH][1-6]|[bB][lL][oO][cC][kK][qQ][uU][oO][tT][eE]"
    r"|[tT][rR]|[pP][rR][eE])>|[bB][rR]\s*/?>))"
)
_BLANK_LINES = re.compile("\n\n\n+")
_DOUBLE_SPACES = re.compile("   *")
_SPACES_BUT_SPACE = re.compile(r"[\t\r\f\v]")
# A tag as nh3 (html5ever) writes it: attribute values in double quotes, and "<" in text
# always escaped, so this finds every tag of its output and nothing else.
_SERIALIZED_TAG = re.compile(r'<[^>"]*(?:"[^"]*"[^>"]*)*>')
_MARK = "\x0c"  # form feed: see clean_fragment
# Text in which nh3 would change nothing but whitespace: no markup, no entities, no CR (the
# HTML parser reads it as a line break), no NUL, no byte order mark (dropped at the start).
_MARKUP = re.compile("[<&\r\x00\ufeff]")


def sanitize_html(fragment: str, *, base_url: str = "") -> str:
    """Keep only allow-listed tags, attributes and URL schemes; drop scripts with their text.
    Relative link and image URLs are resolved against `base_url` when it is an http(s) URL."""
    # html5ever drops one byte order mark at the start: dropping them all keeps this idempotent.
    fragment = fragment.lstrip("\ufeff") if fragment else ""
    return _cleaner_for(base_url).clean(fragment) if fragment else ""


def html_to_text(fragment: str) -> str:
    """Readable plain text: tags removed, entities decoded, paragraphs kept as line breaks."""
    if not fragment:
        return ""
    if not _MARKUP.search(fragment):
        return _normalize_text(fragment)
    return _normalize_text(_text_cleaner.clean(_with_breaks(fragment)))


def clean_fragment(fragment: str, *, base_url: str = "") -> tuple[str, str]:
    """(HTML, text) of a fragment in one nh3 pass instead of two. The text equals
    `html_to_text(fragment)`. The HTML is `sanitize_html(fragment, base_url=base_url)` without
    whitespace around it; where the markup is misnested the HTML parser may re-open formatting
    elements at other points, which renders the same."""
    fragment = fragment.lstrip("\ufeff") if fragment else ""  # as in sanitize_html
    if not fragment:
        return "", ""
    if not _MARKUP.search(fragment) and _MARK not in fragment:
        # Plain text: nh3 would only escape it (html5ever escapes ">" and no-break spaces in
        # text; "&", "<" and CR are not there).
        html = fragment.replace(">", "&gt;").replace("\xa0", "&nbsp;")
        return html.strip(), _normalize_text(fragment)
    if _MARK in fragment:
        return sanitize_html(fragment, base_url=base_url).strip(), html_to_text(fragment)
    # html_to_text puts a line break after each block end before parsing. A form feed instead
    # is the same to the HTML parser (both are ASCII whitespace), and as no other form feed is
    # in the fragment, it can be told apart afterwards: dropped from the HTML, a line break in
    # the text. Taking the tags out of the sanitized HTML gives what the text cleaner gives:
    # the same parse, the same removals, with the allowed tags left in.
    marked = _cleaner_for(base_url).clean(_with_breaks(fragment, _MARK))
    text = _normalize_text(_SERIALIZED_TAG.sub("", marked).replace(_MARK, "\n"))
    return marked.replace(_MARK, "").strip(), text


def _with_breaks(fragment: str, mark: str = "\n") -> str:
    """`mark` after each block end (the split is faster than a template in re.sub)."""
    parts = _BLOCK_END.split(fragment)
    parts[1::2] = [tag + mark for tag in parts[1::2]]
    return "".join(parts)


def _normalize_text(cleaned: str) -> str:
    """html_to_text's clean-up of the text cleaner's output: each line's runs of spaces, tabs,
    CR, FF and VT become one space and the line is stripped; runs of blank lines become one.
    Spelled with str methods and regular expressions that start with a literal (which the
    regex engine finds with a fast search), in an order that gives the same text: scanning
    every character with a character class costs several times more on long text."""
    text = _unescape_serialized(cleaned) if "&" in cleaned else cleaned
    if "\n" not in text and "  " not in text and not _SPACES_BUT_SPACE.search(text):
        return text.strip()  # one line, single spaces: only the stripping is left to do
    for space in "\t\r\f\v":
        if space in text:
            text = text.replace(space, " ")
    if "\n" in text:
        # Stripping each line first leaves only runs inside lines, which are rare.
        text = "\n".join([line.strip() for line in text.split("\n")])
        if "\n\n\n" in text:
            text = _BLANK_LINES.sub("\n\n", text)
    if "  " in text:
        text = _DOUBLE_SPACES.sub(" ", text)
    return text.strip()


def _unescape_serialized(text: str) -> str:
    """html.unescape for text as html5ever writes it (tags taken out): it escapes only "&",
    "<", ">" and the no-break space in text, so four replacements decode it, "&amp;" last.
    Faster than html.unescape, which calls back into Python for every reference."""
    return (
        text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\xa0")
        .replace("&amp;", "&")
    )


def _cleaner_for(base_url: str) -> nh3.Cleaner:
    if not base_url.startswith(("http://", "https://")):
        return _cleaner
    cleaner = _based_cleaners.get(base_url)
    if cleaner is None:
        try:
            cleaner = nh3.Cleaner(**_OPTIONS, url_relative=("rewrite_with_base", base_url))  # type: ignore[arg-type]
        except ValueError:  # not a URL nh3 can join against: leave relative URLs as they are
            return _cleaner
        if len(_based_cleaners) >= _MAX_BASED_CLEANERS:
            _based_cleaners.clear()
        _based_cleaners[base_url] = cleaner
    return cleaner
