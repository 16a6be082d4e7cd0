"""End to end in a real browser: `streamlit run app_customer.py` and `app_streamlit.py` driven by
headless Chromium.

A customer asks a question, sees a cited answer, asks for a person and is told what happens next;
the hand-off must be in the state store. A customer who edits the URL to ask for the owner's
workspace still gets the chat alone. A member of staff is refused with a wrong password, signs in,
sees only what their role allows and signs out. Screenshots are saved to test-artifacts/.
Skipped only on a developer machine without /usr/bin/chromium; under CI it always runs.

Every page is also checked with axe-core (``node_modules/axe-core``, a test-only npm dependency that
``scripts/test`` installs from package-lock.json): no serious or critical violation may remain. The
findings of each page are written to test-artifacts/axe-PAGE.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline import ingest
from kb.settings import Settings
from kb.state.store import StateStore
from kb.store import KnowledgeStore
from tests.support.app_kb import write_kb

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "correct horse battery"
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


# Rules that find problems inside Streamlit's own widgets, which the app's markup cannot change.
# Each is excluded for the named elements only; everything else on the page is still checked.
AXE_EXCLUDE: list[list[str]] = []
AXE_DISABLED_RULES: dict[str, str] = {}


def check_accessibility(page: Any, name: str) -> dict[str, int]:
    """Run axe-core on ``page``; fail on serious or critical violations. Returns counts by impact."""
    if not AXE.is_file():
        if os.environ.get("CI"):
            raise AssertionError(f"{AXE} is missing: run `npm ci` (scripts/test does)")
        pytest.skip("axe-core is not installed (npm ci)")
    page.wait_for_timeout(500)  # let Streamlit finish drawing
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    options = {
        "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
        "rules": {rule: {"enabled": False} for rule in AXE_DISABLED_RULES},
    }
    result = page.evaluate(
        "([exclude, options]) => axe.run({include: [document], exclude: exclude}, options)", [AXE_EXCLUDE, options]
    )
    violations = result["violations"]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(violations, indent=2), encoding="utf-8")
    counts: dict[str, int] = {}
    for v in violations:
        counts[v["impact"] or "none"] = counts.get(v["impact"] or "none", 0) + len(v["nodes"])
    print(f"axe {name}: {len(result['passes'])} rules passed; violations by impact {counts or 'none'}")
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:5])
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, f"axe found on {name}:\n" + "\n".join(serious)
    return counts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Server = Callable[[str], tuple[str, str]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Server]:
    """Start ``streamlit run <app>`` on a KB and a state store of this test's; returns (url, state URL)."""
    data = tmp_path / "data"
    report = ingest([write_kb(tmp_path / "docs")], KnowledgeStore(Settings(data_dir=data)))
    assert report.ok
    db = f"sqlite:///{tmp_path / 'state.sqlite'}"
    env = {**os.environ, "KBASSIST_DATA_DIR": str(data), "KBASSIST_STATE_URL": db}
    started: list[tuple[subprocess.Popen, object]] = []

    def start(app: str) -> tuple[str, str]:
        port = _free_port()
        log_path = tmp_path / f"{app}.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(ROOT / app),
                "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append((process, log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                return url, db
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("streamlit did not start:\n" + log_path.read_text()) from None
                time.sleep(0.25)

    try:
        yield start
    finally:
        for process, log in started:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def test_customer_asks_gets_a_cited_answer_and_hands_off(serve: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, db = serve("app_customer.py")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url, timeout=60_000)
            expect(page.get_by_role("heading", name="Help centre chat")).to_be_visible(timeout=60_000)
            # The customer sees the product only: no Streamlit menu, no deploy button.
            expect(page.locator('[data-testid="stMainMenu"]')).to_have_count(0)
            expect(page.locator('[data-testid="stAppDeployButton"]')).to_have_count(0)
            check_accessibility(page, "customer-chat")

            box = page.get_by_placeholder("Type your question")
            box.fill("How long do I have to return an item in Sweden?")
            box.press("Enter")
            # Before an answer under one country's rules, the chat asks which country applies.
            expect(page.get_by_text("Which country are you in?")).to_be_visible(timeout=60_000)
            expect(page.locator('[role="status"][aria-live="polite"]')).to_have_text("Please choose your country.")
            page.get_by_role("button", name="Sweden (SE)").click()
            answer = page.locator('[data-testid="stChatMessage"]').filter(has_text="30 days")
            expect(answer).to_be_visible(timeout=60_000)
            expect(answer).to_contain_text("[1]")
            expect(page.get_by_text("1. Returns in Sweden — Return window")).to_be_visible()
            page.get_by_text("1. Returns in Sweden — Return window").click()  # the source opens to its passage
            expect(page.get_by_text("within 30 days of delivery").last).to_be_visible()
            live = page.locator('[role="status"][aria-live="polite"]')
            expect(live).to_have_text("Help centre replied (reply 1).")
            check_accessibility(page, "customer-answer")

            page.get_by_role("button", name="Helpful", exact=True).click()  # thumbs up on the answer
            expect(page.get_by_text("Thanks for your feedback.")).to_be_visible(timeout=30_000)
            check_accessibility(page, "customer-feedback")  # captions and the open passage, at AA contrast

            page.get_by_role("button", name="Talk to a person").click()
            contact = page.get_by_role("textbox", name="E-mail or phone number (optional)")
            expect(contact).to_be_visible(timeout=30_000)
            contact.fill("jo@example.com")
            page.get_by_text("We'll use this only to answer this question.").click()  # the consent box
            page.get_by_role("button", name="Pass to a person").click()
            confirmation = page.get_by_text("I've passed your conversation to our support team")
            expect(confirmation).to_be_visible(timeout=30_000)
            expect(confirmation).to_contain_text("H-1")
            expect(page.get_by_text("Status: waiting for a person")).to_be_visible()
            expect(page.get_by_placeholder("Type your question")).to_be_disabled()
            page.screenshot(path=str(ARTIFACTS / "browser-customer-handoff.png"), full_page=True)

            # Coming back to the same address shows the conversation and the hand-off's status.
            assert "c=" in page.url
            page.goto(page.url, timeout=60_000)
            expect(page.get_by_text("Status: waiting for a person")).to_be_visible(timeout=60_000)
            expect(page.locator('[data-testid="stChatMessage"]').filter(has_text="30 days")).to_be_visible()
        finally:
            browser.close()

    (handoff,) = StateStore(db, Settings()).handoffs.list()
    assert handoff.id == 1 and handoff.reason == "customer_asked" and handoff.question_id is None
    assert handoff.transcript[0] == {"role": "user", "content": "How long do I have to return an item in Sweden?"}
    assert handoff.searched["documents"] == ["returns-se"]
    store = StateStore(db, Settings())
    assert store.handoffs.get(handoff.id, include_contact=True).contact.value == "jo@example.com"
    assert store.analytics.feedback_summary().counts == {"helpful": 1}


