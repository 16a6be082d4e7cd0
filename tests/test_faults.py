"""Faults: a Chroma server that stops mid-run, a read-only store, a full disk, an unwritable state store.

Each fault is real: a ``chroma run`` server of this module's own is terminated and started again
on the same port and data; the disk faults run a real ``kbassist`` process under a read-only
mount (or permissions) and under ``RLIMIT_FSIZE`` (see ``tests/support/faults.py``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import streamlit as st
from chromadb.errors import InvalidArgumentError
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

import kbassist_cli
from assist.service import Assistant
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.state import StateUnavailable
from kb.state.store import StateStore
from kb.store import KnowledgeStore, RetryPolicy, StoreUnavailable, call_with_retries
from tests.support.chroma_server import ChromaServer
from tests.support.faults import error_lines, file_size_limit, kbassist, largest_file, read_only, run
from tests.support.stores import Snapshot, chunks_of, clean_snapshot, demo_subset, snapshot
from webui import customer

QUESTION = "how many days do I have to return an item"
APP = str(Path(__file__).resolve().parents[1] / "app_streamlit.py")
CUSTOMER_APP = str(Path(__file__).resolve().parents[1] / "app_customer.py")
STAFF_PASSWORD = "correct horse battery"
# Fast retries keep the tests quick; the count is what the tests check.
RETRIES = 3
RETRY_ENV = {"KBASSIST_CHROMA_RETRIES": str(RETRIES), "KBASSIST_CHROMA_RETRY_BACKOFF_S": "0.05"}


# -- the retry helper ---------------------------------------------------------------------------------


class Flaky:
    """A call that fails ``failures`` times with ``error``, then returns "ok"."""

    def __init__(self, error: Exception, failures: int = 10**6) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_connection_failures_are_retried_with_capped_backoff_then_reported() -> None:
    policy = RetryPolicy(retries=4, backoff_s=0.1, max_backoff_s=0.3)
    waits: list[float] = []
    flaky = Flaky(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(StoreUnavailable) as failed:
        call_with_retries(
            flaky, policy, server="http://db:8000", operation="query", sleep=waits.append, rng=lambda: 1.0
        )
    assert flaky.calls == 5
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.3]), "doubling, capped at max_backoff_s"
    assert sum(waits) <= policy.max_total_wait_s
    message = str(failed.value)
    assert "http://db:8000" in message and "5 attempts" in message and "Connection refused" in message
    assert "KBASSIST_CHROMA_URL" in message, "says what to check"


def test_jitter_only_shortens_the_wait() -> None:
    policy = RetryPolicy(retries=3, backoff_s=0.2, max_backoff_s=10.0)
    assert [policy.delay(i, rng=lambda: 0.0) for i in range(3)] == pytest.approx([0.1, 0.2, 0.4])
    assert [policy.delay(i, rng=lambda: 1.0) for i in range(3)] == pytest.approx([0.2, 0.4, 0.8])


def test_a_server_that_comes_back_is_not_an_error() -> None:
    waits: list[float] = []
    flaky = Flaky(httpx.RemoteProtocolError("Server disconnected without sending a response."), failures=2)
    result = call_with_retries(
        flaky, RetryPolicy(3, 0.1, 1.0), server="http://db:8000", operation="get", sleep=waits.append
    )
    assert result == "ok" and flaky.calls == 3 and len(waits) == 2


@pytest.mark.parametrize(
    "error",
    [
        InvalidArgumentError("Expected where to have exactly one operator"),
        ValueError("bad input"),
        httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'htp://'"),
    ],
)
def test_errors_other_than_connection_failures_are_not_retried(error: Exception) -> None:
    waits: list[float] = []
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        call_with_retries(flaky, RetryPolicy(5, 0.1, 1.0), server="http://db:8000", operation="get", sleep=waits.append)
    assert flaky.calls == 1 and waits == []


def test_no_retries_configured_fails_at_first_connection_failure() -> None:
    flaky = Flaky(httpx.ConnectError("refused"))
    with pytest.raises(StoreUnavailable, match="gave up after 1 attempt in"):
        call_with_retries(flaky, RetryPolicy(0, 0.1, 1.0), server="http://db:8000", operation="get", sleep=print)
    assert flaky.calls == 1


def test_retry_settings_are_bounded() -> None:
    assert Settings(chroma_retries=0).chroma_retries == 0
    for bad in ({"chroma_retries": -1}, {"chroma_retries": 100}, {"chroma_retry_backoff_s": -0.1}):
        with pytest.raises(ValueError):
            Settings(**bad)


# -- a Chroma server stopped mid-run ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """This module's own server: the tests stop it, so it must not be a shared one."""
    server = ChromaServer(tmp_path_factory.mktemp("faults-chroma"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(chroma_server: ChromaServer) -> ChromaServer:
    """The module's server, running (a test before may have left it stopped)."""
    if not chroma_server.running:
        chroma_server.start()
    return chroma_server


@pytest.fixture
def server_settings(server: ChromaServer, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        chroma_url=server.url,
        collection=f"faults-{uuid.uuid4().hex[:8]}",
        chroma_retries=RETRIES,
        chroma_retry_backoff_s=0.05,
    )


def _point_env_at(server: ChromaServer, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CLI and the app, which read KBASSIST_* variables, use this server and collection."""
    for name, value in {
        **RETRY_ENV,
        "KBASSIST_CHROMA_URL": server.url,
        "KBASSIST_COLLECTION": settings.collection,
        "KBASSIST_DATA_DIR": str(settings.data_dir),
    }.items():
        monkeypatch.setenv(name, value)


def _retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kb.store" and "retrying" in r.getMessage()]


def test_stopped_server_is_a_clear_error_after_retries_and_the_same_assistant_recovers(
    server: ChromaServer, server_settings: Settings, docs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KnowledgeStore(server_settings)
    assert ingest([docs_dir], store).ok
    assistant = Assistant(store, server_settings)
    before = assistant.ask(QUESTION, role="customer")
    assert not before.refused and "30 days" in before.text

    server.stop()
    caplog.set_level(logging.WARNING, logger="kb.store")
    with pytest.raises(StoreUnavailable) as failed:
        assistant.ask(QUESTION, role="customer")
    message = str(failed.value)
    assert message.startswith(f"cannot reach the Chroma server at {server.url}")
    assert f"{RETRIES + 1} attempts" in message
    assert isinstance(failed.value.__cause__, httpx.ConnectError), "what HttpClient raises for a stopped server"
    assert len(_retry_records(caplog)) == RETRIES
    assert all(QUESTION not in r.getMessage() for r in caplog.records), "no question text in the logs"

    server.start()  # same port, same data: a restart
    after = assistant.ask(QUESTION, role="customer")
    assert after.text == before.text
    assert [c.chunk_id for c in after.citations] == [c.chunk_id for c in before.citations]


def test_a_hung_server_times_out_is_retried_then_reported_and_recovers(
    server: ChromaServer, server_settings: Settings, docs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = server_settings.model_copy(update={"chroma_timeout_s": 0.5})
    store = KnowledgeStore(settings)
    assert ingest([docs_dir], store).ok
    assistant = Assistant(store, settings)
    before = assistant.ask(QUESTION, role="customer")

    server.pause()
    try:
        caplog.set_level(logging.WARNING, logger="kb.store")
        with pytest.raises(StoreUnavailable, match=f"cannot reach the Chroma server at {server.url}") as failed:
            assistant.ask(QUESTION, role="customer")
        assert isinstance(failed.value.__cause__, httpx.TimeoutException)
        assert len(_retry_records(caplog)) == RETRIES
        with pytest.raises(StoreUnavailable, match=r"did not answer within 0\.5s"):
            KnowledgeStore(settings)  # opening a store against a hung server fails too, in bounded time
    finally:
        server.resume()
    assert assistant.ask(QUESTION, role="customer").text == before.text


def test_write_to_a_stopped_server_is_retried_then_reported(
    server: ChromaServer, server_settings: Settings, docs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KnowledgeStore(server_settings)
    server.stop()
    caplog.set_level(logging.WARNING, logger="kb.store")
    with pytest.raises(StoreUnavailable, match="cannot reach the Chroma server"):
        store.chunks.upsert(ids=["x"], documents=["x"], embeddings=[[0.0] * 384])
    assert len(_retry_records(caplog)) == RETRIES

    server.start()
    report = ingest([docs_dir], store)
    assert report.ok and sorted(report.added) == ["fees", "refunds"]


@pytest.mark.parametrize(
    "args",
    [("ask", QUESTION), ("ingest", "DOCS"), ("kb", "list"), ("kb", "stats")],
    ids=["ask", "ingest", "kb-list", "kb-stats"],
)
def test_cli_reports_a_server_stopped_mid_run_in_one_line(
    args: tuple[str, ...],
    server: ChromaServer,
    server_settings: Settings,
    docs_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ingest([docs_dir], KnowledgeStore(server_settings)).ok
    _point_env_at(server, server_settings, monkeypatch)
    opened = kbassist_cli._open_store

    def open_then_stop_server(settings: Settings) -> KnowledgeStore:
        store = opened(settings)
        server.stop()
        return store

    monkeypatch.setattr(kbassist_cli, "_open_store", open_then_stop_server)
    argv = [str(docs_dir) if a == "DOCS" else a for a in args]
    result = CliRunner().invoke(kbassist_cli.app, argv)
    assert not server.running, "the server was stopped after the store was opened"
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), "an exit, not an unhandled exception"
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: cannot reach the Chroma server at {server.url}")
    assert "Traceback" not in result.output


def test_eval_run_reports_a_server_stopped_mid_run_in_one_line(
    server: ChromaServer, server_settings: Settings, docs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kb.store

    assert ingest([docs_dir], KnowledgeStore(server_settings)).ok
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": QUESTION, "role": "customer", "answerable": True}) + "\n")
    _point_env_at(server, server_settings, monkeypatch)

    def open_then_stop_server(settings: Settings) -> KnowledgeStore:
        store = KnowledgeStore(settings)
        server.stop()
        return store

    monkeypatch.setattr(kb.store, "KnowledgeStore", open_then_stop_server)
    argv = ["eval", "run", "--dataset", str(questions), "--current-kb", "--no-baseline", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(kbassist_cli.app, argv)
    assert not server.running
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), "an exit, not an unhandled exception"
    assert error_lines(result.stderr)[-1].startswith(f"error: cannot reach the Chroma server at {server.url}")
    assert "Traceback" not in result.output


def test_app_workspaces_show_an_error_while_the_server_is_down(
    server: ChromaServer, server_settings: Settings, docs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ingest([docs_dir], KnowledgeStore(server_settings)).ok
    _point_env_at(server, server_settings, monkeypatch)
    from kb.settings import load_settings
    from kb.state.store import open_state

    open_state(load_settings()).accounts.add("olive", STAFF_PASSWORD, "owner", actor="cli:test")
    st.cache_resource.clear()
    st.cache_data.clear()

    def signed_in(workspace: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params["workspace"] = workspace
        at.run()
        at.text_input(key="signin_username").input("olive")
        at.text_input(key="signin_password").input(STAFF_PASSWORD)
        at.button(key="FormSubmitter:staff_signin-Sign in").click().run()
        return at

    try:
        agent = signed_in("agent")
        assert not agent.exception and not agent.error
        agent.text_input(key="agent_question").input(QUESTION)

        server.stop()
        agent.button(key="FormSubmitter:agent_ask-Ask").click().run()
        assert not agent.exception, agent.exception
        (shown,) = [e.value for e in agent.error]
        assert "cannot reach the Chroma server" in shown and server.url in shown, "agents see what is wrong"

        chat = AppTest.from_file(CUSTOMER_APP, default_timeout=120)
        chat.run()
        assert not chat.exception, chat.exception
        assert [e.value for e in chat.error] == [customer.UNAVAILABLE], "customers see no internal details"

        owner = signed_in("owner")
        assert not owner.exception, owner.exception
        assert any("cannot reach the Chroma server" in e.value for e in owner.error)

        server.start()
        chat.run()
        assert not chat.error
        chat.selectbox(key="customer_market").select("SE").run()  # the country, asked before any answer
        chat.chat_input(key="customer_input").set_value(QUESTION).run()
        assert not chat.exception and not chat.error
        assert any("30 days" in m.value for m in chat.markdown)

        agent.run()
        agent.text_input(key="agent_question").input(QUESTION)
        agent.button(key="FormSubmitter:agent_ask-Ask").click().run()
        assert not agent.exception and not agent.error
        assert any("30 days" in m.value for m in agent.markdown)
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()


# -- read-only store and full disk (embedded store, real ``kbassist ingest`` processes) ---------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_subset(tmp_path_factory.mktemp("faults-corpus"), 12)


@pytest.fixture(scope="module")
def clean(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return clean_snapshot(corpus, tmp_path_factory.mktemp("faults-clean"))


@pytest.fixture
def seeded(corpus: Path, tmp_path: Path) -> Path:
    """A data dir holding the first three Markdown documents of the corpus, ingested from the corpus folder."""
    data_dir = tmp_path / "data"
    first = [p for p in sorted(corpus.iterdir()) if p.suffix == ".md"][:3]
    report = ingest(first, KnowledgeStore(Settings(data_dir=data_dir)))
    assert report.ok and len(report.added) == 3
    return data_dir


def _env(data_dir: Path) -> dict[str, str]:
    # Small write groups: documents are written throughout the run, so a fault lands between them.
    return {**os.environ, "KBASSIST_DATA_DIR": str(data_dir), "KBASSIST_INGEST_GROUP_CHUNKS": "8"}


def _assert_intact(data_dir: Path, before: Snapshot, clean: Snapshot) -> Snapshot:
    """What was stored before is still there, and every registered document has exactly its chunks."""
    after = snapshot(data_dir)
    chunks, registry = after
    assert {d: registry.get(d) for d in before[1]} == before[1]
    assert before[0].items() <= chunks.items()
    for doc_id, count in registry.items():
        assert count == clean[1][doc_id]
        assert chunks_of(chunks, doc_id) == chunks_of(clean[0], doc_id), f"{doc_id} registered but incomplete"
    return after


def _rerun_converges(corpus: Path, data_dir: Path, clean: Snapshot) -> None:
    assert ingest([corpus], KnowledgeStore(Settings(data_dir=data_dir))).ok
    assert snapshot(data_dir) == clean, "same chunk ids and texts, no duplicates, no orphans"


def test_ingest_into_a_read_only_store_fails_in_one_line_and_keeps_it(
    corpus: Path, clean: Snapshot, seeded: Path
) -> None:
    before = snapshot(seeded)
    chroma = seeded / "chroma"
    fault = read_only(chroma)
    done = fault.run(kbassist("ingest", str(corpus)), _env(seeded))
    assert done.returncode == 2, done.stderr
    assert error_lines(done.stderr) == [f"error: cannot open the store at {chroma}: {fault.reason}"], fault.mechanism
    assert "Traceback" not in done.stderr
    assert _assert_intact(seeded, before, clean) == before, "nothing could be written"
    _rerun_converges(corpus, seeded, clean)


def test_ingest_on_a_full_disk_fails_in_one_line_and_the_rerun_converges(
    corpus: Path, clean: Snapshot, seeded: Path
) -> None:
    before = snapshot(seeded)
    chroma = seeded / "chroma"
    # Room to open the store and write a little, not the whole corpus.
    limit = largest_file(chroma) + 64 * 1024
    done = run(kbassist("ingest", str(corpus)), _env(seeded), preexec_fn=file_size_limit(limit))
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done.stderr)
    assert line.startswith(f"error: cannot write to the store at {chroma}: {os.strerror(errno.EFBIG)}.")
    assert "run the same ingest again" in line
    assert "Traceback" not in done.stderr
    _, registry = _assert_intact(seeded, before, clean)
    assert len(registry) < len(clean[1]), "the disk filled up before the run finished"
    _rerun_converges(corpus, seeded, clean)


# -- the state store on a read-only folder or a full disk ------------------------------------------

# Opens the store and records questions until the disk refuses; prints what got in and the error.
LOGGING_CHILD = """
import json, sys
from kb.settings import Settings
from kb.state import StateUnavailable
from kb.state.store import StateStore
written, error = 0, None
try:
    log = StateStore("sqlite:///" + sys.argv[1], Settings()).conversations
    conversation = log.start("customer")
    for _ in range(int(sys.argv[2])):
        log.log_question(conversation, role="customer", market=None, question="where is my refund " * 200,
                         search_query="refund", answer="within 5 business days " * 200, refused=False,
                         confidence=0.8, doc_ids=["refunds"], latency_ms=1.0, generator="extractive")
        written += 1
except StateUnavailable as exc:
    error = str(exc)
print(json.dumps({"written": written, "error": error}))
"""


def _state(path: Path) -> StateStore:
    return StateStore(f"sqlite:///{path}", Settings())


def _seeded_log(path: Path) -> dict[str, int]:
    state = _state(path)
    conversation = state.conversations.start("agent")
    state.conversations.log_question(
        conversation, role="agent", market="SE", question="q", search_query="q", answer="a", refused=True,
        confidence=0.1, doc_ids=[], latency_ms=1.0, generator="extractive",
    )  # fmt: skip
    counts = state.analytics.counts()
    state.dispose()
    return counts


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_state_store_on_a_full_disk_is_a_clear_error_and_keeps_every_committed_row(tmp_path: Path) -> None:
    path = tmp_path / "log" / "state.sqlite"
    seeded = _seeded_log(path)
    limit = largest_file(path.parent) + 64 * 1024
    done = run([sys.executable, "-c", LOGGING_CHILD, str(path), "200"], dict(os.environ), file_size_limit(limit))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["error"] == f"the state store {path} is unavailable: {os.strerror(errno.EFBIG)}"
    assert 0 <= result["written"] < 200

    assert _integrity(path) == "ok"
    state = _state(path)
    counts = state.analytics.counts()
    assert counts["questions"] == seeded["questions"] + result["written"], "committed rows kept, the failed one not"
    assert counts["conversations"] == seeded["conversations"] + 1
    conversation = state.conversations.start("agent")  # with room again, it just works
    assert state.conversations.transcript(conversation) == []


def test_state_store_on_a_read_only_folder_is_a_clear_error_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "log" / "state.sqlite"
    seeded = _seeded_log(path)
    fault = read_only(path.parent)
    done = fault.run([sys.executable, "-c", LOGGING_CHILD, str(path), "1"], dict(os.environ))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"written": 0, "error": f"the state store {path} is unavailable: {fault.reason}"}
    assert _integrity(path) == "ok"
    assert _state(path).analytics.counts() == seeded


def test_a_damaged_state_store_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateUnavailable, match=f"{path} is unavailable: file is not a database"):
        _state(path)
