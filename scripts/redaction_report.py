"""Count what the redactor replaces in text that holds no personal data: a false-positive report.

The demo knowledge base's documents (policy text full of amounts, dates, reference numbers and
the company's own support numbers) and the bundled question sets hold no customer's personal
data, so everything redacted there is either a support number (redacted by design, see
:mod:`kb.redact`) or a false positive. Run: ``python scripts/redaction_report.py [--examples N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.loaders import is_supported, load_document  # noqa: E402
from kb.redact import redact_spans  # noqa: E402


def _texts() -> list[tuple[str, str]]:
    docs = ROOT / "kb" / "demo" / "docs"
    out = [
        (f"docs/{p.name}", load_document(p, docs, 50_000_000).text) for p in sorted(docs.iterdir()) if is_supported(p)
    ]
    for dataset in sorted((ROOT / "eval" / "datasets").glob("*.jsonl")):
        for line in dataset.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                out.append((f"{dataset.stem}/{record.get('id', '?')}", record["question"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50, help="how many redacted spans to print")
    args = parser.parse_args()
    texts = _texts()
    kinds: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    examples: list[str] = []
    for source, text in texts:
        for kind, start, end in redact_spans(text):
            kinds[kind] += 1
            by_source[source.split("/")[0]] += 1
            context = text[max(0, start - 30) : end + 30].replace("\n", " ")
            examples.append(f"{source}: [{kind}] {text[start:end]!r} in …{context}…")
    n_docs = sum(1 for s, _ in texts if s.startswith("docs/"))
    print(f"{len(texts)} texts ({n_docs} documents, {len(texts) - n_docs} questions), {sum(kinds.values())} redacted")
    print("by kind:", dict(sorted(kinds.items())))
    print("by source:", dict(sorted(by_source.items())))
    for example in examples[: args.examples]:
        print(" ", example)


if __name__ == "__main__":
    main()
