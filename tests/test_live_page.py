"""The live page in a real browser (Debian's Chromium driven by Playwright), against the real
ASGI server: sign in, see a post created in the backend appear without a reload, and catch up
by itself after the server was down."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from django.db import connection

from feeds.models import RawPost, Source
from processing import services
from processing.models import Feed
from tests.support.stack import running, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def browser_page():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("no Chromium here (Debian: apt-get install chromium)")
    # Playwright's sync API runs an event loop on this thread; the ORM calls below are plain
    # blocking test code all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def web(request, tmp_path, redis_client):
    with running(request, tmp_path) as stack:
        yield stack


def _new_post(source: Source, n: int) -> None:
    # Playwright's event loop owns this thread and the broadcast after commit uses
    # async_to_sync, so the backend work runs on a thread of its own, as a worker would.
    thread = threading.Thread(target=_create_post, args=(source, n))
    thread.start()
    thread.join(timeout=30)


def _create_post(source: Source, n: int) -> None:
    raw = RawPost.objects.create(
        source=source,
        external_id=f"live-{n}",
        title=f"Live story {n}",
        text="Something happened.",
        url=f"https://example.test/live/{n}",
        content_hash=f"{n:064d}",
    )
    services.process_raw_posts(raw_post_ids=[raw.id])
    connection.close()


def test_it_shows_new_posts_live_and_catches_up_after_an_outage(
    web, browser_page, django_user_model
):
    from playwright.sync_api import expect

    django_user_model.objects.create_user(username="reader", password="a-long-password-1")
    user = django_user_model.objects.get(username="reader")
    source = Source.objects.create(url="http://feeds.invalid/live.xml", title="Live Wire")
    feed = Feed.objects.create(owner=user, name="Live", summaries=False, tags=False)
    feed.sources.add(source)
    _new_post(source, 1)
    page = browser_page
    base = f"http://127.0.0.1:{web.web_port}"

    page.goto(base + "/")
    page.fill("input[name=username]", "reader")
    page.fill("input[name=password]", "a-long-password-1")
    page.click("button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-ws", "open", timeout=15000)
    expect(page.locator("#posts li h2")).to_have_text(["Live story 1"])
    page.evaluate("window.__noReload = 1")

    _new_post(source, 2)
    expect(page.locator("#posts li h2")).to_have_text(["Live story 2", "Live story 1"])
    expect(page.locator("#posts li").first).to_contain_text("Live Wire")

    # The server goes away; a post is created meanwhile; the page reconnects and catches up.
    web.stop_one("web")
    expect(page.locator("body")).to_have_attribute("data-ws", "closed", timeout=15000)
    _new_post(source, 3)
    web.start_web()
    expect(page.locator("#posts li h2")).to_have_text(
        ["Live story 3", "Live story 2", "Live story 1"], timeout=30000
    )
    assert page.evaluate("window.__noReload") == 1
    assert wait_for(lambda: feed.posts.count() == 3, timeout=1, what="three posts")