def test_customer_app_ignores_a_url_asking_for_staff_tools(serve: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, db = serve("app_customer.py")
    StateStore(db, Settings()).accounts.add("olive", PASSWORD, "owner", actor="cli:test")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for tampered in ("?workspace=owner", "?workspace=agent", "/owner?workspace=owner"):
                page.goto(f"{url}{tampered}", timeout=60_000)
                expect(page.get_by_role("heading", name="Help centre chat")).to_be_visible(timeout=60_000)
                expect(page.get_by_placeholder("Type your question")).to_be_visible()
                for staff in ("Knowledge base", "Agent assist", "Sign in"):
                    expect(page.get_by_role("heading", name=staff)).to_have_count(0)
                expect(page.get_by_text("Upload files")).to_have_count(0)
                expect(page.get_by_role("radio")).to_have_count(0)  # no workspace switcher
                expect(page.locator('[data-testid="stSidebarNav"]')).to_have_count(0)  # no page navigation
                expect(page.locator("input[type=password]")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "browser-customer-tampered-url.png"), full_page=True)
        finally:
            browser.close()


def test_staff_sign_in_role_and_sign_out(serve: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, db = serve("app_streamlit.py")
    StateStore(db, Settings()).accounts.add("adam", PASSWORD, "agent", actor="cli:test")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/?workspace=owner", timeout=60_000)
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=60_000)
            expect(page.get_by_role("heading", name="Knowledge base")).to_have_count(0)
            expect(page.get_by_role("heading", name="Agent assist")).to_have_count(0)

            def sign_in(name: str, password: str) -> None:
                page.get_by_role("textbox", name="User name").fill(name)
                page.get_by_role("textbox", name="Password").fill(password)
                page.get_by_role("button", name="Sign in").click()

            sign_in("adam", "not the password at all")
            expect(page.get_by_text("Wrong user name or password.")).to_be_visible(timeout=30_000)
            expect(page.get_by_role("heading", name="Agent assist")).to_have_count(0)

            sign_in("adam", PASSWORD)
            # An agent asking for the owner's workspace by URL gets agent assist, and no way to the owner tools.
            expect(page.get_by_role("heading", name="Agent assist")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Signed in as adam (agent)")).to_be_visible()
            expect(page.get_by_role("heading", name="Knowledge base")).to_have_count(0)
            expect(page.get_by_text("Upload files")).to_have_count(0)
            expect(page.get_by_role("radio")).to_have_count(0)
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "browser-staff-signed-in.png"), full_page=True)

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_text("You are signed out.")).to_be_visible(timeout=30_000)
            expect(page.get_by_role("heading", name="Agent assist")).to_have_count(0)
        finally:
            browser.close()

    entries = StateStore(db, Settings()).audit_log.entries()
    actions = [(e.action, e.target) for e in entries if e.action.startswith("sign")]
    assert actions == [("signout", "adam"), ("signin.success", "adam"), ("signin.failure", "adam")]


