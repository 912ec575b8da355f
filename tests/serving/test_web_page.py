"""The chat page in a real headless browser (Debian's chromium driven by Playwright) against a real server.

Skipped, with the reason, when Playwright or a chromium binary is not installed. CI installs them with
``apt-get install -y chromium`` and ``pip install playwright`` (no ``playwright install``: the system
chromium is used).
"""

from __future__ import annotations

import os
import re
import shutil
import time

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
    # A fake camera (a generated test pattern) that the page may use without asking (the Live tab's test).
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
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


def _live_stats(server) -> dict:
    import requests

    return requests.get(f"{server.url}/stats", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).json()[
        "live"
    ]


def test_live_tab_streams_the_webcam_and_answers_a_question(browser, server):
    """The Live tab: the fake webcam's frames reach the server over /v1/live (under the page's CSP), the
    frame results and a typed question's answer show on the page, and Stop ends the session."""
    from playwright.sync_api import expect

    before = _live_stats(server)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and "401" not in msg.text and errors.append(msg.text))
    page.goto(server.url + "/")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    expect(page.locator("#model")).to_contain_text("model:")

    page.click("#tab-live")
    expect(page.locator("#live-tab")).to_be_visible()
    expect(page.locator("#chat-tab")).to_be_hidden()
    page.fill("#live-max-tokens", "8")
    page.click("#live-camera")
    expect(page.locator("#live-status")).to_contain_text("live:", timeout=30_000)
    # Two frames processed by the model (1 frame/s: the fixture checkpoint's fps), shown on the page.
    expect(page.locator("#live-frames")).to_have_attribute(
        "data-results", re.compile(r"^([2-9]|\d\d+)$"), timeout=30_000
    )
    expect(page.locator("#live-frames")).to_contain_text("visual tokens kept")
    stats = _live_stats(server)
    assert stats["sessions"] == 1 and stats["frames"] - before["frames"] >= 2

    page.fill("#live-question", "What do you see?")
    page.keyboard.press("Enter")
    answer = page.locator(".live-entry.answer[data-state='done']")
    expect(answer).to_have_count(1, timeout=30_000)
    assert answer.inner_text().strip(), "the live answer is empty"
    assert page.locator(".live-entry.question").inner_text() == "What do you see?"
    assert _live_stats(server)["answers"] - before["answers"] == 1

    page.click("#live-stop")
    expect(page.locator("#live-status")).to_contain_text("stopped")
    deadline = time.monotonic() + 10
    while _live_stats(server)["sessions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_stats(server)["sessions"] == 0
    assert not errors, errors
    page.close()
