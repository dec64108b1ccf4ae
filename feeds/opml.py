"""OPML import and export of sources (admin and API).

The dialect, written by `export_opml` and read back by `import_opml`:

- Folders are outlines without a URL; a source's `category` ("Tech/AI") is the path of the
  folders around it, nested one outline per segment. On import a source outside any folder
  takes the first path of an OPML 2.0 `category` attribute ("/Tech/AI,/News" -> "Tech/AI").
- Feeds (kind rss) are `type="rss"` outlines with `xmlUrl`, as every reader expects.
- Telegram channels and web pages are not feeds other readers could poll, so they are written
  as `type="link"` outlines with `url`, which readers keep as links or skip. Each source outline
  also carries `infatium:kind` (namespace INFATIUM_NS), so our import restores every kind.
- On import, without `infatium:kind`: a t.me URL is a Telegram channel (stored as
  https://t.me/<name>); an outline with `xmlUrl` or of type rss/atom is a feed; any other
  outline with a URL (`type="link"`, `type="include"`, ...) is skipped and reported.

Hostile files: the XML parser (defusedxml, expat) refuses any DOCTYPE, so no entity is expanded
(billion laughs), no external DTD or entity is read (XXE: no file or network access); files over
OPML_MAX_BYTES, more than OPML_MAX_OUTLINES outlines and deep nesting are refused. The parser
builds no tree: it keeps one folder name per open outline.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import IO, Any
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import DefusedXMLParser
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from feeds import services
from feeds.models import Source, SourceKind, telegram_username
from feeds.validation import SOURCE_URL_MAX_LENGTH, normalize_source_url, validate_source_url

logger = logging.getLogger(__name__)

INFATIUM_NS = "urn:infatium:opml:1"
KIND_ATTRIBUTE = f"{{{INFATIUM_NS}}}kind"
ET.register_namespace("infatium", INFATIUM_NS)

OPML_CONTENT_TYPE = "text/x-opml; charset=utf-8"
CREATE_BATCH = 200  # sources created per transaction
MAX_DEPTH = 64  # folder nesting; real files have one or two levels
TEXT_MAX_LENGTH = 300  # Source.title and Source.category
TELEGRAM_HOSTS = frozenset({"t.me", "www.t.me", "telegram.me", "www.telegram.me"})
# Public channel names; t.me paths that are not channels (invites, stickers, ...) do not match
# or are listed here.
_TELEGRAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_TELEGRAM_NOT_CHANNELS = frozenset(
    {"joinchat", "addstickers", "addemoji", "addtheme", "share", "proxy", "socks", "login"}
)
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class OpmlError(Exception):
    """The upload is not an OPML file we accept; the message says why, for the person who sent
    it."""


@dataclass(frozen=True)
class OpmlEntry:
    """One outline with a URL. `skipped` or `invalid` (a reason) when it is not imported."""

    url: str
    title: str = ""
    site_url: str = ""
    category: str = ""
    kind: str = SourceKind.RSS
    skipped: str = ""
    invalid: str = ""


@dataclass(frozen=True)
class ReportItem:
    url: str
    title: str
    category: str
    kind: str
    reason: str = ""
    source_id: int | None = None


@dataclass
class ImportReport:
    """What an import did with each outline that has a URL."""

    created: list[ReportItem] = field(default_factory=list)
    existing: list[ReportItem] = field(default_factory=list)
    skipped: list[ReportItem] = field(default_factory=list)
    invalid: list[ReportItem] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.existing)} already there, "
            f"{len(self.skipped)} skipped, {len(self.invalid)} invalid"
        )


def read_limited(stream: IO[bytes] | Any) -> bytes:
    """Read an upload, at most OPML_MAX_BYTES (one byte more, so parse_opml can refuse it)."""
    data = stream.read(settings.OPML_MAX_BYTES + 1)
    return bytes(data or b"")


def too_large() -> OpmlError:
    return OpmlError(f"The file is larger than {settings.OPML_MAX_BYTES} bytes.")


def parse_opml(data: bytes) -> list[OpmlEntry]:
    """The outlines of an OPML 1.0/2.0 document that have a URL, in document order.

    Raises OpmlError for anything that is not a plain OPML document within the limits: over
    OPML_MAX_BYTES, a DOCTYPE (hence any entity), malformed XML, another root element (HTML,
    RSS), no <body>, more than OPML_MAX_OUTLINES outlines or more than MAX_DEPTH levels.
    """
    if len(data) > settings.OPML_MAX_BYTES:
        raise too_large()
    if not data.strip():
        raise OpmlError("The file is empty.")
    collector = _Collector(max_outlines=settings.OPML_MAX_OUTLINES)
    parser = DefusedXMLParser(
        target=collector, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(data)
        parser.close()
    except OpmlError:
        raise
    except DTDForbidden as exc:
        if (exc.name or "").lower() == "html":
            raise _html_page() from None
        raise OpmlError(
            "The file has a DOCTYPE (a DTD, perhaps with entities), which is not accepted: "
            "OPML needs none."
        ) from None
    except DefusedXmlException:
        raise OpmlError(
            "The file declares entities or external references, which are not accepted."
        ) from None
    except ET.ParseError as exc:
        if _looks_like_html(data):
            raise _html_page() from None
        raise OpmlError(f"The file is not well-formed XML ({exc}).") from None
    except (ValueError, LookupError) as exc:  # e.g. an encoding Python does not know
        raise OpmlError(f"The file could not be read as XML ({exc}).") from None
    if not collector.body_seen:
        raise OpmlError("This is not an OPML document: it has no <body>.")
    return collector.entries


def import_opml(*, user: AbstractBaseUser, data: bytes) -> ImportReport:
    """Add the sources an OPML file lists; report what happened to each outline with a URL.

    Never duplicates a source: URLs are compared after `normalize_source_url` (host case,
    fragment), a URL listed twice in the file is one source, and `services.create_source` is
    idempotent even against a concurrent import. Existing sources keep their title; one with no
    category takes the file's (a conditional update: a curator's category is never replaced;
    users who are not staff fill it only on sources they added). A user who is not staff stops
    at SOURCE_QUOTA_PER_USER: the remaining new URLs are reported as skipped ("quota: ..."),
    known ones still as existing. Not one transaction: sources are created and categorized in
    batches of CREATE_BATCH, so an interrupted import leaves whole batches, and running it again
    finishes it.
    Raises OpmlError (nothing imported) for a file parse_opml refuses.
    """
    entries = parse_opml(data)
    report = ImportReport()
    pending: list[tuple[OpmlEntry, str]] = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.skipped:
            report.skipped.append(_item(entry, entry.skipped))
            continue
        if entry.invalid:
            report.invalid.append(_item(entry, entry.invalid))
            continue
        try:
            validate_source_url(entry.url)
        except ValidationError as exc:
            report.invalid.append(_item(entry, " ".join(exc.messages)))
            continue
        url = normalize_source_url(entry.url)
        if (entry.kind, url) in seen:
            report.skipped.append(_item(entry, "listed earlier in the file", url=url))
            continue
        seen.add((entry.kind, url))
        pending.append((entry, url))

    known = _known_sources(pending)
    is_staff = bool(getattr(user, "is_staff", False))
    results: list[tuple[str, OpmlEntry, Source]] = []
    categories: dict[int, str] = {}
    quota = ""
    for start in range(0, len(pending), CREATE_BATCH):
        # One commit per batch rather than per source: commits were most of a large import's
        # time. Each source is still its own savepoint (create_source), so one refusal costs
        # nothing else.
        batch: list[tuple[str, OpmlEntry, Source]] = []
        with transaction.atomic():
            for entry, url in pending[start : start + CREATE_BATCH]:
                source = known.get((entry.kind, url))
                if source is not None:
                    batch.append(("existing", entry, source))
                    continue
                if quota:
                    report.skipped.append(_item(entry, f"quota: {quota}", url=url))
                    continue
                try:
                    source, created = services.create_source(
                        user=user, url=url, kind=entry.kind, title=entry.title
                    )
                except services.QuotaExceeded as exc:
                    quota = str(exc)
                    report.skipped.append(_item(entry, f"quota: {quota}", url=url))
                    continue
                except ValidationError as exc:
                    report.invalid.append(_item(entry, " ".join(exc.messages), url=url))
                    continue
                if created and entry.site_url:
                    _fill_site_url(source, entry.site_url)
                batch.append(("created" if created else "existing", entry, source))
            categories.update(_fill_categories(batch, user=user, is_staff=is_staff))
        results.extend(batch)

    for outcome, entry, source in results:
        category = categories.get(source.id, source.category)
        reason = ""
        if entry.category and category != entry.category:
            reason = f"kept its category {category!r}" if category else "category not changed"
        item = ReportItem(
            url=source.url,
            title=source.title,
            category=category,
            kind=source.kind,
            reason=reason,
            source_id=source.id,
        )
        (report.created if outcome == "created" else report.existing).append(item)
    logger.info("OPML import by user %s: %s", user.pk, report.summary())
    return report


def export_opml(sources: Iterable[Source]) -> bytes:
    """An OPML 2.0 document (UTF-8) of `sources`, folders nested by category; see the module
    docstring for the dialect. Every value goes through ElementTree, which escapes it."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = "Infatium sources"
    ET.SubElement(head, "dateCreated").text = format_datetime(timezone.now(), usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(root, "body")
    folders: dict[tuple[str, ...], ET.Element] = {(): body}
    ordered = sorted(
        sources, key=lambda s: (_segments(s.category), (s.title or s.url).lower(), s.id)
    )
    for source in ordered:
        parent = _folder(folders, _segments(source.category))
        title = _xml_text(source.title)
        # `text` is required; without a title the URL stands in, and is not read back as one.
        attributes = {"text": title or _xml_text(source.url)}
        if title:
            attributes["title"] = title
        if source.kind == SourceKind.RSS:
            attributes.update(type="rss", xmlUrl=_xml_text(source.url))
        else:
            attributes.update(type="link", url=_xml_text(source.url))
        if source.site_url:
            attributes["htmlUrl"] = _xml_text(source.site_url)
        attributes[KIND_ATTRIBUTE] = source.kind
        ET.SubElement(parent, "outline", attributes)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


class _Collector:
    """ElementTree parser target: keeps the outlines with a URL, builds no tree."""

    def __init__(self, *, max_outlines: int) -> None:
        self.max_outlines = max_outlines
        # Besides outlines a document has a head and a few fields; anything more is not OPML.
        self.max_elements = max_outlines + 1000
        self.entries: list[OpmlEntry] = []
        self.body_seen = False
        self._elements = 0
        self._outlines = 0
        self._stack: list[str] = []
        self._in_body = False
        self._folders: list[str] = []  # per open outline in the body: folder name, or ''

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._elements += 1
        if self._elements > self.max_elements:
            raise OpmlError(f"The file has more than {self.max_elements} elements.")
        name = tag.rsplit("}", 1)[-1].lower()
        if not self._stack and name != "opml":
            if name == "html":
                raise _html_page()
            raise OpmlError(f"This is not an OPML document: its root element is <{name}>.")
        self._stack.append(name)
        if name == "body" and len(self._stack) == 2:
            self.body_seen = self._in_body = True
        elif name == "outline" and self._in_body:
            self._outlines += 1
            if self._outlines > self.max_outlines:
                raise OpmlError(f"The file has more than {self.max_outlines} outlines.")
            if len(self._folders) >= MAX_DEPTH:
                raise OpmlError(f"The outlines are nested more than {MAX_DEPTH} levels deep.")
            self._folders.append(self._outline(attrib))

    def end(self, tag: str) -> None:
        name = self._stack.pop()
        if name == "body" and len(self._stack) == 1:
            self._in_body = False
        elif name == "outline" and self._in_body:
            self._folders.pop()

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        return None

    def _outline(self, attrib: dict[str, str]) -> str:
        """Record the outline if it has a URL; return its name if it is a folder, else ''."""
        # OPML is case-sensitive, but some exporters write xmlurl or XMLURL.
        attrs = {k.lower(): v.strip() for k, v in attrib.items() if not k.startswith("{")}
        title = _clean(attrs.get("title") or attrs.get("text") or "")
        outline_type = attrs.get("type", "").lower()
        xml_url = attrs.get("xmlurl", "")
        url = xml_url or attrs.get("url", "")
        if title == url:
            title = ""  # an exporter's stand-in for a missing title (ours does this)
        if not url:
            if outline_type in ("rss", "atom"):
                self._add(url="", title=title, attrs=attrs, skipped="a feed outline with no xmlUrl")
            return title
        hint = attrib.get(KIND_ATTRIBUTE, "").strip()
        telegram = _telegram_url(url)
        if hint in SourceKind.values:
            kind = hint
        elif telegram is not None:
            kind = SourceKind.TELEGRAM
        elif xml_url or outline_type in ("rss", "atom"):
            kind = SourceKind.RSS
        else:
            what = f'type="{outline_type}"' if outline_type else "no type"
            self._add(url=url, title=title, attrs=attrs, kind="", skipped=f"not a feed ({what})")
            return ""
        invalid = ""
        if kind == SourceKind.TELEGRAM:
            if telegram:
                url = telegram
            else:
                invalid = "not a public Telegram channel link (https://t.me/<name>)"
        self._add(url=url, title=title, attrs=attrs, kind=kind, invalid=invalid)
        return ""

    def _add(self, *, url: str, title: str, attrs: dict[str, str], **kwargs: str) -> None:
        category = "/".join(name for name in self._folders if name)
        if not category:
            # OPML 2.0: comma-separated slash-delimited paths; the first one is the folder.
            category = "/".join(_segments(attrs.get("category", "").split(",")[0]))
        site_url = attrs.get("htmlurl", "")
        self.entries.append(
            OpmlEntry(
                url=url,
                title=title[:TEXT_MAX_LENGTH],
                site_url=site_url if _is_web_url(site_url) else "",
                category=category[:TEXT_MAX_LENGTH],
                **kwargs,
            )
        )


def _telegram_url(url: str) -> str | None:
    """'https://t.me/<name>' for a t.me link to a public channel, '' for another t.me link,
    None when the URL is not on t.me."""
    try:
        host = (urlsplit(url if "//" in url else "//" + url).hostname or "").lower()
    except ValueError:
        return None
    if host not in TELEGRAM_HOSTS:
        return None
    name = telegram_username(url)
    if not _TELEGRAM_NAME.fullmatch(name) or name.lower() in _TELEGRAM_NOT_CHANNELS:
        return ""
    return f"https://t.me/{name}"


def _known_sources(pending: list[tuple[OpmlEntry, str]]) -> dict[tuple[str, str], Source]:
    """The sources that already exist for these (kind, url) pairs, in a few queries."""
    urls = sorted({url for _, url in pending})
    known: dict[tuple[str, str], Source] = {}
    for start in range(0, len(urls), 1000):
        for source in Source.objects.filter(url__in=urls[start : start + 1000]):
            known[(source.kind, source.url)] = source
    return known


def _fill_categories(
    results: list[tuple[str, OpmlEntry, Source]], *, user: AbstractBaseUser, is_staff: bool
) -> dict[int, str]:
    """Give sources without a category the file's; return the categories now stored.

    One conditional UPDATE per category (`category = ''`), so a category set by anyone in the
    meantime is kept."""
    by_category: dict[str, list[int]] = defaultdict(list)
    for _, entry, source in results:
        if entry.category and not source.category:
            by_category[entry.category].append(source.id)
    for category, ids in by_category.items():
        queryset = Source.objects.filter(id__in=ids, category="")
        if not is_staff:
            queryset = queryset.filter(created_by=user)
        queryset.update(category=category)
    ids = [source_id for ids in by_category.values() for source_id in ids]
    return dict(Source.objects.filter(id__in=ids).values_list("id", "category"))


def _fill_site_url(source: Source, site_url: str) -> None:
    if Source.objects.filter(id=source.id, site_url="").update(site_url=site_url):
        source.site_url = site_url


def _item(entry: OpmlEntry, reason: str, *, url: str = "") -> ReportItem:
    return ReportItem(
        url=(url or entry.url)[:SOURCE_URL_MAX_LENGTH],
        title=entry.title,
        category=entry.category,
        kind=entry.kind,
        reason=reason,
    )


def _segments(category: str) -> tuple[str, ...]:
    return tuple(part for part in (_clean(p) for p in category.split("/")) if part)


def _folder(folders: dict[tuple[str, ...], ET.Element], path: tuple[str, ...]) -> ET.Element:
    if path not in folders:
        parent = _folder(folders, path[:-1])
        name = _xml_text(path[-1])
        folders[path] = ET.SubElement(parent, "outline", {"text": name, "title": name})
    return folders[path]


def _clean(text: str) -> str:
    return " ".join(text.split())


def _xml_text(text: str) -> str:
    return _NOT_XML_CHARS.sub("", text)


def _is_web_url(url: str) -> bool:
    if not url or len(url) > SOURCE_URL_MAX_LENGTH or any(ord(c) < 0x21 for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _looks_like_html(data: bytes) -> bool:
    head = data[:4096].lower()
    return b"<html" in head or b"<!doctype html" in head


def _html_page() -> OpmlError:
    return OpmlError("This is an HTML page, not an OPML document.")
