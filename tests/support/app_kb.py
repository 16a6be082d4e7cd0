"""A small knowledge base for the web-app tests: customer, agent and internal documents."""

from __future__ import annotations

from pathlib import Path

DOCS = {
    "returns-se.md": """---
title: Returns in Sweden
audience: customer
market: SE
product: pay-later
review_by: 2030-01-01
version: 3.1
---
# Returns in Sweden

## Return window

You can return an item within 30 days of delivery. The store must accept the return first.

## Refund timing

When the store has registered your return, we pay the money back within 5 business days.
""",
    "returns-de.md": """---
title: Returns in Germany
audience: customer
market: DE
product: pay-later
review_by: 2030-01-01
version: 1.0
---
# Returns in Germany

## Return window

You can return an item within 14 days of delivery under the statutory withdrawal right.
""",
    "disputes.md": """---
title: Handling a dispute
audience: agent
market: ALL
product: pay-later
review_by: 2020-01-01
version: 2
owner: Disputes team
---
# Handling a dispute

## Procedure

1. Verify the customer's identity.
2. Check that the purchase is older than 7 days.
3. Pause the invoice for 21 days.
4. Open the dispute case in the case tool.
5. Tell the customer the store has 14 days to reply.
""",
    "fraud-thresholds.md": """---
title: Fraud review thresholds
audience: internal
market: ALL
---
# Fraud review thresholds

Orders above 12000 SEK from a new device are held for manual fraud review by the risk team.
""",
}


def write_kb(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder
