"""Web page sources: a listing page whose article links become entries, each article read once.

A poll fetches the listing (conditional GET), finds its article links (the source's CSS
`link_selector`, else the heuristic in `find_article_links`), asks `known` which of them are
stored already, and fetches at most WEB_MAX_FETCHES_PER_POLL of the others; their main text is
extracted by trafilatura (offline: it only ever sees the tree we parsed), or taken from the
source's `content_selector`. The rest wait for the next poll.

Guarantees:
- The same link always gives the same external id (`clean_link` of the absolute link, without
  its fragment), so an article stored (or purged) is never fetched again.
- An article whose fetch fails (HTTP error, timeout, blocked address) is skipped with a warning;
  the poll succeeds with the others and a later poll tries it again, up to
  WEB_ARTICLE_MAX_ATTEMPTS polls in all; then it is kept as its title and link, so an article
  that never loads is not fetched on every poll for ever. An article with no text to
  extract, too large to fetch, or with too many elements to extract from in bounded time,
  becomes an entry with its title and link and no text.
- While articles are left for later, the listing's validators are not kept, so the next poll
  reads the listing again instead of getting a 304 and forgetting them.
- Stored HTML is sanitized (`feeds.sanitize`); text and HTML are cut at MAX_TEXT_CHARS and
  MAX_HTML_CHARS (the text ends with an ellipsis) rather than refused.
- Article fetches stop once half the task's soft time limit is spent, so a slow site cannot
  make the poll overrun it.
- A listing with no article links, an invalid selector or a bad config raises `NotAFeed` with a
  message that says what to change.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import itertools
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urldefrag, urljoin, urlsplit

import lxml.html
import trafilatura
from cssselect import SelectorError
from django.conf import settings
from django.core.cache import cache
from lxml import etree
from lxml.cssselect import CSSSelector
from tld import get_fld

from feeds.discovery import discover_feeds
from feeds.fetcher import PAGE_ACCEPT, FetchError, FetchResult, ResponseTooLarge, fetch
from feeds.parsing import NotAFeed, ParsedEntry, make_entry, parse_feed
from feeds.readers import Known, ReadResult, answered, fetch_source
from feeds.sanitize import html_to_text, sanitize_html
from feeds.urls import clean_link, link_key

if TYPE_CHECKING:
    from feeds.models import Source

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 100_000
MAX_HTML_CHARS = 200_000
ELLIPSIS = "…"
# A hard ceiling on a source's own max_articles.
MAX_ARTICLES_LIMIT = 100
# Anchors (or selector matches) looked at on one listing: a degenerate page can hold millions.
_MAX_ANCHORS = 5000
_MAX_ID = 512  # RawPost.external_id; longer ids are hashed the way make_entry does
_MAX_URL = 2000  # RawPost.url
_MAX_CONTENT_ELEMENTS = 50
_MAX_EXTRACT_ELEMENTS = 50_000  # elements of an article page worth extracting text from
# What lxml refuses in an attribute value or text it is given.
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")

# --- Link detection ---------------------------------------------------------------------------
# Elements that are page furniture wherever they are.
_CHROME_TAGS = frozenset({"nav", "aside", "form", "menu", "select", "button", "template"})
# Furniture unless inside an <article> (an article's own header holds its headline link).
_SCOPED_CHROME_TAGS = frozenset({"header", "footer"})
_CHROME_ROLES = frozenset({"navigation", "complementary", "search", "menu", "menubar"})
_SCOPED_CHROME_ROLES = frozenset({"banner", "contentinfo"})
# class/id words (split on spaces, '-' and '_') that mark furniture.
_CHROME_WORDS = frozenset(
    {
        "nav", "navbar", "navigation", "menu", "sidebar", "breadcrumb", "breadcrumbs",
        "pagination", "pager", "share", "sharing", "social", "widget", "related", "cookie",
        "cookies", "ad", "ads", "advert", "advertisement", "sponsored", "masthead",
    }
)  # fmt: skip
_SCOPED_CHROME_WORDS = frozenset({"header", "footer"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Path segments of listings, account pages and site furniture: never an article.
_SKIP_SEGMENTS = frozenset(
    {
        "tag", "tags", "category", "categories", "topic", "topics", "author", "authors",
        "page", "login", "logout", "signin", "sign-in", "signup", "sign-up", "register",
        "account", "my-account", "profile", "user", "users", "search", "feed", "feeds", "rss",
        "atom", "subscribe", "subscription", "newsletter", "newsletters", "cart", "checkout",
        "wp-login.php", "wp-admin", "cdn-cgi", "about", "about-us", "contact", "contact-us",
        "privacy", "privacy-policy", "terms", "terms-of-service", "terms-of-use",
        "terms-and-conditions", "cookie-policy", "imprint", "impressum", "sitemap",
        "accessibility", "advertise", "jobs", "careers", "share", "print", "comments",
    }
)  # fmt: skip
_MEDIA_EXTENSIONS = frozenset(
    {
        "jpg", "jpeg", "png", "gif", "webp", "avif", "svg", "ico", "bmp", "tif", "tiff",
        "mp3", "m4a", "aac", "ogg", "oga", "wav", "flac", "mp4", "m4v", "webm", "mov", "avi",
        "mkv", "pdf", "zip", "gz", "tgz", "tar", "rar", "7z", "exe", "dmg", "apk", "msi",
        "css", "js", "json", "xml", "rss", "atom", "txt", "csv", "doc", "docx", "xls",
        "xlsx", "ppt", "pptx", "odt", "ods", "epub", "ics",
    }
)  # fmt: skip
_PAGE_EXTENSIONS = re.compile(r"\.(s?html?|php|aspx?|jsp|cfm)$")
# Three or more words joined by '-' or '_': a headline slug.
_SLUG = re.compile(r"^[^\W_]+(?:[-_]+[^\W_]+){2,}")
_DIGITS = re.compile(r"\d+")
_ID_PARAMS = frozenset({"p", "id", "article", "articleid", "story", "storyid", "post", "postid"})

_DATE_META = (
    "article:published_time",
    "og:published_time",
    "datepublished",
    "pubdate",
    "publish-date",
    "publish_date",
    "parsely-pub-date",
    "sailthru.date",
    "dc.date.issued",
    "dc.date",
)


@dataclass
class ArticleLink:
    url: str  # absolute, without fragment
    external_id: str
    text: str  # the link's text on the listing: the title when the article has none


def read_web_page(source: Source, known: Known) -> ReadResult:
    """Read a web page source: the listing, then the articles not read before (see module doc)."""
    config = _config(source)
    link_selector = _selector(config, "link_selector")
    content_selector = _selector(config, "content_selector")
    user_agent = source.user_agent or None

    listing, read = fetch_source(source, accept=PAGE_ACCEPT)
    if read.not_modified:
        return read
    with answered(listing):
        links = _listing(listing, read, selector=link_selector, limit=_max_articles(config))

    seen = known([link.external_id for link in links])
    new = [link for link in links if link.external_id not in seen]
    cap = settings.WEB_MAX_FETCHES_PER_POLL
    deadline = time.monotonic() + _article_budget_seconds()
    left_for_later = len(new) > cap
    for link in new[:cap]:
        remaining = deadline - time.monotonic()
        if remaining < 1:
            logger.info("web source %s: out of time; the rest wait for the next poll", source.id)
            left_for_later = True
            break
        try:
            article = fetch(
                link.url,
                user_agent=user_agent,
                accept=PAGE_ACCEPT,
                timeout=min(settings.FETCH_TIMEOUT_SECONDS, remaining),
            )
        except ResponseTooLarge as exc:
            # Fetching it again would fail the same way: keep it as title and link.
            logger.warning("web source %s: article %s too large (%s)", source.id, link.url, exc)
            read.entries.append(_bare_entry(link, link.url))
            continue
        except FetchError as exc:
            attempts = _failed_attempt(source, link)
            if attempts >= settings.WEB_ARTICLE_MAX_ATTEMPTS:
                logger.warning(
                    "web source %s: article %s failed %s times (%s); keeping its title and link",
                    source.id,
                    link.url,
                    attempts,
                    exc,
                )
                read.entries.append(_bare_entry(link, link.url))
                continue
            logger.warning(
                "web source %s: article %s skipped this poll, attempt %s of %s (%s)",
                source.id,
                link.url,
                attempts,
                settings.WEB_ARTICLE_MAX_ATTEMPTS,
                exc,
            )
            left_for_later = True
            continue
        read.bytes_received += len(article.body)
        read.entries.append(article_entry(link, article, content_selector=content_selector))
    if left_for_later:
        read.etag = ""
        read.last_modified = ""
    return read


# --- The listing ---------------------------------------------------------------------------------


def _listing(
    listing: FetchResult, read: ReadResult, *, selector: CSSSelector | None, limit: int
) -> list[ArticleLink]:
    _refuse_feed(listing)
    doc = parse_html(listing.body, listing.content_type, listing.url)
    read.title = _page_title(doc)[:300]
    read.site_url = listing.url if len(listing.url) <= _MAX_URL else ""
    links = find_article_links(doc, listing.url, selector=selector, limit=limit)
    if links:
        return links
    feeds = discover_feeds(listing.body, listing.url, doc=doc)
    hint = f" (the page names a feed, {feeds[0]}: add that as an RSS source)" if feeds else ""
    raise NotAFeed(
        f"no article links found on {listing.url}; set a link selector in the source's config{hint}"
    )


def parse_html(body: bytes, content_type: str, url: str) -> lxml.html.HtmlElement:
    """An lxml document from `body` in the charset a UTF-8 BOM or the response names, else
    UTF-8 when the bytes are valid UTF-8, else the page's own <meta charset>. Raises NotAFeed
    when there is nothing to parse."""
    if not body.strip():
        raise NotAFeed(f"the page at {url} is empty")
    encoding = "utf-8" if body.startswith(codecs.BOM_UTF8) else _charset(content_type)
    if encoding is None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = None  # let libxml2 read <meta charset>
        else:
            encoding = "utf-8"
    # No huge_tree: libxml2 keeps its limits on depth and text node size.
    parser = lxml.html.HTMLParser(encoding=encoding, remove_comments=True, remove_pis=True)
    try:
        doc = lxml.html.document_fromstring(body, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise NotAFeed(f"the page at {url} is not readable HTML ({exc})") from exc
    return doc


def find_article_links(
    doc: lxml.html.HtmlElement,
    page_url: str,
    *,
    selector: CSSSelector | None = None,
    limit: int = 20,
) -> list[ArticleLink]:
    """Article links on a listing page, absolute, deduplicated by `link_key`, in page order.

    With a selector: the links it matches (an element that is not a link stands for the first
    link inside it, or the link around it), on any host. Without: the links in <article>
    elements and in headings; if there are none, those in <main>; if none, those anywhere;
    always outside page furniture (nav, aside, site header/footer, menus, sidebars, pagination,
    share bars), on the listing's registrable domain, whose path looks like an article (see
    `looks_like_article`).
    """
    base = _base_url(doc, page_url)
    listing_key = link_key(page_url)
    if selector is not None:
        anchors = [a for el in selector(doc)[:_MAX_ANCHORS] if (a := _anchor_for(el)) is not None]
        return _collect([(a, False) for a in anchors], base, listing_key, limit)

    site = _registrable(urlsplit(page_url).hostname or "")
    listing_path = urlsplit(page_url).path or "/"
    furniture: dict[Any, bool] = {}
    tiers: list[list[tuple[lxml.html.HtmlElement, bool]]] = [[], [], []]
    for count, anchor in enumerate(doc.iter("a")):
        if count >= _MAX_ANCHORS:
            break
        href = anchor.get("href")
        if not href:
            continue
        url = _absolute(base, href)
        if url is None or not looks_like_article(url, site=site, listing_path=listing_path):
            continue
        place = _place(anchor, furniture)
        if place is not None:
            tier, in_heading = place
            tiers[tier].append((anchor, in_heading))
    for candidates in tiers:
        links = _collect(candidates, base, listing_key, limit)
        if links:
            return links
    return []


def looks_like_article(url: str, *, site: str, listing_path: str = "") -> bool:
    """Whether `url` reads like an article on `site` (a registrable domain): http(s), same
    site, a path of at least one segment and no listing, account or furniture segment (tag,
    category, author, page, login, feed...), not a media or document file, not the listing's own
    path, and a last segment that is a headline slug (three or more words joined by hyphens),
    a number of 5+ digits (or 4 that are not a year), or an id query parameter (?p=123)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or _registrable(parts.hostname or "") != site:
        return False
    segments = [s for s in parts.path.lower().split("/") if s]
    query = dict(parse_qsl(parts.query.lower()))
    id_query = any(k in _ID_PARAMS and v.isdigit() for k, v in query.items())
    if (parts.path or "/") == listing_path and not id_query:
        return False  # the listing itself, or another page or sort order of it
    if any(s in _SKIP_SEGMENTS for s in segments):
        return False
    if not segments:
        return id_query
    last = segments[-1]
    if "." in last and last.rpartition(".")[2] in _MEDIA_EXTENSIONS:
        return False
    stem = _PAGE_EXTENSIONS.sub("", last)
    if _SLUG.match(stem):
        return True
    number = max(_DIGITS.findall(stem), key=len, default="")
    if len(number) >= 5 or (len(number) == 4 and not 1900 <= int(number) <= 2100):
        return True
    return id_query


