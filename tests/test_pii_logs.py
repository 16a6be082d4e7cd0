"""Personal data and customers' words never reach the logs at INFO or above.

Logs are shipped, retained and read far more widely than the interaction log, which redacts on
every write. So every path a customer's text takes (ingest, asking in each role, follow-ups,
the chat-model path, feedback, hand-offs, the command line with ``-v``) is run with INFO
logging captured, and none of the values may appear in any record, in any form.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assist.service import Assistant, QuestionError, requested_handoff
from ingest.pipeline import ingest
from kb.redact import luhn_valid
from kb.settings import Settings
from kb.state.handoffs import Contact
from kb.state.store import StateStore
from kb.store import KnowledgeStore
from tests.support.chat_server import ChatServer

EMAIL = "anna.lindqvist+bnpl@example.se"
PHONE = "+46 70 123 45 67"
CARD = "5555 5555 5555 4444"
IBAN = "SE45 5000 0000 0583 9825 7466"
PERSONNUMMER = "19811218-9876"
SENTENCE = "my neighbour's parrot Bellatrix shredded the delivery note last Tuesday"
QUESTION = (
    f"Hi, this is {EMAIL}, call me on {PHONE}. Honestly, {SENTENCE}. My card {CARD} was charged twice; "
    f"please refund to {IBAN}, personnummer {PERSONNUMMER}. How long do I have to return an item?"
)
FOLLOW_UP = f"and in Germany? {SENTENCE}"

DOCS = {
    "returns.md": f"""---
title: Returns
audience: customer
market: SE
---
# Returns

You can return an item within 30 days of delivery. Example of a message we receive: "{SENTENCE}", sent by
{EMAIL} ({PHONE}).
""",
    "returns-procedure.md": """---
title: Handling returns
audience: agent
---
# Handling returns

1. Verify the customer.
2. Report the return for the customer; this pauses the payment for 20 days.
""",
}


def _forms(value: str) -> set[str]:
    """The value as typed and with its separators removed (how a number is often logged)."""
    return {value, value.replace(" ", ""), value.replace(" ", "").replace("-", "")}


FORBIDDEN = set().union(*(_forms(v) for v in (EMAIL, PHONE, CARD, IBAN, PERSONNUMMER))) | {
    SENTENCE,
    "Bellatrix",
    QUESTION,
    FOLLOW_UP,
}


def _offending(text: str) -> list[str]:
    return sorted(v for v in FORBIDDEN if v in text)


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    yield tmp_path


def test_the_values_are_what_they_claim_to_be() -> None:
    assert luhn_valid(CARD.replace(" ", "")), "the card number passes Luhn, so it looks real to any scanner"


def test_nothing_personal_is_logged_at_info(
    kb: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(data_dir=kb / "data")
    store = KnowledgeStore(settings)
    assert ingest([kb / "docs"], store).ok

    assistant = Assistant(store, settings)
    answers = []
    for role in ("customer", "agent"):
        answers.append(assistant.ask(QUESTION, role=role, market="SE"))
        history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": answers[-1].text}]
        answers.append(assistant.ask(FOLLOW_UP, role=role, conversation=history))
    answers.append(assistant.ask(f"Do you sell cruise insurance? IBAN {IBAN}, pnr {PERSONNUMMER}", role="customer"))
    assert answers[-1].handoff is not None, "the refusal path (with its hand-off record) was taken"
    with pytest.raises(QuestionError) as rejected:
        assistant.ask(QUESTION + " " + "x" * 3000, role="customer")
    assert not _offending(str(rejected.value)), "error messages do not repeat the question either"

    with ChatServer() as server:
        llm = Assistant(store, settings.model_copy(update={"llm_base_url": server.url, "llm_model": "m"}))
        llm.ask(QUESTION, role="customer", market="SE")
        llm.ask(FOLLOW_UP, role="agent", conversation=[{"role": "user", "content": QUESTION}])

    state = StateStore(settings.state_database_url, settings)
    log = state.conversations
    conversation = log.start("customer", "SE")
    question_id = log.log_question(
        conversation,
        role="customer",
        market="SE",
        question=QUESTION,
        search_query=answers[0].search_query,
        answer=answers[0].text,
        refused=answers[0].refused,
        confidence=answers[0].confidence,
        doc_ids=[c.doc_id for c in answers[0].citations],
        latency_ms=answers[0].latency_ms,
        generator=answers[0].generator,
    )
    log.rate(question_id, "not_helpful", rater="customer", comment=f"{SENTENCE}; call {PHONE} or mail {EMAIL}")
    handoff = requested_handoff(answers[:1], "SE", about=0)
    # The contact a customer leaves for the team is stored as given, and still never logged.
    contact = Contact("email", EMAIL, consent=True, consent_text="You may e-mail me about this question.")
    record = state.handoffs.create(
        conversation,
        question=handoff.question,
        summary=handoff.summary,
        searched=handoff.searched,
        reason=handoff.reason,
        market="SE",
        question_id=question_id,
        contact=contact,
    )
    assert EMAIL not in repr(record), "a hand-off's repr (tracebacks, debug logs) leaves the contact out"
    # A sign-in with personal data typed as the name (or the password) leaves no trace in the log either.
    assert not state.accounts.authenticate(EMAIL, PHONE, client_key=IBAN).ok

    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    lines = [formatter.format(r) for r in caplog.records if r.levelno >= logging.INFO]
    messages = "\n".join(lines)
    for expected in (
        "stored doc_id=", "answered role=customer", "answered role=agent", "hand-off id=", "feedback", "sign-in failed",
    ):  # fmt: skip
        assert expected in messages, f"the capture saw the INFO line {expected!r}: it is not vacuous"
    assert not [(line, _offending(line)) for line in lines if _offending(line)]


def test_cli_verbose_ask_keeps_personal_data_off_stderr(kb: Path) -> None:
    settings = Settings(data_dir=kb / "data")
    assert ingest([kb / "docs"], KnowledgeStore(settings)).ok
    env = {**os.environ, "KBASSIST_DATA_DIR": str(kb / "data")}
    kbassist = str(Path(sys.executable).with_name("kbassist"))
    for role in ("customer", "agent"):
        result = subprocess.run(
            [kbassist, "-v", "ask", QUESTION, "--role", role, "--market", "SE"],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        assert f"INFO assist.service: answered role={role}" in result.stderr, "-v logs at INFO"
        assert not _offending(result.stderr), result.stderr
