from __future__ import annotations

import re

from ingest.chunker import ChunkSpec, chunk_text, parse_units
from kb.tokens import count_tokens

PROCEDURE = "# Disputes\n\n## Opening a dispute\n\n" + "\n".join(
    f"{i}. Step number {i}: check the order, the payment and the merchant reply carefully before moving on.\n"
    f"   - Note for step {i}: record it in the case log."
    for i in range(1, 16)
)


def test_steps_are_never_split_and_stay_in_order() -> None:
    chunks = chunk_text("d", PROCEDURE, "Disputes", ChunkSpec(max_tokens=120, overlap_tokens=0))
    assert len(chunks) > 2
    seen: list[int] = []
    for chunk in chunks:
        body = chunk.text.split("\n\n", 1)[1]
        steps = [int(n) for n in re.findall(r"^(\d+)\. Step", body, re.M)]
        notes = [int(n) for n in re.findall(r"Note for step (\d+)", body)]
        assert steps == notes, "a step and its sub-bullet must share a chunk"
        seen.extend(steps)
    assert seen == list(range(1, 16))


def test_heading_path_is_prefix_and_metadata() -> None:
    chunks = chunk_text("d", PROCEDURE, "Disputes", ChunkSpec(max_tokens=120, overlap_tokens=0))
    for chunk in chunks:
        assert chunk.text.startswith("Disputes > Opening a dispute\n\n")
        assert chunk.metadata["section"] == "Disputes > Opening a dispute"


def test_token_bound_holds_including_oversized_units() -> None:
    huge_paragraph = " ".join(["The customer asked about a refund for an order."] * 200)
    one_long_word = "x" * 5000
    text = f"# T\n\n{huge_paragraph}\n\n{one_long_word}\n\n" + PROCEDURE
    spec = ChunkSpec(max_tokens=64, overlap_tokens=16)
    chunks = chunk_text("d", text, "T", spec)
    assert all(count_tokens(c.text) <= spec.max_tokens for c in chunks)
    joined = "".join(c.text for c in chunks)
    assert "x" * 100 in joined and joined.count("x") >= 5000


def test_overlap_repeats_whole_units_only() -> None:
    text = "# T\n\n" + "\n\n".join(f"Sentence {i} about fees." for i in range(40))
    chunks = chunk_text("d", text, "T", ChunkSpec(max_tokens=48, overlap_tokens=12))
    first, second = (c.text.split("\n\n", 1)[1].split("\n") for c in chunks[:2])
    assert second[0] in first, "the next chunk starts with the last unit(s) of the previous one"


def test_table_rows_whole_and_header_repeated() -> None:
    rows = "\n".join(f"| Market {i} | {i * 10} SEK | {i} days |" for i in range(60))
    text = f"# Fees\n\n| Market | Fee | Grace |\n|---|---|---|\n{rows}\n"
    chunks = chunk_text("d", text, "Fees", ChunkSpec(max_tokens=80, overlap_tokens=0))
    assert len(chunks) > 2
    for chunk in chunks:
        lines = chunk.text.split("\n\n", 1)[1].split("\n")
        assert lines[0] == "| Market | Fee | Grace |"
        assert all(line.startswith("|") and line.endswith("|") for line in lines)


def test_ids_are_deterministic_and_content_sensitive() -> None:
    spec = ChunkSpec(max_tokens=80, overlap_tokens=0)
    a = [c.id for c in chunk_text("d", PROCEDURE, "Disputes", spec)]
    assert a == [c.id for c in chunk_text("d", PROCEDURE, "Disputes", spec)]
    assert len(set(a)) == len(a)
    edited = PROCEDURE.replace("Step number 15", "Step number fifteen")
    b = [c.id for c in chunk_text("d", edited, "Disputes", spec)]
    assert a[:-1] == b[:-1] and a[-1] != b[-1]


def test_units_follow_heading_nesting() -> None:
    units = parse_units("# A\n\ntext a\n\n## B\n\ntext b\n\n### C\n\ntext c\n\n## D\n\ntext d")
    assert [u.path for u in units] == [("A",), ("A", "B"), ("A", "B", "C"), ("A", "D")]


def test_heading_path_longer_than_the_bound() -> None:
    text = "# " + "Ï0Ø𐀀 " * 40 + "\n## Sub\n\nBody text here."
    spec = ChunkSpec(max_tokens=48, overlap_tokens=8)
    chunks = chunk_text("d", text, "T", spec)
    assert chunks and all(count_tokens(c.text) <= 48 for c in chunks)
    assert "Body text here." in chunks[-1].text and chunks[-1].text.split("\n\n")[0].endswith("Sub")