def _place(anchor: lxml.html.HtmlElement, furniture: dict[Any, bool]) -> tuple[int, bool] | None:
    """(tier, in a heading) of a link, None for page furniture. Tier 0: in an <article> or a
    heading; 1: in <main>; 2: elsewhere."""
    in_article = in_heading = in_main = False
    scoped_chrome = False
    for el in anchor.iterancestors():
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in ("body", "html"):
            break
        role = (el.get("role") or "").strip().lower()
        if tag in _CHROME_TAGS or role in _CHROME_ROLES:
            return None
        if tag in _SCOPED_CHROME_TAGS or role in _SCOPED_CHROME_ROLES:
            scoped_chrome = True
        words = _class_words(el)
        if words & (_CHROME_WORDS | _SCOPED_CHROME_WORDS) and not _is_wrapper(el, furniture):
            if words & _CHROME_WORDS:
                return None
            scoped_chrome = True
        if tag == "article" or role == "article":
            in_article = True
        elif tag in _HEADINGS or role == "heading":
            in_heading = True
        elif tag == "main" or role == "main":
            in_main = True
    if scoped_chrome and not in_article:
        return None
    if in_article or in_heading:
        return 0, in_heading
    return (1 if in_main else 2), False


def _is_wrapper(el: lxml.html.HtmlElement, cache: dict[Any, bool]) -> bool:
    # A layout wrapper ("page with-sidebar") that holds the main content (or the page's
    # headline) is not furniture.
    if el not in cache:
        cache[el] = bool(el.xpath(".//main or .//article or .//*[@role='main'] or .//h1"))
    return cache[el]


