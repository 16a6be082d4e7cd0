"""Who may read what: the caller's role decides which document audiences are searchable.

The rule is applied where the store is read, never by filtering answers afterwards: each role's
lexical index is built from a Chroma ``get`` with the role's ``where`` clause, and every passage
a role is shown, from either search, has its text and metadata read from that index or from a
Chroma query carrying the same clause. Dense search may rank the ids of chunks outside the role
(it over-fetches nearest ids, see ``assist.retrieval``), but an id the role's index does not
hold is dropped before anything else about it is read.

The index is keyed by the store revision, which an interrupted write can leave describing
chunks as they were (see :mod:`kb.store`), so before a passage is shown its audience is read
again from Chroma by id; a passage the role may not read now is dropped whatever the index says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kb.models import AUDIENCES

Role = Literal["customer", "agent", "internal"]

ROLE_AUDIENCES: dict[str, tuple[str, ...]] = {
    "customer": ("customer",),
    "agent": ("customer", "agent"),
    "internal": ("customer", "agent", "internal"),
}


def audiences_for(role: str) -> tuple[str, ...]:
    try:
        return ROLE_AUDIENCES[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r} (use one of: {', '.join(ROLE_AUDIENCES)})") from None


@dataclass(frozen=True)
class Filters:
    """Optional narrowing of a search. ``market`` also admits documents valid in ALL markets."""

    market: str | None = None
    language: str | None = None
    product: str | None = None
    doc_id: str | None = None

    def matches(self, meta: dict[str, Any]) -> bool:
        """Same semantics as :meth:`where`, for indexes that live outside Chroma."""
        if self.market and meta.get("market") not in (self.market.upper(), "ALL"):
            return False
        if self.language and meta.get("language") != self.language.lower():
            return False
        if self.product and meta.get("product") not in (self.product, "all"):
            return False
        return not (self.doc_id and meta.get("doc_id") != self.doc_id)


# Chunks of a document not yet published (added or changed through the app) carry
# ``published: False``; chunks of earlier releases have no such key, and ``$ne`` admits them.
PUBLISHED_ONLY: dict[str, Any] = {"published": {"$ne": False}}


def _scope_clauses(role: str) -> list[dict[str, Any]]:
    allowed = audiences_for(role)
    clauses = [PUBLISHED_ONLY]
    if set(allowed) != set(AUDIENCES):  # every chunk has one of the known audiences
        clauses.append({"audience": allowed[0]} if len(allowed) == 1 else {"audience": {"$in": list(allowed)}})
    return clauses


def scope_where(role: str) -> dict[str, Any]:
    """The access part of the query alone (also used to build a role's lexical index).

    Published chunks of the audiences the role may read. No role reads an unpublished document:
    drafts are shown only in the owner's preview (see :mod:`webui.owner`), read by document id.
    """
    clauses = _scope_clauses(role)
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def readable(role: str, metadata: dict[str, Any]) -> bool:
    """Whether ``role`` may read a chunk with this metadata (what :func:`scope_where` admits)."""
    return metadata.get("audience") in audiences_for(role) and metadata.get("published") is not False


def where_clause(role: str, filters: Filters | None = None) -> dict[str, Any] | None:
    """The Chroma ``where`` for a role plus optional filters."""
    filters = filters or Filters()
    clauses: list[dict[str, Any]] = _scope_clauses(role)
    if filters.market:
        clauses.append({"market": {"$in": [filters.market.upper(), "ALL"]}})
    if filters.language:
        clauses.append({"language": filters.language.lower()})
    if filters.product:
        clauses.append({"product": {"$in": [filters.product, "all"]}})
    if filters.doc_id:
        clauses.append({"doc_id": filters.doc_id})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
