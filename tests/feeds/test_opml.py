"""OPML: folders become categories, an import never duplicates a source, an export reads back
as the same sources, and hostile files are refused without reading files or the network."""

from __future__ import annotations

import contextlib
import sys
import tracemalloc
from collections.abc import Iterator
from xml.etree import ElementTree as ET

import pytest
from django.test import Client

from feeds import opml as opml_module
from feeds.models import Source, SourceKind
from feeds.opml import INFATIUM_NS, OpmlError, export_opml, import_opml, parse_opml

NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>From another reader</title></head>
  <body>
    <outline text="Tech">
      <outline text="AI" title="AI">
        <outline type="rss" text="Model news" xmlUrl="https://ai.example.org/feed.xml"
                 htmlUrl="https://ai.example.org/"/>
      </outline>
      <outline type="rss" text="Gadgets" xmlUrl="https://gadgets.example.org/rss"/>
      <outline text="Durov's channel" xmlUrl="https://t.me/s/durov/"/>
    </outline>
    <outline type="atom" text="Top level" xmlUrl="https://top.example.org/atom"/>
    <outline type="rss" text="Tagged" category="/News/World,/Elsewhere"
             xmlUrl="https://world.example.org/rss"/>
    <outline type="link" text="A page" url="https://page.example.org/"/>
    <outline text="Empty folder"/>
  </body>
