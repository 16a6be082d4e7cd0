"""The files ``kbassist eval calibrate`` writes: both models, and a report a KB owner can read."""

from __future__ import annotations

import json
from pathlib import Path

from assist.models import LogisticModel


def write_calibration(out: Path, segments: LogisticModel, answerability: LogisticModel) -> None:
    """``segments.json``, ``answerability.json`` and ``calibration.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, model in (("segments", segments), ("answerability", answerability)):
        (out / f"{name}.json").write_text(json.dumps(model.to_json(), indent=1, ensure_ascii=False) + "\n", "utf-8")
    (out / "calibration.md").write_text(calibration_markdown(segments, answerability), "utf-8")


def calibration_markdown(segments: LogisticModel, answerability: LogisticModel) -> str:
    info, sel = answerability.info, segments.info
    thresholds = info.get("thresholds", {})
    lines = [
        "# Answer models",
        "",
        f"- Sentence selection: {sel.get('candidates')} candidate segments, {sel.get('positive_share')} of them useful; "
        f"cross-validated AUC {sel.get('cv_auc')}.",
        f"- Answerability: {info.get('questions')} questions, {info.get('right_share')} given a useful answer when "
        f"always answered; cross-validated AUC {info.get('cv_auc')}.",
        f"- Answer at probability >= {thresholds.get('answer')} (a wrong answer counted as {info.get('wrong_answer_cost')} "
        f"refusals); between {thresholds.get('related')} and that, show related articles and offer a person.",
        "",
        "## Per question set",
        "",
        "Cross-validated at the chosen threshold: answer_correct and false refusal over answerable questions,",
        "refusal recall over must-refuse ones, wrong answers (answered, but must-refuse or not fully right) over all.",
        "",
        "| set | questions | useful when always answered | AUC | answer_correct | false refusal | refusal recall | wrong answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in info.get("sets", {}).items():
        at = row.get("cv_at_threshold", {})
        lines.append(
            f"| {name} | {row['questions']} | {row['right_share']} | {row['cv_auc']} | {at.get('answer_correct')} | "
            f"{at.get('false_refusal')} | {at.get('refusal_recall')} | {at.get('wrong_answers')} |"
        )
    lines += [
        "",
        "## Reliability (cross-validated)",
        "",
        "Predicted probability of a right answer against how often the answer was right.",
        "",
        "| bin | predicted | observed | questions |",
        "|---|---|---|---|",
    ]
    for row in info.get("reliability_cv", []):
        lines.append(f"| {row['from']:.1f}-{row['to']:.1f} | {row['predicted']:.3f} | {row['observed']:.3f} | {row['n']} |")
    lines += [
        "",
        "## Threshold curve (cross-validated)",
        "",
        "Share of all questions answered, answered right, and answered wrong (a wrong answer to a customer is a "
        "false deflection).",
        "",
        "| threshold | answered | right | wrong |",
        "|---|---|---|---|",
    ]
    for row in info.get("curve_cv", []):
        lines.append(f"| {row['threshold']:.2f} | {row['answered']:.3f} | {row['right']:.3f} | {row['wrong']:.3f} |")
    lines += ["", "## Coefficients (standardised features)", ""]
    for model, title in ((segments, "selection"), (answerability, "answerability")):
        pairs = ", ".join(f"{f} {w:+.2f}" for f, w in zip(model.features, model.weights[1:], strict=True))
        lines.append(f"- {title}: intercept {model.weights[0]:+.2f}; {pairs}")
    return "\n".join(lines) + "\n"