def test_agent_claims_and_resolves_a_handoff_from_the_queue(serve: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    from kb.state.handoffs import Contact

    url, db = serve("app_streamlit.py")
    store = StateStore(db, Settings())
    store.accounts.add("adam", PASSWORD, "agent", actor="cli:test")
    conversation = store.conversations.start("customer", "SE")
    store.conversations.log_question(
        conversation, role="customer", market="SE", question="Can I pay with gold bars?", search_query="gold bars",
        answer="I'm sorry, I can't answer that.", refused=True, confidence=0.1, doc_ids=[], latency_ms=1.0,
        generator="extractive",
    )  # fmt: skip
    contact = Contact("phone", "+46 70 123 45 67", consent=True, consent_text="We'll use this only to answer this.")
    handoff = store.handoffs.create(
        conversation, question="Can I pay with gold bars?", summary="Customer asked", reason="low_confidence",
        market="SE", language="en", searched={"query": "gold bars", "documents": []}, contact=contact,
    )  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url, timeout=60_000)
            page.get_by_role("textbox", name="User name").fill("adam")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Agent assist")).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="New contact")).to_be_visible()
            check_accessibility(page, "agent-workspace")

            page.get_by_role("tab", name="Hand-off queue").click()
            expect(page.get_by_text("1 open · 0 being handled")).to_be_visible(timeout=30_000)
            page.get_by_role("combobox", name="Open a hand-off").click()
            page.get_by_role("option", name=f"H-{handoff.id}").click()
            expect(page.get_by_text("Phone: +46 70 123 45 67").last).to_be_visible(timeout=30_000)
            check_accessibility(page, "handoff-queue")
            expect(page.get_by_text("I'm sorry, I can't answer that.")).to_be_visible()
            page.get_by_role("button", name="Claim").click()
            expect(page.get_by_text("Status: Being handled by adam")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "browser-agent-handoff-claimed.png"), full_page=True)
            page.get_by_role("textbox", name="How was it resolved? (optional)").fill("Explained payment options")
            page.get_by_role("button", name="Resolve").click()
            # The page stays on the queue tab after each action; the resolved hand-off leaves the active list.
            expect(page.get_by_text("0 open · 0 being handled")).to_be_visible(timeout=30_000)
        finally:
            browser.close()

    resolved = StateStore(db, Settings()).handoffs.get(handoff.id)
    assert resolved.status == "resolved" and resolved.resolved_by == "adam"
    assert [n.text for n in resolved.notes] == ["Explained payment options"]