</opml>"""


def opml_doc(*outlines: str, head: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><opml version="2.0"><head>{head}</head>'
        f"<body>{''.join(outlines)}</body></opml>"
    ).encode()


def feed(url: str, text: str = "") -> str:
    return f'<outline type="rss" text="{text or url}" xmlUrl="{url}"/>'


def folder(name: str, *children: str) -> str:
    return f'<outline text="{name}">{"".join(children)}</outline>'


# --- Reading --------------------------------------------------------------------------------


def test_it_reads_nested_folders_as_categories_and_tells_kinds_apart():
    entries = {entry.url: entry for entry in parse_opml(NESTED)}

    assert entries["https://ai.example.org/feed.xml"].category == "Tech/AI"
    assert entries["https://ai.example.org/feed.xml"].title == "Model news"
    assert entries["https://ai.example.org/feed.xml"].site_url == "https://ai.example.org/"
    assert entries["https://gadgets.example.org/rss"].category == "Tech"
    assert entries["https://top.example.org/atom"].category == ""
    assert entries["https://top.example.org/atom"].kind == SourceKind.RSS
    # OPML 2.0's category attribute, first path, for an outline outside any folder.
    assert entries["https://world.example.org/rss"].category == "News/World"
    telegram = entries["https://t.me/durov"]
    assert (telegram.kind, telegram.category) == (SourceKind.TELEGRAM, "Tech")
    link = entries["https://page.example.org/"]
    assert link.skipped == 'not a feed (type="link")'
    assert len(entries) == 6  # the empty folder is no entry


def test_it_refuses_telegram_links_that_are_not_public_channels():
    (entry,) = parse_opml(opml_doc(feed("https://t.me/joinchat/AAAAAE")))

    assert entry.kind == SourceKind.TELEGRAM
    assert "not a public Telegram channel" in entry.invalid


# --- Importing ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_imports_sources_with_their_categories(owner):
    report = import_opml(user=owner, data=NESTED)

    stored = {s.url: s for s in Source.objects.all()}
    assert set(stored) == {
        "https://ai.example.org/feed.xml",
        "https://gadgets.example.org/rss",
        "https://t.me/durov",
        "https://top.example.org/atom",
        "https://world.example.org/rss",
    }
    ai = stored["https://ai.example.org/feed.xml"]
    assert (ai.category, ai.title, ai.site_url) == (
        "Tech/AI",
        "Model news",
        "https://ai.example.org/",
    )
    assert ai.created_by == owner
    assert stored["https://t.me/durov"].kind == SourceKind.TELEGRAM
    assert stored["https://world.example.org/rss"].category == "News/World"
    assert len(report.created) == 5
    assert [(i.url, i.reason) for i in report.skipped] == [
        ("https://page.example.org/", 'not a feed (type="link")')
    ]
    assert report.existing == report.invalid == []


@pytest.mark.django_db
def test_it_reports_everything_as_existing_on_a_second_import(owner, other_user):
    import_opml(user=owner, data=NESTED)
    # The same feeds as typed by someone else: host case and fragments differ.
    again = opml_doc(
        folder("Elsewhere", feed("https://AI.Example.ORG/feed.xml#latest")),
        feed("HTTPS://gadgets.example.org/rss"),
        feed("https://top.example.org/atom#"),
        feed("https://world.example.org/rss"),
        feed("http://t.me/durov"),
    )

    second = import_opml(user=owner, data=NESTED)
    third = import_opml(user=other_user, data=again)

    assert Source.objects.count() == 5
    for report in (second, third):
        assert report.created == []
        assert len(report.existing) == 5
    assert Source.objects.get(url="https://ai.example.org/feed.xml").category == "Tech/AI"


@pytest.mark.django_db
def test_it_makes_one_source_of_a_url_listed_twice_in_one_file(owner):
    data = opml_doc(
        folder("First", feed("https://dup.example.org/feed", "Dup")),
        folder("Second", feed("https://DUP.example.org/feed#again", "Dup again")),
        feed("https://dup.example.org/feed", "Dup, top level"),
    )

    report = import_opml(user=owner, data=data)

    (source,) = Source.objects.all()
    assert (source.url, source.title, source.category) == (
        "https://dup.example.org/feed",
        "Dup",
        "First",
    )
    assert len(report.created) == 1
    assert [item.reason for item in report.skipped] == ["listed earlier in the file"] * 2


@pytest.mark.django_db
def test_it_stops_at_the_quota_and_reports_the_rest(owner, settings):
    settings.SOURCE_QUOTA_PER_USER = 2
    known = Source.objects.create(url="https://known.example.org/feed", title="Known")
    data = opml_doc(*(feed(f"https://q{n}.example.org/feed") for n in range(4)), feed(known.url))

    report = import_opml(user=owner, data=data)

    assert Source.objects.filter(created_by=owner).count() == 2
    assert [i.url for i in report.created] == [
        "https://q0.example.org/feed",
        "https://q1.example.org/feed",
    ]
    assert [(i.url, i.reason) for i in report.skipped] == [
        (f"https://q{n}.example.org/feed", "quota: You may add at most 2 sources.") for n in (2, 3)
    ]
    # A known URL costs nothing against the quota: still found after the quota is reached.
    assert [i.source_id for i in report.existing] == [known.id]


@pytest.mark.django_db
def test_it_fills_an_empty_category_but_never_replaces_one_or_a_title(django_user_model):
    staff = django_user_model.objects.create_user("curator", is_staff=True)
    curated = Source.objects.create(
        url="https://curated.example.org/feed", title="Curated", category="Picked"
    )
    bare = Source.objects.create(url="https://bare.example.org/feed", title="Bare")
    data = opml_doc(
        folder("Other", feed(curated.url, "Renamed"), feed(bare.url, "Renamed too")),
    )

    report = import_opml(user=staff, data=data)

    curated.refresh_from_db()
    bare.refresh_from_db()
    assert (curated.title, curated.category) == ("Curated", "Picked")
    assert (bare.title, bare.category) == ("Bare", "Other")
    reasons = {item.url: item.reason for item in report.existing}
    assert reasons == {curated.url: "kept its category 'Picked'", bare.url: ""}


@pytest.mark.django_db
def test_it_keeps_a_category_a_curator_sets_while_the_import_runs(django_user_model, monkeypatch):
    staff = django_user_model.objects.create_user("curator", is_staff=True)
    source = Source.objects.create(url="https://race.example.org/feed", title="Race")
    read_sources = opml_module._known_sources

    def curator_saves_after_the_read(pending):
        known = read_sources(pending)  # the import now holds category ''
        Source.objects.filter(id=source.id).update(category="Curated")
        return known

    monkeypatch.setattr(opml_module, "_known_sources", curator_saves_after_the_read)

    report = import_opml(user=staff, data=opml_doc(folder("Imported", feed(source.url))))

    source.refresh_from_db()
    assert source.category == "Curated"
    assert [item.category for item in report.existing] == ["Curated"]


@pytest.mark.django_db
def test_it_lets_a_user_who_is_not_staff_categorize_only_sources_they_added(owner):
    shared = Source.objects.create(url="https://shared.example.org/feed", title="Shared")

    import_opml(user=owner, data=opml_doc(folder("Mine", feed(shared.url))))

    shared.refresh_from_db()
    assert shared.category == ""


# --- Exporting ------------------------------------------------------------------------------


def _sources_of_every_kind() -> list[Source]:
    return [
        Source.objects.create(
            kind=SourceKind.RSS,
            url="https://ai.example.org/feed.xml?format=rss&lang=en",
            title='Models & "agents" <weekly>\x01',
            site_url="https://ai.example.org/",
            category="Tech/AI",
        ),
        Source.objects.create(
            kind=SourceKind.TELEGRAM, url="https://t.me/durov", title="Durov", category="Tech"
        ),
        Source.objects.create(kind=SourceKind.WEB, url="https://web.example.org/news"),
        # A t.me URL polled as a feed: only infatium:kind can bring its kind back.
        Source.objects.create(kind=SourceKind.RSS, url="https://t.me/s/feedish", title="Feedish"),
    ]


def _as_rows(sources) -> set[tuple[str, str, str, str, str]]:
    return {(s.kind, s.url, s.title, s.category, s.site_url) for s in sources}


@pytest.mark.django_db
def test_it_exports_nested_folders_that_any_xml_parser_reads():
    _sources_of_every_kind()

    root = ET.fromstring(export_opml(Source.objects.all()))

    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "Infatium sources"
    assert root.findtext("head/dateCreated")
    (tech,) = root.findall("body/outline[@text='Tech']")
    (ai,) = tech.findall("outline[@text='AI']")
    (feed_outline,) = ai.findall("outline")
    assert feed_outline.get("type") == "rss"
    assert feed_outline.get("xmlUrl") == "https://ai.example.org/feed.xml?format=rss&lang=en"
    assert feed_outline.get("title") == 'Models & "agents" <weekly>'  # the control char dropped
    (channel,) = tech.findall("outline[@type='link']")
    assert channel.get("url") == "https://t.me/durov"
    assert channel.get(f"{{{INFATIUM_NS}}}kind") == "telegram"
    (page,) = root.findall("body/outline[@url='https://web.example.org/news']")
    assert (page.get("type"), page.get(f"{{{INFATIUM_NS}}}kind")) == ("link", "web")
    assert page.get("title") is None  # no title: `text` carries the URL, not read back as one


@pytest.mark.django_db
def test_it_round_trips_an_export_without_creating_anything(owner):
    sources = _sources_of_every_kind()
    before = _as_rows(sources)
    exported = export_opml(Source.objects.all())

    again = import_opml(user=owner, data=exported)

    assert again.created == again.skipped == again.invalid == []
    assert {item.source_id for item in again.existing} == {s.id for s in sources}
    assert _as_rows(Source.objects.all()) == before

    # Into an empty database: the same sources, kinds and categories come back.
    Source.objects.all().delete()
    restored = import_opml(user=owner, data=exported)

    assert len(restored.created) == 4
    expected = {
        (kind, url, title.replace("\x01", ""), category, site)
        for kind, url, title, category, site in before
    }
    assert _as_rows(Source.objects.all()) == expected


# --- Hostile files --------------------------------------------------------------------------

_audit: list[tuple[str, tuple[object, ...]]] | None = None


def _audit_hook(event: str, args: tuple[object, ...]) -> None:
    if _audit is not None and event in ("open", "socket.connect", "urllib.Request"):
        _audit.append((event, args))


sys.addaudithook(_audit_hook)  # hooks cannot be removed; it records only inside audited()


@contextlib.contextmanager
def audited() -> Iterator[list[tuple[str, tuple[object, ...]]]]:
    """Record the files this thread's Python code opens and the sockets it connects."""
    global _audit
    _audit = seen = []
    try:
        yield seen
    finally:
        _audit = None