def _class_words(el: lxml.html.HtmlElement) -> set[str]:
    value = f"{el.get('class') or ''} {el.get('id') or ''}".lower()
    return set(re.split(r"[\s_-]+", value)) if value.strip() else set()


def _anchor_for(el: Any) -> lxml.html.HtmlElement | None:
    if not isinstance(getattr(el, "tag", None), str):
        return None  # a selector can match text or comments through lxml extensions
    if el.tag == "a" and el.get("href"):
        return el
    inner = next((a for a in el.iter("a") if a.get("href")), None)
    if inner is not None:
        return inner
    return next((a for a in el.iterancestors("a") if a.get("href")), None)


def _collect(
    candidates: list[tuple[lxml.html.HtmlElement, bool]], base: str, listing_key: str, limit: int
) -> list[ArticleLink]:
    """Deduplicate (by link_key) in page order, keep the best text (a heading's over a
    "Read more"), stop at `limit`."""
    found: dict[str, ArticleLink] = {}
    text_from_heading: dict[str, bool] = {}
    for anchor, in_heading in candidates:
        url = _absolute(base, anchor.get("href") or "")
        if url is None:
            continue
        key = link_key(url)
        if not key or key == listing_key:
            continue
        text = " ".join(anchor.text_content().split())[:300]
        if key in found:
            link = found[key]
            if text and (not link.text or (in_heading and not text_from_heading[key])):
                link.text = text
                text_from_heading[key] = in_heading
            continue
        if len(found) >= limit:
            continue  # keep reading: a later heading may still name a link already taken
        found[key] = ArticleLink(url=clean_link(url), external_id=article_id(url), text=text)
        text_from_heading[key] = in_heading
    return list(found.values())


