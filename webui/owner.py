"""Knowledge-base owner: add documents, see what is in the KB and what is stale, measure quality,
find coverage gaps, and read what agents and customers made of the answers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from assist.chunk_index import ChunkIndex
from ingest.loaders import READERS, SIDECAR_SUFFIX
from ingest.pipeline import IngestReport, ingest
from kb.documents import UnknownDocuments, remove_documents, show_document
from kb.models import DocumentRecord
from kb.segments import chunk_body
from kb.state.accounts import StaffIdentity
from kb.state.audit import ingest_details
from kb.store import StoreUnavailable
from webui import evaluation, signin
from webui.services import Services

UPLOAD_TYPES = sorted({suffix.lstrip(".") for suffix in READERS} | {"yaml"})


def save_uploads(folder: Path, files: list[tuple[str, bytes]]) -> list[Path]:
    """Write uploaded files into ``folder``; returns the documents to ingest (sidecars travel along).

    Only the base name of an upload is used, so a crafted name cannot write outside the folder.
    A re-upload of the same name replaces the earlier file, which ingest then sees as an update.
    """
    folder.mkdir(parents=True, exist_ok=True)
    documents = []
    for name, data in files:
        safe = Path(name).name
        if not safe or safe.startswith("."):
            continue
        target = folder / safe
        target.write_bytes(data)
        if not safe.endswith(SIDECAR_SUFFIX):
            documents.append(target)
    return documents


def render(services: Services, identity: StaffIdentity) -> None:
    """The owner's workspace; every change it makes is audited as the signed-in ``identity``."""
    if not identity.is_owner:
        st.error("The knowledge-base workspace is for owner accounts.")
        return
    actor = signin.actor(identity)
    st.title("Knowledge base")
    documents, quality, gaps, feedback = st.tabs(["Documents", "Evaluation", "Coverage gaps", "Feedback & deflection"])
    with documents:
        _ingest_section(services, actor)
        _drafts_section(services)
        _stats_section(services, actor)
    with quality:
        _evaluation_section(services)
    with gaps:
        _gaps_section(services)
    with feedback:
        _feedback_section(services)


# -- documents --------------------------------------------------------------------------------


def _run_ingest(
    services: Services,
    actor: str,
    paths: list[Path],
    prune: bool | None,
    action: str = "kb.ingest",
    replace: bool = False,
) -> IngestReport:
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, total: int, name: str) -> None:
        bar.progress(done / max(total, 1), text=f"{done} of {total} · {name}")

    # What the app adds or changes waits for an owner to publish it (see _drafts_section); an
    # operator's `kbassist ingest` publishes directly.
    report = ingest(paths, services.store, prune=prune, progress=progress, replace=replace, publish=False)
    if report.changed:
        bar.progress(1.0, text="Preparing search…")
        services.assistant.retriever.lexical.prepare()  # the next question maps these, instead of building them
    bar.progress(1.0, text="Done")
    services.state.audit(actor, action, ", ".join(str(p) for p in paths)[:500], ingest_details(report))
    st.session_state["owner_ingest_report"] = report
    return report


