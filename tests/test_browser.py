"""End to end in a real browser: `streamlit run app_streamlit.py` driven by headless Chromium.

A customer asks a question, sees a cited answer, asks for a person and is told what happens next;
the hand-off must be in the interaction database. A screenshot is saved to test-artifacts/.
Skipped only on a developer machine without /usr/bin/chromium; under CI it always runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from kb.settings import Settings
from kb.state.store import StateStore
from kb.store import KnowledgeStore
from tests.support.app_kb import write_kb

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason="needs Debian's chromium at /usr/bin/chromium"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    data = tmp_path / "data"
    report = ingest([write_kb(tmp_path / "docs")], KnowledgeStore(Settings(data_dir=data)))
    assert report.ok
    db = f"sqlite:///{tmp_path / 'state.sqlite'}"
    port = _free_port()
    env = {**os.environ, "KBASSIST_DATA_DIR": str(data), "KBASSIST_STATE_URL": db}
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "app_streamlit.py"),
            "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text()
                    ) from None
                time.sleep(0.25)
        yield url, db
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_customer_asks_gets_a_cited_answer_and_hands_off(server: tuple[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, db = server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"{url}/?workspace=customer", timeout=60_000)
            expect(page.get_by_role("heading", name="Help centre chat")).to_be_visible(timeout=60_000)

            box = page.get_by_placeholder("Type your question")
            box.fill("How long do I have to return an item in Sweden?")
            box.press("Enter")
            answer = page.locator('[data-testid="stChatMessage"]').filter(has_text="30 days")
            expect(answer).to_be_visible(timeout=60_000)
            expect(answer).to_contain_text("[1]")
            expect(page.get_by_text("1. Returns in Sweden — Return window")).to_be_visible()
            page.get_by_text("1. Returns in Sweden — Return window").click()  # the source opens to its passage
            expect(page.get_by_text("within 30 days of delivery").last).to_be_visible()

            page.get_by_role("button", name="Talk to a person").click()
            confirmation = page.get_by_text("I've passed your conversation to our support team")
            expect(confirmation).to_be_visible(timeout=30_000)
            expect(confirmation).to_contain_text("H-1")
            expect(page.get_by_placeholder("Type your question")).to_be_disabled()
            page.screenshot(path=str(ARTIFACTS / "browser-customer-handoff.png"), full_page=True)
        finally:
            browser.close()

    (handoff,) = StateStore(db, Settings()).handoffs.list()
    assert handoff.id == 1 and handoff.reason == "customer_asked" and handoff.question_id is None
    assert handoff.transcript[0] == {"role": "user", "content": "How long do I have to return an item in Sweden?"}
    assert handoff.searched["documents"] == ["returns-se"]