def article_id(url: str) -> str:
    """The external id of the article at `url`: the link without tracking parameters (hashed
    like `make_entry` hashes ids longer than the column)."""
    ext = clean_link(url)
    if len(ext) > _MAX_ID:
        ext = "sha256:" + hashlib.sha256(ext.encode()).hexdigest()
    return ext


def _absolute(base: str, href: str) -> str | None:
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    try:
        url, _fragment = urldefrag(urljoin(base, href))
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > _MAX_URL:
        return None
    # lxml keeps control characters in attribute values, and httpx refuses such a URL: its
    # fetch would fail on every poll, leaving it "for later" for ever.
    if any(ord(char) < 0x20 or char == "\x7f" for char in url):
        return None
    return url


def _base_url(doc: lxml.html.HtmlElement, page_url: str) -> str:
    for base in doc.iter("base"):
        href = (base.get("href") or "").strip()
        if href:
            try:
                return urljoin(page_url, href)
            except ValueError:
                return page_url
    return page_url


@functools.lru_cache(maxsize=1024)
def _registrable(host: str) -> str:
    """The registrable domain of `host` (news.bbc.co.uk -> bbc.co.uk), else the host itself
    (IP addresses, single-label names) without "www."."""
    host = host.lower().rstrip(".")
    domain = get_fld(host, fix_protocol=True, fail_silently=True) if host else None
    return str(domain) if domain else host.removeprefix("www.")


