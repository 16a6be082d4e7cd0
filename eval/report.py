"""The self-contained HTML report of one run: tables and inline SVG charts, nothing fetched.

Why generated SVG: the report is opened from a CI artifact, an e-mail or the app's owner
workspace, often without network; a chart library from a CDN would leave it blank.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.metrics import HIGHER_IS_BETTER, best_f1, strip_citations

COLOURS = ("#2563eb", "#f97316", "#16a34a", "#dc2626", "#7c3aed", "#0891b2")
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1100px;color:#111;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{display:block;overflow-x:auto;border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.muted{color:#666}.chart{margin:8px 0 20px}svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _metric_cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "<td>—</td>"
    ci = entry.get("ci")
    digits = 1 if isinstance(entry["value"], float) and entry["value"] > 5 else 3
    span = f" <span class=muted>[{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]</span>" if ci else ""
    return f"<td>{_fmt(entry['value'], digits)}{span}</td>"


# -- charts ------------------------------------------------------------------------------------------


def bar_chart(groups: Sequence[str], series: dict[str, Sequence[float | None]], title: str, width: int = 1000) -> str:
    """Grouped vertical bars, values in 0..1, one colour per series."""
    height, left, bottom, top = 260, 40, 70, 24
    plot_w, plot_h = width - left - 10, height - bottom - top
    n_series = max(1, len(series))
    slot = plot_w / max(1, len(groups))
    bar = max(2.0, slot * 0.8 / n_series)
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">']
    parts.append(f'<text x="{left}" y="14" font-weight="bold">{html.escape(title)}</text>')
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    for gi, group in enumerate(groups):
        x0 = left + gi * slot + slot * 0.1
        for si, (_, values) in enumerate(series.items()):
            value = values[gi]
            if value is None or math.isnan(value):
                continue
            h = plot_h * max(0.0, min(1.0, value))
            parts.append(
                f'<rect x="{x0 + si * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[si % len(COLOURS)]}"><title>{html.escape(group)}: {value:.3f}</title></rect>'
            )
        cx = left + gi * slot + slot / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 12}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {top + plot_h + 12})">{html.escape(group[:22])}</text>'
        )
    parts.append(_legend(list(series), width - 10 - 150 * len(series), 14))
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    series: dict[str, Sequence[float]], title: str, bins: int = 20, lo: float | None = None, hi: float | None = None,
    xlabel: str = "", width: int = 520,
) -> str:
    """Overlaid histograms (share of each series per bin)."""
    height, left, bottom, top = 220, 40, 36, 24
    plot_w, plot_h = width - left - 10, height - bottom - top
    every = [v for values in series.values() for v in values]
    if not every:
        return f"<p class=muted>{html.escape(title)}: no data</p>"
    lo = min(every) if lo is None else lo
    hi = max(every) if hi is None else hi
    hi = hi if hi > lo else lo + 1
    edges = np.linspace(lo, hi, bins + 1)
    shares = {name: np.histogram(np.clip(values, lo, hi), edges)[0] / max(1, len(values)) for name, values in series.items()}
    peak = max(float(s.max()) for s in shares.values()) or 1.0
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">']
    parts.append(f'<text x="{left}" y="14" font-weight="bold">{html.escape(title)}</text>')
    step = plot_w / bins
    for si, (name, share) in enumerate(shares.items()):
        colour = COLOURS[si % len(COLOURS)]
        for b, value in enumerate(share):
            h = plot_h * value / peak
            parts.append(
                f'<rect x="{left + b * step:.1f}" y="{top + plot_h - h:.1f}" width="{step - 1:.1f}" height="{h:.1f}" '
                f'fill="{colour}" fill-opacity="0.55"><title>{html.escape(name)} {edges[b]:.2f}–{edges[b + 1]:.2f}: '
                f"{value:.1%}</title></rect>"
            )
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        x = left + plot_w * frac
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{lo + (hi - lo) * frac:.2f}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(_legend(list(series), left + 10, 32))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    xs: Sequence[float], series: dict[str, Sequence[float | None]], title: str, marker: float | None = None,
    width: int = 1000,
) -> str:
    """Lines over x in 0..1 and y in 0..1, with an optional vertical marker (the configured threshold)."""
    height, left, bottom, top = 280, 40, 36, 24
    plot_w, plot_h = width - left - 10, height - bottom - top

    def px(x: float) -> float:
        return left + plot_w * x

    def py(y: float) -> float:
        return top + plot_h * (1 - y)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">']
    parts.append(f'<text x="{left}" y="14" font-weight="bold">{html.escape(title)}</text>')
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 4}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
        parts.append(f'<text x="{px(tick):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{tick:.2f}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">confidence threshold</text>'
    )
    for si, (name, ys) in enumerate(series.items()):
        points = [f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True) if y is not None]
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{COLOURS[si % len(COLOURS)]}" stroke-width="2" '
                f'points="{" ".join(points)}"><title>{html.escape(name)}</title></polyline>'
            )
    if marker is not None:
        parts.append(
            f'<line x1="{px(marker):.1f}" x2="{px(marker):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#111" '
            f'stroke-dasharray="4 3"/><text x="{px(marker) + 4:.1f}" y="{top + 10}">configured {marker:.2f}</text>'
        )
    parts.append(_legend(list(series), width - 10 - 150 * len(series), 14))
    parts.append("</svg>")
    return "".join(parts)


def _legend(names: Sequence[str], x: float, y: float) -> str:
    out = []
    for i, name in enumerate(names):
        cx = x + i * 150
        out.append(
            f'<rect x="{cx:.1f}" y="{y - 9}" width="10" height="10" fill="{COLOURS[i % len(COLOURS)]}"/>'
            f'<text x="{cx + 14:.1f}" y="{y}">{html.escape(name)}</text>'
        )
    return "".join(out)


# -- the page ------------------------------------------------------------------------------------------


def _overall_table(results: dict[str, Any]) -> str:
    systems = results["systems"]
    names = list(systems)
    metrics = [m for m in systems["kbassist"]["overall"]] if "kbassist" in systems else []
    rows = ["<table><tr><th>metric</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "<th>n</th></tr>"]
    for metric in metrics:
        arrow = "↑" if HIGHER_IS_BETTER.get(metric, True) else "↓"
        cells = "".join(_metric_cell(systems[n]["overall"].get(metric)) for n in names)
        n = systems["kbassist"]["overall"][metric].get("n")
        rows.append(f"<tr><td>{html.escape(metric)} {arrow}</td>{cells}<td>{n}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _llm_section(llm: dict[str, Any] | None, judge: dict[str, Any] | None) -> str:
    """Tokens and estimated cost per answer (counted with tiktoken), and who judged groundedness."""
    if not llm and not judge:
        return ""
    parts = ["<h2>Language model</h2>"]
    if llm:
        usd = llm.get("usd_per_answer")
        parts.append(
            "<table><tr><th>per answer</th><th>kbassist</th></tr>"
            f"<tr><td>prompt tokens</td><td>{_fmt(llm.get('prompt_tokens'), 1)}</td></tr>"
            f"<tr><td>completion tokens</td><td>{_fmt(llm.get('completion_tokens'), 1)}</td></tr>"
            f"<tr><td>estimated cost (USD)</td><td>{'— (no prices configured)' if usd is None else _fmt(usd, 5)}</td></tr>"
            "</table>"
        )
    if judge:
        parts.append(
            f"<p class=muted>groundedness_llm: judged by {html.escape(str(judge.get('model', '')))} on "
            f"{_fmt(judge.get('judged'))} answers; {_fmt(judge.get('unreadable'))} verdicts could not be read "
            "and are left out.</p>"
        )
    return "".join(parts)


def _breakdown_table(breakdown: dict[str, dict], metrics: Sequence[str]) -> str:
    """One row per group, each value with its 95% interval: small groups are where intervals matter most."""
    rows = ["<table><tr><th>group</th><th>n</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "</tr>"]
    for group, entry in breakdown.items():
        cells = "".join(_metric_cell(entry.get(m)) for m in metrics)
        rows.append(f"<tr><td>{html.escape(group)}</td><td>{entry['n']}</td>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


BREAKDOWN_METRICS = (
    "hit@5", "mrr@10", "f1", "span_containment", "citation_precision", "groundedness",
    "refusal_recall", "deflection", "false_deflection",
)


def render_report(results: dict[str, Any], records: dict[str, list[Any]]) -> str:
    """The whole report as one HTML string (``records``: per-system :class:`eval.runner.Record` lists)."""
    threshold = results["threshold"]
    kb = results["systems"].get("kbassist", {})
    run = results.get("run", {})
    body = [f"<h1>Evaluation: {html.escape(results['dataset'])}</h1>"]
    body.append(
        f"<p class=muted>{run.get('date', '')} · {run.get('questions', 0)} questions · {run.get('documents', 0)} documents, "
        f"{run.get('chunks', 0)} chunks · generator {html.escape(str(run.get('generator', '')))} · "
        f"refusal threshold {threshold:.2f} · {run.get('seconds', 0)} s. "
        "Values with 95 % bootstrap intervals (1,000 resamples, seed 0); ↑ higher is better.</p>"
    )
    body.append("<h2>Overall</h2>" + _overall_table(results))
    body.append(_llm_section(kb.get("llm"), run.get("judge")))
    if "langchain_baseline" in results["systems"]:
        body.append(
            "<p class=muted>langchain_baseline: RecursiveCharacterTextSplitter 1000/200, Chroma, the same embedding "
            "model, top-4 similarity, same access scope and filters. It has no answer step and never refuses, so its "
            "answer metrics are empty and its false deflection counts a must-refuse question or a missing relevant "
            "passage (the best any reader could do with its context).</p>"
        )

    breakdown = kb.get("breakdowns", {})
    if breakdown.get("category"):
        cats = list(breakdown["category"])
        series = {
            m: [breakdown["category"][c].get(m, {}).get("value") for c in cats]
            for m in ("hit@5", "span_containment", "citation_precision", "refusal_recall")
        }
        body.append("<h2>Per category</h2><div class=chart>" + bar_chart(cats, series, "kbassist per category") + "</div>")
        for key in ("category", "role", "market"):
            body.append(f"<h3>By {key}</h3>" + _breakdown_table(breakdown[key], BREAKDOWN_METRICS))

    kb_records = records.get("kbassist", [])
    if kb_records:
        body.append("<h2>Score distributions</h2><div class=chart>")
        body.append(
            histogram(
                {
                    "must answer": [r.confidence for r in kb_records if not r.must_refuse],
                    "must refuse": [r.confidence for r in kb_records if r.must_refuse],
                },
                "Confidence (probability the answer is right)",
                lo=0.0,
                hi=1.0,
                xlabel="confidence",
            )
        )
        f1s = [
            best_f1(strip_citations(r.answer), r.answers)
            for r in kb_records
            if r.answered0 and r.answer and r.answers and not r.must_refuse and r.confidence >= threshold
        ]
        body.append(histogram({"answered": f1s}, "Token F1 of answered questions", lo=0.0, hi=1.0, xlabel="F1"))
        body.append("</div><h2>Latency</h2><div class=chart>")
        body.append(
            histogram(
                {name: [r.latency_ms for r in recs] for name, recs in records.items()},
                "Latency per question (ms)",
                bins=30,
                lo=0.0,
                hi=float(np.percentile([r.latency_ms for recs in records.values() for r in recs], 99)),
                xlabel="ms (clipped at p99)",
                width=1000,
            )
        )
        body.append("</div>")

    curve = kb.get("threshold_curve", [])
    if curve:
        xs = [row["threshold"] for row in curve]
        series = {name: [row.get(name) for row in curve] for name in ("deflection", "false_deflection", "refusal_recall", "answer_rate")}
        body.append("<h2>Deflection and false deflection against the threshold</h2><div class=chart>")
        body.append(line_chart(xs, series, "kbassist: rates by refusal threshold", marker=threshold))
        body.append("</div><table><tr><th>threshold</th>" + "".join(f"<th>{n}</th>" for n in series) + "</tr>")
        for row in curve[::5]:
            body.append(f"<tr><td>{row['threshold']:.2f}</td>" + "".join(f"<td>{_fmt(row.get(n))}</td>" for n in series) + "</tr>")
        body.append("</table>")

    bins = [row for row in kb.get("reliability", []) if row["n"]]
    if bins:
        body.append(
            "<h2>Reliability of the confidence</h2><p class=muted>Confidence is the answerability model's "
            "probability that the answer is right; a reliable model's points lie on the diagonal. Questions that "
            "had to be refused count as wrong answers.</p><div class=chart>"
        )
        body.append(
            line_chart(
                [row["predicted"] for row in bins],
                {"observed": [row["observed"] for row in bins], "perfect": [row["predicted"] for row in bins]},
                "Observed share right against predicted probability",
                marker=threshold,
            )
        )
        body.append("</div><table><tr><th>bin</th><th>predicted</th><th>observed</th><th>questions</th></tr>")
        for row in bins:
            body.append(
                f"<tr><td>{row['from']:.1f}-{row['to']:.1f}</td><td>{row['predicted']:.3f}</td>"
                f"<td>{row['observed']:.3f}</td><td>{row['n']}</td></tr>"
            )
        body.append("</table>")

    body.append("<h2>Settings</h2><table>")
    for key, value in run.get("settings", {}).items():
        body.append(f"<tr><td>{html.escape(key)}</td><td>{_fmt(value)}</td></tr>")
    body.append("</table>")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Evaluation report</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
