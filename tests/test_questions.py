"""Malformed or oversized questions get a clear error, in Python and on the command line.

Every case here used to reach retrieval: control characters and over-long words were answered
silently, a lone surrogate crashed the embedder with a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assist.service import MAX_WORD_CHARS, Assistant, QuestionError, validate_question
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore

LIMIT = 400
KBASSIST = Path(sys.executable).with_name("kbassist")


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    root = tmp_path_factory.mktemp("questions")
    (root / "docs").mkdir()
    (root / "docs" / "returns.md").write_text(
        "---\naudience: customer\nmarket: SE\n---\n# Returns\n\nYou can return an item within 30 days of delivery.\n"
    )
    settings = Settings(data_dir=root / "data", max_question_chars=LIMIT)
    store = KnowledgeStore(settings)
    assert ingest([root / "docs"], store).ok
    return Assistant(store, settings)


BAD = [
    pytest.param("", "empty", id="empty"),
    pytest.param(" \t\n\r\x0b\x0c ", "empty", id="whitespace-only"),
    pytest.param("\u200b\u200d\ufeff \u2060", "empty", id="zero-width-only"),
    pytest.param("How long to return? " * 25, f"limit is {LIMIT}", id="over-max-chars"),
    pytest.param("How long\x00 do I have to return?", "control character (U+0000)", id="nul"),
    pytest.param("return \x1b[31mnow\x1b[0m", "control character (U+001B)", id="ansi-escape"),
    pytest.param("return\x7f window", "control character (U+007F)", id="del"),
    pytest.param("return\x9b window", "control character (U+009B)", id="c1-control"),
    pytest.param("return window \ud800", "not valid Unicode", id="lone-high-surrogate"),
    pytest.param("r\udcc3\udca4ckgabe", "not valid Unicode", id="surrogate-escaped-bytes"),
    pytest.param("return " + "A" * (MAX_WORD_CHARS + 1), f"limited to {MAX_WORD_CHARS}", id="long-token"),
    pytest.param("x" * LIMIT, f"limited to {MAX_WORD_CHARS}", id="long-token-within-limit"),
    pytest.param(b"How long do I have?", "must be text", id="bytes"),
    pytest.param(None, "must be text", id="none"),
]


@pytest.mark.parametrize(("question", "message"), BAD)
def test_assistant_rejects_with_a_clear_error(assistant: Assistant, question: object, message: str) -> None:
    with pytest.raises(QuestionError) as info:
        assistant.ask(question, role="customer")  # type: ignore[arg-type]
    text = str(info.value)
    assert message in text
    assert "\n" not in text and len(text) < 200, "one readable line"
    assert isinstance(info.value, ValueError), "callers that catch ValueError keep working"
    if isinstance(question, str) and question.strip():
        assert question.strip()[:12] not in text, "the error never echoes the customer's text"


@pytest.mark.parametrize(
    "question",
    [
        pytest.param("How many days\tdo I have\nto return\x0ban item?", id="whitespace-controls-collapse"),
        pytest.param("How many\u200b days do I have to return an item? \u202eשלום", id="zero-width-and-rtl"),
        pytest.param("How many days do I have to return an item? " + "a" * MAX_WORD_CHARS, id="longest-word"),
        pytest.param(("How many days do I have to return an item? " * 10)[: LIMIT - 1] + "?", id="exactly-the-limit"),
    ],
)
def test_unusual_but_valid_questions_are_answered(assistant: Assistant, question: str) -> None:
    answer = assistant.ask(question, role="customer", market="SE")
    assert answer.question == " ".join(question.split())
    assert answer.text


def test_scripts_without_spaces_are_not_one_long_word() -> None:
    sentence = "返品期間は何日ですか" * 40  # 400 characters, no spaces: an ordinary question in Japanese
    assert validate_question(sentence, 2000) == sentence


def _cli(question: bytes | str, data_dir: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "KBASSIST_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [str(KBASSIST), "ask", question, "--role", "customer"], capture_output=True, env=env, timeout=120
    )


@pytest.mark.parametrize(
    ("question", "message"),
    [
        pytest.param("", b"empty", id="empty"),
        pytest.param("   \t ", b"empty", id="whitespace-only"),
        pytest.param("a" * 2500, b"limit is 2000", id="over-max-chars"),
        pytest.param("refund\x01 please", b"control character (U+0001)", id="control-char"),
        pytest.param(b"R\xfcckgabe \xff\xfe", b"not valid Unicode", id="invalid-utf8-argv"),
        pytest.param("refund " + "Z" * 1000, b"words are limited", id="long-token"),
    ],
)
def test_cli_exits_2_with_one_line_on_stderr(question: bytes | str, message: bytes, tmp_path: Path) -> None:
    result = _cli(question, tmp_path / "data")
    assert result.returncode == 2, result.stderr.decode(errors="replace")
    assert result.stdout == b""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"error: the question") and message in lines[0]
    assert b"Traceback" not in result.stderr