def _page_title(doc: lxml.html.HtmlElement) -> str:
    title = doc.find(".//title")
    return " ".join(title.text_content().split()) if title is not None else ""


def _refuse_feed(result: FetchResult) -> None:
    ctype = result.content_type.lower()
    if "html" in ctype or not ("xml" in ctype or "json" in ctype):
        return
    try:
        parse_feed(result.body, content_type=result.content_type, base_url=result.url)
    except NotAFeed:
        return
    raise NotAFeed(f"{result.url} is a feed, not a web page: add it as an RSS source")


# --- Articles ------------------------------------------------------------------------------------


def article_entry(
    link: ArticleLink, result: FetchResult, *, content_selector: CSSSelector | None = None
) -> ParsedEntry:
    """The entry for one fetched article: main text (the content selector's elements when it
    matches, else trafilatura's extraction), title, author and date; title and link only when
    there is nothing to extract."""
    url = result.url if len(result.url) <= _MAX_URL else link.url
    mime = result.content_type.split(";")[0].strip().lower()
    if mime not in _HTML_TYPES or not result.body.strip():
        return _bare_entry(link, url)
    try:
        doc = parse_html(result.body, result.content_type, url)
    except NotAFeed:
        return _bare_entry(link, url)
    if next(itertools.islice(doc.iter(), _MAX_EXTRACT_ELEMENTS, None), None) is not None:
        # trafilatura's time grows faster than the page (its readability pass alone takes
        # 20 s on 200,000 elements): so many elements are not an article.
        logger.warning(
            "article %s has over %s elements; kept as title and link", url, _MAX_EXTRACT_ELEMENTS
        )
        return _bare_entry(link, url)
    _make_links_absolute(doc, _base_url(doc, url))

    raw_html = ""
    if content_selector is not None:
        matched = [el for el in content_selector(doc) if isinstance(getattr(el, "tag", None), str)]
        raw_html = "".join(
            etree.tostring(el, encoding="unicode", method="html")
            for el in matched[:_MAX_CONTENT_ELEMENTS]
        )
        if not raw_html:
            logger.info("content selector matched nothing on %s; using the extractor", url)
    published_at = _published_at_meta(doc)
    title = _og_title(doc) or _page_title(doc)
    author = ""
    try:
        if not raw_html:
            raw_html = _extract(doc, url)
        meta = trafilatura.extract_metadata(doc, default_url=url, extensive=False)
    except Exception:
        # A third-party parser on hostile HTML: one page must not fail every poll of the
        # source (it would be fetched again and fail again). Keep what we have.
        logger.exception("extracting %s failed; keeping its title and link", url)
    else:
        title = (meta.title or "").strip() or title
        author = " ".join((meta.author or "").split())
        published_at = published_at or _iso_datetime(meta.date or "")
    html = sanitize_html(raw_html)
    text = clip_text(html_to_text(html))
    return make_entry(
        guid=link.external_id,
        url=url,
        title=" ".join(html_to_text(title or link.text).split())[:1000],
        text=text,
        html=clip_html(html) if text else "",
        author=author,
        published_at=published_at,
    )


