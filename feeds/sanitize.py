"""The one HTML sanitizer: an allow-list for feed content, and plain-text extraction."""

from __future__ import annotations

import html as html_lib
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
_cleaner = nh3.Cleaner(
    tags=_TAGS,
    attributes=_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    clean_content_tags={"script", "style"},
)
_text_cleaner = nh3.Cleaner(tags=set(), clean_content_tags={"script", "style"})
_BLOCK_END = re.compile(r"</(p|div|li|h[1-6]|blockquote|tr|pre)>|<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def sanitize_html(fragment: str) -> str:
    """Keep only allow-listed tags, attributes and URL schemes; drop scripts with their text."""
    return _cleaner.clean(fragment) if fragment else ""


def html_to_text(fragment: str) -> str:
    """Readable plain text: tags removed, entities decoded, paragraphs kept as line breaks."""
    if not fragment:
        return ""
    with_breaks = _BLOCK_END.sub(lambda m: m.group(0) + "\n", fragment)
    text = html_lib.unescape(_text_cleaner.clean(with_breaks))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
