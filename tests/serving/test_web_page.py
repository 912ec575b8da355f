"""The chat page in a real headless browser (Debian's chromium driven by Playwright) against a real server.

Skipped, with the reason, when Playwright or a chromium binary is not installed. CI installs them with
``apt-get install -y chromium`` and ``pip install playwright`` (no ``playwright install``: the system
chromium is used).
"""

from __future__ import annotations

import os
import shutil

import pytest
from server_helpers import API_KEY, MEDIA

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:  # e.g. a chromium too old or too new for this Playwright
            pytest.skip(f"chromium at {executable} could not be started by Playwright: {exc}")
        yield browser
        browser.close()


def _answers(page) -> list[str]:
    return page.locator(".message.assistant .text").all_inner_texts()


def test_upload_ask_stream_and_continue_the_chat(browser, server):
    from playwright.sync_api import expect

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # 401: the page's first call, before the key is entered (expected, and shown to the user).
    page.on("console", lambda msg: msg.type == "error" and "401" not in msg.text and errors.append(msg.text))
    page.goto(server.url + "/")

    # The server needs a key: the page says so, then connects once it is given.
    # (Waits use locators: the page's Content-Security-Policy forbids the eval behind wait_for_function.)
    expect(page.locator("#model")).to_contain_text("API key")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    expect(page.locator("#model")).to_contain_text("model:")

    # Upload a video, ask, and watch the answer stream in.
    page.set_input_files("#media", str(MEDIA / "video_moving.mp4"))
    expect(page.locator("#media-status")).to_contain_text("attached")
    page.fill("#max-tokens", "12")
    page.fill("#question", "What moves in the video?")
    page.click("#send")
    page.wait_for_selector(".message.assistant[data-state='done']", timeout=30_000)
    first = _answers(page)[0]
    assert first, "the streamed answer is empty"
    meta = page.locator(".message.assistant .meta").first.inner_text()
    assert "visual" in meta and "prompt" in meta
    assert page.locator(".message.user video").count() == 1

    # Continue the conversation about the same video (history re-sent, media by upload:// id).
    page.fill("#question", "And then?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant[data-state='done'] >> nth=1", timeout=30_000)
    assert len(_answers(page)) == 2
    history = page.evaluate("state.messages")
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[0]["content"][0]["video_url"]["url"].startswith("upload://")

    # An image in a new chat.
    page.click("#new-chat")
    assert page.locator(".message").count() == 0
    page.set_input_files("#media", str(MEDIA / "image_a.png"))
    expect(page.locator("#media-status")).to_contain_text("attached")
    page.fill("#question", "Describe the image.")
    page.click("#send")
    page.wait_for_selector(".message.assistant[data-state='done']", timeout=30_000)
    assert page.locator(".message.user img").count() == 1
    assert not errors, errors
    page.close()