def _make_links_absolute(doc: lxml.html.HtmlElement, base: str) -> None:
    """lxml's make_links_absolute, dropping the links it could not write back: its HTML parser
    lets control characters into attribute values, and setting one raises ValueError."""
    try:
        doc.rewrite_links(functools.partial(_absolute_link, base), resolve_base_href=False)
    except ValueError:
        # A control character elsewhere in the same value (a style attribute around a url()):
        # the links not yet rewritten stay as they are.
        logger.info("links of an article on %s left relative: a value lxml cannot write", base)


def _absolute_link(base: str, href: str) -> str | None:
    try:
        url = urljoin(base, href)
    except ValueError:
        return None
    return None if _NOT_XML_CHARS.search(url) else url


def _extract(doc: lxml.html.HtmlElement, url: str) -> str:
    """trafilatura's main text as HTML ('' when it finds none). It is given our parsed tree
    (which it copies before pruning) and a URL only as metadata: it downloads nothing.

    Precision mode: furniture left in is worse than a sentence left out, and the balanced
    mode's fallbacks turn an empty JavaScript shell into its "Please enable JavaScript" notice.
    """
    html = trafilatura.extract(
        doc,
        url=url,
        output_format="html",
        favor_precision=True,
        include_comments=False,
        include_links=True,
        include_images=True,
        include_tables=True,
        include_formatting=True,
    )
    return html or ""


_ATTEMPTS_KEPT_SECONDS = 7 * 24 * 3600


def _failed_attempt(source: Source, link: ArticleLink) -> int:
    """Count a failed fetch of the article; the number of failures so far. Kept in the cache
    (Redis): if it is lost, the article only gets a few more tries."""
    digest = hashlib.sha256(link.external_id.encode()).hexdigest()[:32]
    key = f"web-article-failures:{source.pk}:{digest}"
    cache.add(key, 0, timeout=_ATTEMPTS_KEPT_SECONDS)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=_ATTEMPTS_KEPT_SECONDS)
        return 1