def _ingest_section(services: Services, actor: str) -> None:
    st.header("Add or update documents")
    st.caption(
        "Markdown, text, HTML, PDF and Word. Metadata (audience, market, review date…) comes from front matter or a "
        f"`<file>{SIDECAR_SUFFIX}` sidecar; a document without an audience is internal only. "
        "A document added or changed here is unpublished until you publish it below: until then no one, "
        "customer, agent or internal, gets answers from it."
    )
    replace = st.checkbox(
        "Let a file replace a document that came from another file (same id)",
        value=False,
        key="owner_replace",
        help="Without it, a file whose id is already a document from another file is an error naming both.",
    )
    upload, folder = st.columns(2)
    with upload:
        files = st.file_uploader("Upload files", type=UPLOAD_TYPES, accept_multiple_files=True, key="owner_upload")
        if st.button("Ingest uploaded files", disabled=not files, key="owner_ingest_upload"):
            saved = save_uploads(services.settings.uploads_path, [(f.name, f.getvalue()) for f in files or []])
            _run_ingest(services, actor, saved, prune=False, action="kb.upload", replace=replace)
    with folder:
        path = st.text_input("Or a folder on the server", key="owner_folder", placeholder="/srv/policies")
        prune = st.checkbox("Remove documents deleted from this folder", value=True, key="owner_prune")
        if st.button("Ingest folder", disabled=not path.strip(), key="owner_ingest_folder"):
            target = Path(path.strip()).expanduser()
            if not target.is_dir():
                st.error(f"No folder at {target}.")
            else:
                _run_ingest(services, actor, [target], prune=prune, replace=replace)

    report: IngestReport | None = st.session_state.get("owner_ingest_report")
    if report is not None:
        (st.success if report.ok else st.warning)("\n\n".join(report.summary_lines()))
        if report.errors:
            st.dataframe(
                pd.DataFrame([{"file": e.path.name, "problem": e.reason, "path": str(e.path)} for e in report.errors]),
                hide_index=True,
                width="stretch",
            )