def test_owner_workspace_is_accessible(serve: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, db = serve("app_streamlit.py")
    StateStore(db, Settings()).accounts.add("olive", PASSWORD, "owner", actor="cli:test")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"{url}/?workspace=owner", timeout=60_000)
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=60_000)
            check_accessibility(page, "staff-sign-in")
            page.get_by_role("textbox", name="User name").fill("olive")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Knowledge base", exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_text("All 6 documents")).to_be_visible(timeout=30_000)
            check_accessibility(page, "owner-workspace")
            page.get_by_role("tab", name="Evaluation").click()
            expect(page.get_by_role("heading", name="Answer quality")).to_be_visible(timeout=30_000)
            check_accessibility(page, "owner-evaluation")
            page.screenshot(path=str(ARTIFACTS / "browser-owner-workspace.png"), full_page=True)
        finally:
            browser.close()


def test_owner_runs_an_evaluation_and_the_page_stays_usable(serve: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, db = serve("app_streamlit.py")
    StateStore(db, Settings()).accounts.add("olive", PASSWORD, "owner", actor="cli:test")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"{url}/?workspace=owner", timeout=60_000)
            page.get_by_role("textbox", name="User name").fill("olive")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Knowledge base", exact=True)).to_be_visible(timeout=60_000)
            page.get_by_role("tab", name="Evaluation").click()
            page.get_by_role("combobox", name="Question set").click()
            page.get_by_role("option", name="adversarial").click()
            page.get_by_role("button", name="Run evaluation").click()
            expect(page.get_by_text("Evaluation on adversarial: running…")).to_be_visible(timeout=30_000)
            expect(page.get_by_role("button", name="Run evaluation")).to_be_disabled()
            # While it runs in the background the page still answers: another tab opens and draws.
            page.get_by_role("tab", name="Feedback & deflection").click()
            expect(page.get_by_text("Helpful rate")).to_be_visible(timeout=10_000)
            page.get_by_role("tab", name="Evaluation").click()
            expect(page.get_by_text("Evaluation on adversarial: finished")).to_be_visible(timeout=240_000)
            picker = page.get_by_role("combobox", name="Run")
            expect(picker).to_be_visible(timeout=30_000)
            runs = sorted(p.name for p in (Path(db.removeprefix("sqlite:///")).parent / "data" / "eval-runs").iterdir())
            assert runs and runs[-1].endswith("-adversarial")
            expect(picker).to_have_value(runs[-1])  # the picker shows the new run
            frame = page.locator("iframe").last
            expect(frame).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1500)
            inner = frame.content_frame.locator("body")
            expect(inner).to_contain_text("Latency per question", timeout=30_000)
            shown = frame.bounding_box()["height"]
            needed = frame.evaluate("f => f.contentDocument.documentElement.scrollHeight")
            assert shown >= needed - 2, (shown, needed)  # the report is not cut off in its frame
            page.screenshot(path=str(ARTIFACTS / "browser-owner-evaluation.png"), full_page=True)
            check_accessibility(page, "owner-evaluation-run")
        finally:
            browser.close()