def _bare_entry(link: ArticleLink, url: str) -> ParsedEntry:
    return make_entry(
        guid=link.external_id,
        url=url,
        title=link.text,
        text="",
        html="",
        author="",
        published_at=None,
    )


def clip_text(text: str) -> str:
    """`text`, cut at a word boundary before MAX_TEXT_CHARS and ended with an ellipsis."""
    if len(text) <= MAX_TEXT_CHARS:
        return text
    cut = text.rfind(" ", MAX_TEXT_CHARS // 2, MAX_TEXT_CHARS - 2)
    return text[: cut if cut > 0 else MAX_TEXT_CHARS - 2].rstrip() + " " + ELLIPSIS


def clip_html(html: str) -> str:
    """Sanitized `html`, cut after a tag before MAX_HTML_CHARS; sanitizing again closes the
    elements left open."""
    if len(html) <= MAX_HTML_CHARS:
        return html
    limit = MAX_HTML_CHARS - 100
    cut = html.rfind(">", 0, limit) + 1 or limit
    return sanitize_html(html[:cut] + f"<p>{ELLIPSIS}</p>")[:MAX_HTML_CHARS]


def _og_title(doc: lxml.html.HtmlElement) -> str:
    for meta in doc.iter("meta"):
        if (meta.get("property") or meta.get("name") or "").lower() == "og:title":
            return " ".join((meta.get("content") or "").split())
    return ""


def _published_at_meta(doc: lxml.html.HtmlElement) -> datetime | None:
    """The publication time the page declares: article:published_time and kin, then a
    <time datetime> inside the article (trafilatura's date, a day at best, comes after)."""
    candidates: list[str] = []
    for meta in doc.iter("meta"):
        name = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").lower()
        if name in _DATE_META and meta.get("content"):
            candidates.append(meta.get("content", ""))
    # The first <time datetime> inside an <article>. Not the XPath //article//time: libxml2
    # merges its node sets in quadratic time, minutes on a page of 100,000 articles.
    for node in doc.iter("time"):
        if node.get("datetime") and any(a.tag == "article" for a in node.iterancestors()):
            candidates.append(node.get("datetime", ""))
            break
    return next((when for value in candidates if (when := _iso_datetime(value))), None)


def _iso_datetime(value: str) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text (naive means UTC); None for nonsense and for
    more than a day ahead (a wrong clock or a misread date would sort it first for days)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
        # An offset can move the time past year 9999 or before year 1 (OverflowError).
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if when > datetime.now(UTC) + timedelta(days=1):
        return None
    return when


# --- Config --------------------------------------------------------------------------------------


def _config(source: Source) -> dict[str, Any]:
    config = source.config if source.config is not None else {}
    if not isinstance(config, dict):
        raise NotAFeed('the source\'s config must be a JSON object, e.g. {"link_selector": "h2 a"}')
    return config


def _selector(config: dict[str, Any], key: str) -> CSSSelector | None:
    value = config.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise NotAFeed(f"{key} in the source's config must be a CSS selector string")
    try:
        return CSSSelector(value.strip())
    # ValueError: a selector that escapes a control character ("\\1"), which lxml refuses.
    except (SelectorError, etree.XPathError, ValueError) as exc:
        name = key.replace("_", " ")
        raise NotAFeed(f"invalid {name} {value!r} in the source's config: {exc}") from exc


def _max_articles(config: dict[str, Any]) -> int:
    value = config.get("max_articles")
    if value is None:
        return min(settings.WEB_MAX_ARTICLES, MAX_ARTICLES_LIMIT)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NotAFeed(
            f"max_articles in the source's config must be a positive integer, not {value!r}"
        )
    return min(value, MAX_ARTICLES_LIMIT)


def _article_budget_seconds() -> float:
    return settings.CELERY_TASK_SOFT_TIME_LIMIT / 2


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            value = value.strip().strip("\"'")
            try:
                return codecs.lookup(value).name
            except LookupError:
                return None
    return None