def _drafts_section(services: Services) -> None:
    """Unpublished documents: preview each as a customer would see it, then publish it."""
    result = st.session_state.pop("owner_publish_result", None)
    if result is not None:
        (st.success if result[0] == "success" else st.error)(result[1])
    drafts = services.store.unpublished()
    if not drafts:
        return
    st.subheader("Waiting to be published")
    st.dataframe(
        pd.DataFrame(
            [
                {"title": d.title, "id": d.doc_id, "audience": d.audience, "market": d.market, "passages": d.chunk_count}
                for d in drafts
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    titles = {d.doc_id: d.title for d in drafts}
    chosen = st.selectbox(
        "Unpublished document",
        list(titles),
        format_func=lambda doc_id: f"{titles.get(doc_id, doc_id)} ({doc_id})",
        key="owner_draft",
    )
    if not chosen:
        return
    preview, publish = st.columns(2)
    preview.toggle("Preview as customer", key="owner_draft_preview")
    publish.button(
        "Publish", type="primary", key="owner_publish", icon=":material/publish:", on_click=_publish, args=(services, chosen)
    )
    if st.session_state.get("owner_draft_preview"):
        record = next(d for d in drafts if d.doc_id == chosen)
        _customer_preview(services, record)


def _customer_preview(services: Services, record: DocumentRecord) -> None:
    """The draft's passages as the customer chat shows a source, and which of them a question finds."""
    if record.audience != "customer":
        st.warning(
            f"Customers will not see this document once it is published: its audience is {record.audience}. "
            "Only staff of that audience will get answers from it."
        )
        return
    chunks = services.store.document_chunks(record.doc_id)
    question = st.text_input("Ask as a customer would", key="owner_draft_question")
    if question.strip():
        index = ChunkIndex.in_memory(
            [([c[0] for c in chunks], [c[1] for c in chunks], [c[2] for c in chunks])] if chunks else []
        )
        hits = index.search(question, 3)
        if not hits:
            st.info("Nothing in this document matches that question.")
        for row, _ in hits:
            with st.container(border=True):
                st.caption(f"{record.title} · {index.metadatas[row].get('section', '')}")
                st.markdown(chunk_body(index.texts[row]))
        return
    with st.container(border=True, key="owner_draft_rendered"):
        st.markdown(f"**{record.title}**")
        for _, text, meta in chunks:
            st.caption(str(meta.get("section", "")))
            st.markdown(chunk_body(text))


def _publish(services: Services, doc_id: str) -> None:
    """Button callback; checks the session itself, like :func:`_remove`, and audits as the signed-in owner."""
    identity = signin.current_identity(services)
    if identity is None or not identity.is_owner:
        return
    actor = signin.actor(identity)
    try:
        published = services.store.publish_documents([doc_id])
        services.assistant.retriever.lexical.prepare()
    except (KeyError, StoreUnavailable) as exc:
        st.session_state["owner_publish_result"] = ("error", f"Not published: {exc}")
        return
    st.session_state.pop("owner_draft_preview", None)
    services.state.audit(actor, "kb.publish", doc_id, {"doc_ids": [doc_id], "chunks": published[doc_id]})
    st.session_state["owner_publish_result"] = ("success", f"Published {doc_id}: {published[doc_id]} passages.")


def _stats_section(services: Services, actor: str) -> None:
    st.header("What is in the knowledge base")
    result = st.session_state.pop("owner_remove_result", None)
    if result is not None:
        (st.success if result[0] == "success" else st.error)(result[1])
    stats = services.store.stats()
    docs = services.store.documents()
    a, b, c = st.columns(3)
    a.metric("Documents", stats.documents)
    b.metric("Passages", stats.chunks)
    c.metric("Past review date", len(stats.stale))
    if not docs:
        demo = "" if services.settings.is_demo else (
            " To look around first, the bundled demo is a knowledge base of its own: run `kbassist ingest --demo`, "
            "then start the app with `KBASSIST_KB=demo`."
        )
        st.info("No documents yet. Upload files or ingest a folder above." + demo)
        return
    by_audience, by_market = st.columns(2)
    with by_audience:
        st.markdown("**By audience**")
        st.bar_chart(pd.Series(stats.by_audience, name="documents"), horizontal=True, height=180)
    with by_market:
        st.markdown("**By market**")
        st.bar_chart(pd.Series(stats.by_market, name="documents"), horizontal=True, height=180)
    stale = [d for d in docs if d.doc_id in set(stats.stale)]
    if stale:
        st.markdown("**Past their review date** — answers still cite these; ask the owners to review them")
        st.dataframe(
            pd.DataFrame(
                [{"document": d.title, "id": d.doc_id, "owner": d.owner, "review by": d.review_by} for d in stale]
            ),
            hide_index=True,
            width="stretch",
        )
    _documents_table(services, docs, actor)


def _documents_table(services: Services, docs: list[DocumentRecord], actor: str) -> None:
    """Every document, then one of them in detail: its passages, and a way to remove it."""
    st.markdown(f"**All {len(docs)} documents**")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "title": d.title,
                    "id": d.doc_id,
                    "audience": d.audience,
                    "market": d.market,
                    "language": d.language,
                    "product": d.product,
                    "version": d.version,
                    "review by": d.review_by,
                    "owner": d.owner,
                    "format": d.format,
                    "passages": d.chunk_count,
                    "published": d.published,
                }
                for d in docs
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    titles = {d.doc_id: d.title for d in docs}
    chosen = st.selectbox(
        "Inspect a document",
        list(titles),
        index=None,
        format_func=lambda doc_id: f"{titles.get(doc_id, doc_id)} ({doc_id})",
        placeholder="Choose a document to see its passages",
        key="owner_doc",
    )
    if chosen:
        _document_detail(services, chosen, actor)


def _document_detail(services: Services, doc_id: str, actor: str) -> None:
    try:
        view = show_document(services.store, doc_id, actor=actor)
    except UnknownDocuments:
        st.info("That document is no longer in the knowledge base.")
        return
    r = view.record
    st.caption(
        f"Source `{r.path}` · {r.format} · audience {r.audience} · market {r.market} · language {r.language} · "
        f"version {r.version or '—'} · review by {r.review_by or '—'} · owner {r.owner or '—'} · "
        f"ingested {r.ingested_at}"
    )
    st.dataframe(
        pd.DataFrame(
            [
                {"#": c.position, "section": c.section, "tokens": c.tokens, "passage": c.text.split("\n\n", 1)[-1]}
                for c in view.chunks
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    if st.session_state.get("owner_remove_pending") != doc_id:
        st.button(
            "Remove this document…",
            key="owner_remove",
            icon=":material/delete:",
            on_click=st.session_state.__setitem__,
            args=("owner_remove_pending", doc_id),
        )
        return
    st.warning(
        f"Remove **{r.title}** (`{doc_id}`) and its {len(view.chunks)} passages from the knowledge base? "
        "No one can find it afterwards. If its file is still in a folder you ingest, the next ingest of that "
        "folder brings it back: delete or move the file too."
    )
    confirm, cancel = st.columns(2)
    confirm.button(
        "Yes, remove it", type="primary", key="owner_remove_confirm", on_click=_remove, args=(services, doc_id)
    )
    cancel.button("Cancel", key="owner_remove_cancel", on_click=st.session_state.pop, args=("owner_remove_pending",))


def _remove(services: Services, doc_id: str) -> None:
    """Button callback: runs before the page is drawn again, so it may clear the document picker.

    A callback runs before the page checks the session, so it checks it itself: a session that
    ended (signed out in another tab, expired, password reset) or is not an owner's removes nothing.
    """
    st.session_state.pop("owner_remove_pending", None)
    identity = signin.current_identity(services)
    if identity is None or not identity.is_owner:
        return
    actor = signin.actor(identity)
    try:
        removed = remove_documents(services.store, [doc_id], actor=actor)
        services.assistant.retriever.lexical.prepare()
    except (UnknownDocuments, StoreUnavailable) as exc:
        st.session_state["owner_remove_result"] = ("error", f"Not removed: {exc}")
        return
    st.session_state["owner_doc"] = None
    item = removed[0]
    services.state.audit(actor, "kb.remove", item.doc_id, {"doc_ids": [item.doc_id], "chunks": item.chunks})
    st.session_state["owner_remove_result"] = ("success", f"Removed {item.title} ({item.doc_id}), {item.chunks} passages.")


# -- evaluation -------------------------------------------------------------------------------


def _evaluation_section(services: Services) -> None:
    st.header("Answer quality")
    settings = services.settings
    job = evaluation.current_job(settings, "eval")
    if not evaluation.eval_available():
        st.info(
            "Evaluation is not available in this installation (the `eval` package is missing). "
            f"Runs already written to `{evaluation.runs_dir(settings)}` are still shown below."
        )
    else:
        names = evaluation.datasets() or ["demo"]
        dataset = st.selectbox("Question set", names, key="owner_eval_dataset")
        running = job is not None and job.running
        st.button(
            "Run evaluation",
            key="owner_eval_run",
            icon=":material/play_arrow:",
            disabled=running,
            on_click=_start_job,
            args=(services, "eval", dataset),
        )
        job = evaluation.current_job(settings, "eval")
        if job is not None:
            _job_status(job, "owner_eval_job_seen", "owner_eval_run_pick")

    runs = evaluation.list_runs(settings)
    if not runs:
        st.caption("No evaluation runs yet.")
        return
    names = [r.name for r in runs]
    if st.session_state.get("owner_eval_run_pick") not in names:
        st.session_state["owner_eval_run_pick"] = names[0]
    chosen = st.selectbox("Run", names, key="owner_eval_run_pick")
    run = next(r for r in runs if r.name == chosen)
    headline = run.results.get("headline") or {}
    if headline:
        st.caption(
            f"{run.results.get('dataset', '')} · {run.results.get('run', {}).get('questions', '?')} questions · "
            f"refusal threshold {run.results.get('threshold', '?')} · 95% intervals in the full report"
        )
        st.dataframe(headline_table(headline), hide_index=True, width="stretch")
    if run.report is not None:
        html = run.report.read_text(encoding="utf-8")
        st.download_button("Download the full report", html, file_name=f"{run.name}.html", mime="text/html")
        # The report is generated by the harness (escaped text, inline SVG, no scripts), so it is safe to
        # embed; the frame takes the report's own height, so no chart is cut off.
        st.iframe(html, height="content")
    else:
        st.caption("This run has no HTML report.")


def _start_job(services: Services, kind: str, dataset: str | None) -> None:
    """Button callback: starts the job before the page is drawn, so the page shows it running at once.

    A callback runs before the page checks the session, so it checks it itself (owners only).
    """
    identity = signin.current_identity(services)
    if identity is None or not identity.is_owner:
        return
    if kind == "eval" and dataset:
        evaluation.start_eval_run(services, dataset)
    elif kind == "gaps":
        evaluation.refresh_gaps(services)
    services.state.audit(signin.actor(identity), "eval.run" if kind == "eval" else "gaps.refresh", dataset or "", {})


MISSING = "–"


def headline_table(headline: dict[str, dict[str, float | None]]) -> pd.DataFrame:
    """Metrics as rows, systems as columns, as text; a value a system does not have shows "–", never "None"."""
    table = pd.DataFrame(headline)
    table.index.name = "metric"
    table = table.reset_index()
    for column in table.columns[1:]:
        table[column] = [_cell(v) for v in table[column]]
    return table


def _cell(value: float | None) -> str:
    """Text, so the column is one type: rates to 3 decimals, milliseconds whole, missing as "–"."""
    if value is None or pd.isna(value):
        return MISSING
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}"


def _job_status(job: evaluation.Job, seen_key: str, pick_key: str | None = None) -> None:
    """A running job's progress, redrawn every second; once it ends, the whole page is drawn again."""
    if job.running:

        @st.fragment(run_every=1.0)
        def _progress() -> None:
            if not job.running:
                st.rerun(scope="app")
            with st.status(f"{job.label}: running…", state="running", expanded=True):
                st.progress(job.fraction, text=job.step)

        _progress()
        return
    if job.state == "complete":
        with st.status(f"{job.label}: finished", state="complete", expanded=False):
            st.progress(1.0, text="Done")
        if pick_key and job.result is not None and st.session_state.get(seen_key) != job.result.name:
            st.session_state[seen_key] = job.result.name
            st.session_state[pick_key] = job.result.name  # the run picker shows the new run
    else:
        with st.status(f"{job.label}: failed", state="error", expanded=True):
            st.code(job.error or "unknown error", language=None)


def _gaps_section(services: Services) -> None:
    st.header("Coverage gaps")
    settings = services.settings
    st.caption(
        "Questions the knowledge base could not answer, grouped; documents never retrieved; stale or conflicting content."
    )
    if evaluation.gaps_available():
        job = evaluation.current_job(settings, "gaps")
        running = job is not None and job.running
        st.button(
            "Refresh the gap report",
            key="owner_gaps_refresh",
            icon=":material/refresh:",
            disabled=running,
            on_click=_start_job,
            args=(services, "gaps", None),
        )
        job = evaluation.current_job(settings, "gaps")
        if job is not None:
            _job_status(job, "owner_gaps_job_seen")
    else:
        st.info("The coverage-gap report is not available in this installation (the `eval` package is missing).")
    loaded = evaluation.load_gaps(settings)
    if loaded is not None:
        path, gaps = loaded
        st.caption(f"From `{path}`")
        _render_gaps(gaps)
    st.markdown("**Most frequent unanswered questions (live)**")
    _unanswered_table(services)


def _render_gaps(gaps: dict) -> None:
    """The gap report's sections as tables: what to write next first, then what to fix."""
    st.markdown(
        f"{gaps.get('questions', 0)} questions analysed; {gaps.get('unanswered_or_low_confidence', 0)} refused "
        f"or low-confidence, in {len(gaps.get('clusters', []))} groups."
    )
    sections = {
        "Unanswered topics, by volume": [
            {
                "questions": c["size"],
                "most central questions": " · ".join(c["questions"][:3]),
                "mean confidence": c["mean_confidence"],
                "roles": ", ".join(f"{k} {v}" for k, v in c["roles"].items()),
            }
            for c in gaps.get("clusters", [])
        ],
        "Documents no question retrieved": gaps.get("never_retrieved", []),
        "Documents past their review date": gaps.get("stale_documents", []),
        "Possibly contradictory statements": [
            {
                "document A": c["a"]["doc_id"],
                "statement A": c["a"]["statement"],
                "document B": c["b"]["doc_id"],
                "statement B": c["b"]["statement"],
            }
            for c in gaps.get("contradictions", [])
        ],
    }
    for title, rows in sections.items():
        st.markdown(f"**{title}**")
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        else:
            st.caption("None.")


# -- feedback ---------------------------------------------------------------------------------


def _unanswered_table(services: Services) -> None:
    top = services.state.analytics.top_unanswered(limit=15)
    if not top:
        st.caption("No unanswered questions logged yet.")
        return
    st.dataframe(
        pd.DataFrame([{"question": u.question, "times asked": u.count, "last asked": u.last_asked} for u in top]),
        hide_index=True,
        width="stretch",
    )


def _feedback_section(services: Services) -> None:
    log = services.state.analytics
    summary = log.feedback_summary()
    days = log.deflection_by_day()
    counts = log.counts()
    questions = sum(d.questions for d in days)
    answered = sum(d.answered for d in days)
    a, b, c, d = st.columns(4)
    a.metric("Helpful rate", "—" if summary.helpful_rate is None else f"{summary.helpful_rate:.0%}")
    a.caption(f"{summary.rated} rated answers (helpful or used in a reply)")
    b.metric("Deflection", f"{sum(x.deflected for x in days) / questions:.0%}" if questions else "—")
    b.caption(f"of {questions} customer questions, answered without a person")
    c.metric("False deflection", f"{sum(x.false_deflections for x in days) / answered:.0%}" if answered else "—")
    c.caption("answered, then rated not helpful or handed to a person")
    d.metric("Hand-offs", counts["handoffs"])
    d.caption(f"{counts['questions']} questions logged in {counts['conversations']} conversations")

    if days:
        st.markdown("**Deflection and false deflection per day (customer chat)**")
        frame = pd.DataFrame(
            {
                "deflection": [x.deflection_rate for x in days],
                "false deflection": [x.false_deflection_rate for x in days],
            },
            index=pd.to_datetime([x.day for x in days]),
        )
        st.line_chart(frame, height=240)
    if summary.counts:
        st.markdown("**Ratings**")
        names = {"helpful": "helpful", "not_helpful": "not helpful", "used": "used in a reply"}
        st.bar_chart(
            pd.Series({names[k]: v for k, v in summary.counts.items()}, name="ratings"), horizontal=True, height=160
        )
    if summary.comments:
        st.markdown("**Latest comments**")
        st.dataframe(
            pd.DataFrame(summary.comments, columns=["rating", "comment", "question"]), hide_index=True, width="stretch"
        )
    st.markdown("**Top unanswered questions**")
    _unanswered_table(services)
    failed = services.state.outbox.deliveries(status="failed", limit=20)
    if failed:
        st.markdown("**Hand-offs the help desk did not receive** (`kbassist handoffs deliver --retry-failed` resends)")
        rows = [
            {"ref": f"H-{d.handoff_id}", "event": d.event, "attempts": d.attempts, "last error": d.last_error}
            for d in failed
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    handoffs = services.state.handoffs.list(limit=50)
    if handoffs:
        st.markdown("**Latest hand-offs**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "ref": h.reference,
                        "created": h.created_at.isoformat(timespec="seconds"),
                        "status": h.status,
                        "question": h.question,
                        "reason": h.reason,
                        "market": h.market,
                    }
                    for h in handoffs
                ]
            ),
            hide_index=True,
            width="stretch",
        )
