"""The correction section of report.html: for each post-hoc correction in a run folder (`halluscope correct`,
`eval --correct`), every stage's scores and the captions side by side, original and corrected, with the
evidence for each claim (the question, the answer, the verdict)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..compare import read_run
from ..correction import corrected_files
from ..runner import read_jsonl

GALLERY = 12
KINDS = ("object", "attribute", "count", "relation")


def has_correction(folder: str | Path) -> bool:
    return Path(folder).is_dir() and bool(corrected_files(folder))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _marked(text: str, claims: list[dict[str, Any]]) -> str:
    """`text` escaped, its false claims in <mark class=kind>."""
    spans = sorted((c["span"][0], c["span"][1], c["kind"]) for c in claims if c.get("true") is False and c.get("span"))
    out, at = [], 0
    for start, end, kind in spans:
        if start < at:
            continue
        out += [html.escape(text[at:start]), f'<mark class="{kind}" title="false {kind} claim">',
                html.escape(text[start:end]), "</mark>"]
        at = end
    return "".join(out) + html.escape(text[at:]) if text else '<span class="muted">(nothing left)</span>'


def _evidence(check: dict[str, Any]) -> str:
    truth = {True: '<span class="yes">true</span>', False: '<span class="no">false</span>'}.get(check["true"], "–")
    asked = "; ".join(
        f'{html.escape(q["text"])} → <b>{html.escape(str(q.get("answer")))}</b>'
        + (f' ({q["p_yes"]:.2f})' if q.get("p_yes") is not None else "")
        + (f' [{q["n_boxes"]} boxes]' if "n_boxes" in q else "") for q in check["questions"])
    v = check["verdict"]
    action = html.escape(v["action"] + (f' → {v["fix"]}' if v["action"] == "fix" else ""))
    return (f'<li><b>{html.escape(check["text"])}</b> <span class="muted">{check["kind"]}</span> {truth}: '
            f'{asked or "<span class=muted>not asked</span>"} ⇒ {action}</li>')


def _scores_table(s: dict[str, Any], cost: dict[str, Any]) -> str:
    p, val = s["paired"], s["validation"]
    rows = []
    for k in (*KINDS, "all"):
        r = p[k]["rate"]
        v = val.get(k, {})
        rows.append(f"<tr><td>{k}</td><td>{_pct(r['original'])}</td><td>{_pct(r['corrected'])}</td>"
                    f"<td>{_pct(r['reduction'])} [{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}]</td>"
                    f"<td>{v.get('checked', 0)}</td><td>{_pct(v.get('accuracy'))}</td>"
                    f"<td>{_pct(v.get('refute_precision'))}</td><td>{_pct(v.get('refute_recall'))}</td></tr>")
    c = p["coverage"]
    e, x = s["edits"], s["extraction"]
    ratio = cost.get("ratio_to_generation")
    return ("<table><tr><th>kind</th><th>false claims % (original)</th><th>corrected</th>"
            "<th>relative reduction % [95 % CI]</th><th>claims checked</th><th>verdict accuracy %</th>"
            "<th>refute precision %</th><th>refute recall %</th></tr>" + "".join(rows) + "</table>"
            f"<p>Coverage {_pct(c['original'])} % → {_pct(c['corrected'])} % (relative change {_pct(c['change'])} % "
            f"[{_pct(c['ci95'][0])}, {_pct(c['ci95'][1])}]). Extraction recall {_pct(x['recall'])} % "
            f"({_pct(x['grammatical'])} % of captions in the grammar). Edit precision {_pct(e['precision'])} %, "
            f"edit recall {_pct(e['recall'])} %, fix accuracy {_pct(e['fix_accuracy'])} %, true claims deleted "
            f"{e['deleted_true_claims']}. Cost: {cost.get('questions_per_caption', 0):.1f} questions a caption"
            + (f", {ratio:.2f}× the time of generating it" if ratio else "") + ".</p>")


def correction_section(folder: str | Path, image_uri: Callable[[Any, dict], str | None] | None = None) -> str:
    """<h2>Post-hoc correction</h2>: per correction in `folder`, its scores and a gallery of captions (edited
    ones first), original and corrected side by side with the evidence. `image_uri(task, record)` draws an
    image (report.html passes its own)."""
    folder = Path(folder)
    try:
        tasks = read_run(folder)
    except ValueError:
        tasks = {}
    parts = [f'<h2 id="correction">Post-hoc correction ({html.escape(folder.name)})</h2>',
             '<p class="muted">Each caption as generated and as corrected; marked: false claims (exact truth). '
             "Below each, every claim's evidence: the questions asked, the answers (p(yes)), the verdict.</p>"]
    for records_path, results_path in corrected_files(folder):
        results = json.loads(results_path.read_text())
        records = read_jsonl(records_path)
        task = tasks.get(results.get("task"))
        parts.append(f'<h3>{html.escape(results["task"])}: {html.escape(results["spec"])} '
                     f'({results["n"]} captions)</h3>')
        if results.get("scores"):
            parts.append(_scores_table(results["scores"], results.get("cost", {})))
        records.sort(key=lambda r: not r.get("edits"))
        cards = []
        for r in records[:GALLERY]:
            uri = image_uri(task, r) if image_uri is not None and task is not None else None
            img = f'<img alt="{html.escape(str(r["id"]))}" src="{uri}">' if uri else ""
            original = _marked(r["original"], r.get("original_claims", []))
            corrected = _marked(r["caption"], r.get("claims", []))
            evidence = "".join(_evidence(c) for c in r.get("checks", []))
            cards.append(f'<div class="card">{img}<div><p class="muted">{html.escape(str(r["id"]))}</p>'
                         f'<table><tr><th>original</th><th>corrected</th></tr><tr><td>{original}</td>'
                         f'<td>{corrected}</td></tr></table><ul class="muted">{evidence}</ul></div></div>')
        parts.append(f'<div class="grid">{"".join(cards)}</div>')
    return "\n".join(parts)


__all__ = ["correction_section", "has_correction"]
