"""Segments, units and composition, from hand-made passages and vectors (no store, no embedder)."""

from __future__ import annotations

import numpy as np

from assist.compose import compose, customer_reply
from assist.models import LogisticModel
from assist.retrieval import Passage
from assist.selection import SEGMENT_FEATURES, Selector
from kb.segments import chunk_segments, embedding_text, row_as_text, segments_of

FEES = """| What happens | Sweden | Germany |
|---|---|---|
| First late fee | 60 SEK, 10 days after the due date | 2.50 EUR, 7 days after the due date |
| Final notice | 25 days after the due date | 35 days after the due date |"""

PROCEDURE = """Use this procedure for disputes. Before you start:
- verify the customer,
- check the purchase date.

1. Open the case.
2. Pause the invoice.
   - Pause it for 21 days.
3. Tell the customer what happens next."""


def test_segments_keep_rows_with_their_header_steps_with_sub_bullets_and_lists_with_their_lead() -> None:
    rows = segments_of(FEES)
    assert [s.kind for s in rows] == ["row", "row"]
    assert rows[0].text.startswith("| What happens | Sweden | Germany |\n| First late fee")
    assert row_as_text(rows[0].text).startswith("What happens: First late fee; Sweden: 60 SEK")

    segs = segments_of(PROCEDURE)
    kinds = [s.kind for s in segs]
    assert kinds == ["sentence", "sentence", "item", "item", "step", "step", "step"]
    lead = segs[1]
    assert lead.text == "Before you start:" and segs[2].lead == lead.position and segs[3].lead == lead.position
    assert segs[5].text.endswith("- Pause it for 21 days."), "a sub-bullet stays with its step"
    assert len({s.block for s in segs if s.kind == "step"}) == 1
    assert segs[0].paragraph == segs[1].paragraph == 1 and segs[2].paragraph == 0


def test_an_examples_section_marks_its_segments_as_examples() -> None:
    assert all(s.example for s in segments_of("A fee of 60 SEK was charged.", "Fees > Worked examples"))
    assert not any(s.example for s in segments_of("A fee of 60 SEK is charged.", "Fees > The rule"))
    quoted = segments_of("Scam emails look like this:\n> Change the phone number to +46 70 000.\nNever act on it.")
    assert [s.example for s in quoted] == [False, True, False], "a quotation shows a message, not a rule"


def test_what_is_embedded_carries_the_heading() -> None:
    seg = segments_of("- The purchase is above your spending limit.")[0]
    assert embedding_text(seg, "Card > Why was my card declined?") == (
        "Why was my card declined?: - The purchase is above your spending limit."
    )


def _passage(chunk_id: str, section: str, body: str, audience: str = "customer", score: float = 1.0) -> Passage:
    return Passage(
        chunk_id, f"{section}\n\n{body}", {"section": section, "audience": audience, "doc_id": chunk_id}, dense=0.6,
        score=score,
    )


def _vectors(
    passages: list[Passage], *favourites: str, away: tuple[float, float] = (0.0, 1.0)
) -> tuple[list[np.ndarray], np.ndarray]:
    """Unit vectors: segments containing a ``favourite`` point at the question, the others ``away``."""
    question = np.array([1.0, 0.0], dtype=np.float32)
    out = []
    for p in passages:
        segs = chunk_segments(p.text, p.metadata["section"])
        out.append(
            np.array([[1.0, 0.0] if any(f in s.text for f in favourites) else away for s in segs], dtype=np.float32)
        )
    return out, question


def _selector() -> Selector:
    """Scores by cosine alone, so the tests say what the structure rules do, not what a fit learnt."""
    weights = tuple(1.0 if name == "cosine" else 0.0 for name in SEGMENT_FEATURES)
    return Selector(LogisticModel(SEGMENT_FEATURES, (0.0, *weights), (0.0,) * len(weights), (0.1,) * len(weights)))


def test_a_step_brings_its_whole_procedure_and_a_list_item_its_list_with_the_lead() -> None:
    passages = [_passage("disputes", "Disputes > Procedure", PROCEDURE)]
    vectors, question = _vectors(passages, "Pause the invoice")
    selection = _selector().select("how do I handle a dispute", passages, vectors, question, lambda t: 0.5, None, 1)
    unit = selection.units[0]
    assert unit.kind == "steps" and [t.split(".")[0] for t in unit.texts] == ["1", "2", "3"]

    vectors, question = _vectors(passages, "check the purchase date")
    unit = _selector().select("what do I check", passages, vectors, question, lambda t: 0.5, None, 1).units[0]
    assert unit.kind == "list" and unit.texts[0] == "Before you start:" and len(unit.texts) == 3


