"""Build the common-word lists spelling correction consults (``assist/wordlists/<lang>.txt.gz``).

A word the knowledge base never uses is only corrected when it is also not a common word of
the asker's language: "shop" is not a misspelling of "shows" just because a help centre never
says "shop". The lists are every word with a Zipf frequency of at least ``--min-zipf`` in
wordfreq (Robyn Speer, https://github.com/rspeer/wordfreq; its data is CC BY-SA 4.0, and so
are these derived lists). wordfreq is only needed to rebuild them:

    pip install wordfreq && python scripts/build_wordlists.py
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

# kbassist's language codes (assist.terms.LANGUAGES) and wordfreq's where they differ.
LANGUAGES = {"en": "en", "de": "de", "sv": "sv", "da": "da", "no": "nb", "nl": "nl", "fr": "fr", "es": "es", "it": "it", "pt": "pt"}
OUT = Path(__file__).resolve().parents[1] / "assist" / "wordlists"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-zipf", type=float, default=3.0)
    args = parser.parse_args()
    from wordfreq import get_frequency_dict, zipf_frequency

    OUT.mkdir(parents=True, exist_ok=True)
    for ours, theirs in LANGUAGES.items():
        words = sorted(
            w for w in get_frequency_dict(theirs) if w.isalpha() and zipf_frequency(w, theirs) >= args.min_zipf
        )
        with gzip.open(OUT / f"{ours}.txt.gz", "wt", encoding="utf-8", compresslevel=9) as fh:
            fh.write("\n".join(words) + "\n")
        print(f"{ours}: {len(words)} words")
    (OUT / "README.md").write_text(
        f"Common words per language (Zipf frequency >= {args.min_zipf:.1f}), derived from wordfreq by Robyn Speer "
        "(https://github.com/rspeer/wordfreq), whose data is licensed CC BY-SA 4.0; these lists are "
        "under the same licence. Rebuild with `python scripts/build_wordlists.py`.\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