def test_the_audit_hook_sees_file_reads():
    # Otherwise "nothing was opened" below would pass vacuously.
    with audited() as seen, open("/etc/passwd", "rb"):
        pass

    assert any(event == "open" and args[0] == "/etc/passwd" for event, args in seen)


XXE_PASSWD = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><head><title>&xxe;</title></head>
<body><outline type="rss" text="&xxe;" xmlUrl="https://x.example.org/feed"/></body></opml>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<opml version="2.0"><head><title>&lol9;</title></head>
<body><outline type="rss" text="&lol9;" xmlUrl="https://x.example.org/feed"/></body></opml>"""


def external_dtd(url: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE opml SYSTEM "{url}">'
        '<opml version="2.0"><head/><body>'
        '<outline type="rss" text="x" xmlUrl="https://x.example.org/feed"/></body></opml>'
    ).encode()


def external_entity(url: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY ext SYSTEM "{url}">]>'
        '<opml version="2.0"><head><title>&ext;</title></head><body/></opml>'
    ).encode()


def test_it_refuses_an_external_entity_without_reading_the_file():
    with audited() as seen, pytest.raises(OpmlError, match="DOCTYPE"):
        parse_opml(XXE_PASSWD)

    assert seen == []


@pytest.mark.parametrize("make", [external_dtd, external_entity])
def test_it_refuses_external_dtds_and_entities_without_a_request(feed_server, make):
    url = feed_server.serve("/evil.dtd", b'<!ENTITY x "pwned">', content_type="text/plain")

    with audited() as seen, pytest.raises(OpmlError, match="DOCTYPE"):
        parse_opml(make(url))

    assert feed_server.hits("/evil.dtd") == []
    assert seen == []


def test_it_refuses_billion_laughs_without_expanding_anything():
    tracemalloc.start()
    try:
        with pytest.raises(OpmlError, match="DOCTYPE"):
            parse_opml(BILLION_LAUGHS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Expanded, &lol9; alone is 3 GB of text.
    assert peak < 5 * 1024 * 1024


def test_it_refuses_a_file_over_the_byte_cap(settings):
    settings.OPML_MAX_BYTES = 2048
    padding = "<!-- %s -->"
    at_limit = opml_doc(feed("https://a.example.org/feed"))
    at_limit = at_limit.replace(
        b"<body>", b"<body>" + (padding % ("x" * (2048 - len(at_limit) - 9))).encode()
    )
    assert len(at_limit) == 2048

    assert [e.url for e in parse_opml(at_limit)] == ["https://a.example.org/feed"]
    with pytest.raises(OpmlError, match="larger than 2048 bytes"):
        parse_opml(at_limit + b" ")


def test_it_refuses_more_outlines_than_the_cap(settings):
    settings.OPML_MAX_OUTLINES = 3
    three = [feed(f"https://{n}.example.org/feed") for n in range(3)]

    assert len(parse_opml(opml_doc(*three))) == 3
    with pytest.raises(OpmlError, match="more than 3 outlines"):
        parse_opml(opml_doc(*three, folder("Folders count too")))


def test_it_refuses_outlines_nested_absurdly_deep():
    deep = "<outline text='f'>" * 65 + feed("https://deep.example.org/") + "</outline>" * 65

    with pytest.raises(OpmlError, match="nested more than 64 levels"):
        parse_opml(opml_doc(deep))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"https://a.example.org/feed\nhttps://b.example.org/feed\n", "not well-formed XML"),
        (b'{"feeds": ["https://a.example.org/feed"]}', "not well-formed XML"),
        (b"<opml><body><outline></body></opml>", "not well-formed XML"),
        (b"<!DOCTYPE html><html><body><p>Sign in</p></body></html>", "HTML page"),
        (b"<html><head><title>Sign in</head><body><br></body></html>", "HTML page"),
        (b"<html xmlns='http://www.w3.org/1999/xhtml'><body/></html>", "HTML page"),
        (b"<rss version='2.0'><channel/></rss>", "root element is <rss>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
        (b"<?xml version='1.0' encoding='x-unknown'?><opml/>", "could not be read as XML"),
        (b"\xff\xfe\x00garbage", "not well-formed XML"),
    ],
)
def test_it_explains_why_a_file_is_not_opml(data, message):
    with pytest.raises(OpmlError, match=message):
        parse_opml(data)


# --- Admin ----------------------------------------------------------------------------------

SOURCES = "/admin/feeds/source/"
IMPORT = "/admin/feeds/source/opml/import/"
EXPORT = "/admin/feeds/source/opml/export/"


@pytest.fixture
def curator_client(django_user_model, settings) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    curator = django_user_model.objects.create_superuser("curator", "c@example.test", "pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(curator)
    return client


def _upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="text/x-opml")


def _csrf(client: Client) -> str:
    page = client.get(IMPORT)
    assert page.status_code == 200
    return page.cookies["csrftoken"].value


@pytest.mark.django_db
def test_it_imports_a_file_uploaded_in_the_admin(curator_client):
    token = _csrf(curator_client)

    response = curator_client.post(
        IMPORT,
        {"file": _upload("feeds.opml", NESTED), "csrfmiddlewaretoken": token},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == SOURCES
    shown = {row.url for row in response.context["cl"].result_list}
    assert "https://ai.example.org/feed.xml" in shown
    assert Source.objects.get(url="https://ai.example.org/feed.xml").category == "Tech/AI"
    texts = [str(m) for m in response.context["messages"]]
    assert "OPML import: 5 created, 0 already there, 1 skipped, 0 invalid." in texts
    assert any("https://page.example.org/" in text for text in texts)


@pytest.mark.django_db
def test_it_refuses_an_admin_upload_without_the_csrf_token(curator_client):
    response = curator_client.post(IMPORT, {"file": _upload("feeds.opml", NESTED)})

    assert response.status_code == 403
    assert not Source.objects.exists()


@pytest.mark.django_db
def test_it_shows_why_an_admin_upload_is_refused(curator_client):
    token = _csrf(curator_client)

    response = curator_client.post(
        IMPORT, {"file": _upload("evil.opml", XXE_PASSWD), "csrfmiddlewaretoken": token}
    )

    assert response.status_code == 200
    assert "DOCTYPE" in response.context["form"].errors["file"][0]
    assert b"root:" not in response.content
    assert not Source.objects.exists()


@pytest.mark.django_db
def test_it_links_import_and_export_from_the_change_list_and_exports(curator_client):
    Source.objects.create(url="https://a.example.org/feed", title="A", category="Tech")
    Source.objects.create(url="https://b.example.org/feed", title="B")

    listing = curator_client.get(SOURCES).content.decode()
    everything = curator_client.get(EXPORT)

    assert f'href="{IMPORT}"' in listing and f'href="{EXPORT}"' in listing
    assert everything["Content-Type"].startswith("text/x-opml")
    assert "attachment" in everything["Content-Disposition"]
    assert {e.url for e in parse_opml(everything.content)} == {
        "https://a.example.org/feed",
        "https://b.example.org/feed",
    }


@pytest.mark.django_db
def test_it_exports_the_selected_sources_from_the_admin_action(django_user_model):
    curator = django_user_model.objects.create_superuser("curator", "c@example.test", "pw")
    client = Client()
    client.force_login(curator)
    picked = Source.objects.create(url="https://a.example.org/feed", title="A")
    Source.objects.create(url="https://b.example.org/feed", title="B")

    response = client.post(SOURCES, {"action": "export_opml", "_selected_action": [str(picked.id)]})

    assert response["Content-Type"].startswith("text/x-opml")
    assert [e.url for e in parse_opml(response.content)] == [picked.url]


@pytest.mark.django_db
def test_it_keeps_users_who_are_not_staff_out_of_the_admin_import(owner):
    client = Client()
    client.force_login(owner)

    page = client.get(IMPORT)
    upload = client.post(IMPORT, {"file": _upload("feeds.opml", NESTED)})
    export = client.get(EXPORT)

    for response in (page, upload, export):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert not Source.objects.exists()