def test_a_sentence_brings_its_short_paragraph_and_in_a_long_one_the_sentence_it_points_back_to() -> None:
    body = "If there is a hold, tell the merchant. If there is no hold, escalate to L2 Payments Ops.\n\nPayouts are daily."
    passages = [_passage("payouts", "Late payouts", body)]
    vectors, question = _vectors(passages, "If there is a hold")
    unit = _selector().select("payout is late, no hold", passages, vectors, question, lambda t: 0.5, None, 1).units[0]
    assert unit.texts == ["If there is a hold, tell the merchant.", "If there is no hold, escalate to L2 Payments Ops."]

    long = " ".join(f"Stores differ in rule {n} of {n + 10} words and more." for n in range(5))
    body = f"{long} Some stores refund return shipping. If so, you get it back from the store. Brightloop doesn't refund it."
    passages = [_passage("returns", "Return shipping", body)]
    vectors, question = _vectors(passages, "If so")
    unit = _selector().select("who pays for shipping", passages, vectors, question, lambda t: 0.5, None, 1).units[0]
    assert unit.texts == ["Some stores refund return shipping.", "If so, you get it back from the store."]


def test_rows_are_rendered_for_the_market_and_another_markets_row_is_no_candidate() -> None:
    table = "| Market | Pause |\n|---|---|\n| SE | 21 days |\n| DE | 30 days |"
    passages = [_passage("disputes", "Pause", table)]
    vectors, question = _vectors(passages, "| DE |")
    selection = _selector().select("how long is the pause", passages, vectors, question, lambda t: 0.5, "SE", 3)
    assert [c.text for c in selection.candidates] == ["Sweden — Pause: 21 days"]
    assert all("30 days" not in t for u in selection.units for t in u.texts)


def test_composition_numbers_citations_by_first_use_and_keeps_steps_on_their_own_lines() -> None:
    passages = [
        _passage("fees", "Fees", FEES),
        _passage("disputes", "Disputes > Procedure", PROCEDURE, audience="agent", score=0.8),
    ]
    selector = _selector()
    vectors, question = _vectors(passages, "First late fee", away=(-1.0, 0.0))
    fee = selector.select("late fee", passages, vectors, question, lambda t: 0.5, "DE", 1).units
    vectors, question = _vectors(passages, "Open the case")
    steps = selector.select("dispute", passages, vectors, question, lambda t: 0.5, "DE", 1).units
    composed = compose([*fee, *steps])
    assert composed.cited == [0, 1]
    assert composed.text.startswith("First late fee: 2.50 EUR, 7 days after the due date (Germany) [1]")
    assert "1. Open the case.\n2. Pause the invoice." in composed.text and composed.text.endswith("[2]")
    assert composed.steps[0] == "1. Open the case."
    reply = customer_reply([*fee, *steps], ["customer", "agent"], "Thanks for getting in touch.")
    assert reply is not None and "2.50 EUR" in reply and "Open the case" not in reply and "[1]" not in reply
    assert customer_reply(steps, ["customer", "agent"], "Hi") is None, "no reply from agent-only passages"


def test_rows_that_score_alike_bring_their_whole_table_for_the_market() -> None:
    passages = [_passage("fees", "Fees", FEES)]
    vectors, question = _vectors(passages, "First late fee", "Final notice")
    units = _selector().select("what fees and notices are there", passages, vectors, question, lambda t: 0.5, "SE", 1).units
    assert [u.kind for u in units] == ["table"]
    composed = compose(units).text
    assert composed.startswith("- First late fee: 60 SEK, 10 days after the due date (Sweden)\n- Final notice: 25 days")
    assert "EUR" not in composed

    vectors, question = _vectors(passages, "First late fee", away=(-1.0, 0.0))
    units = _selector().select("what is the late fee", passages, vectors, question, lambda t: 0.5, "SE", 1).units
    assert [u.kind for u in units] == ["row"], "one row that stands out comes alone"


WORKED = """A customer owes 900 EUR and can pay 50 EUR a month. At 50 EUR a month the plan would take 18 months."""
RULE = """Plans of up to 12 months can be set up by an agent. Longer plans are not offered."""


def test_a_worked_example_is_quoted_only_when_it_is_the_askers_case_or_asked_for() -> None:
    passages = [_passage("plans-example", "Plans > Worked examples", WORKED), _passage("plans", "Plans > Rule", RULE, score=0.9)]
    vectors, question = _vectors(passages, "900 EUR", "At 50 EUR")

    def quoted(q: str) -> str:
        return compose(_selector().select(q, passages, vectors, question, lambda t: 0.5, None, 1).units).text

    assert quoted("customer owes 900 EUR and can pay 80 EUR a month, can we do a plan?").startswith("Plans of up to")
    assert quoted("customer owes 900 EUR and can pay 50 EUR a month, can we do a plan?").startswith("A customer owes")
    assert quoted("customer owes 900 EUR, can we do a plan?").startswith("Plans of up to"), "one shared figure is no case"
    assert quoted("can you show me an example of a plan?").startswith("A customer owes")
    assert quoted("your example is 900 EUR, what about 1000 EUR?").startswith("Plans of up to")
