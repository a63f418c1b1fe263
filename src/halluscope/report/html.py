"""report.html: one self-contained page (images inline as data URIs, no script, no network) built
from run folders: the profile checks, each benchmark's table with 95 % intervals, the method
comparison (forest plot, cost-benefit scatter, table), a gallery of captions with every
hallucinated word marked by kind, and POPE's adversarial false positives.

    build_report(["halluscope-demo"], "report.html")   # a demo folder, or any run folders
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any

from ..compare import BASELINES, RunTask, method_comparison, read_run, speed, unit
from . import figures
from .correction import correction_section, has_correction
from .diagnosis import diagnosis_only, diagnosis_section, has_diagnosis

KINDS = ("object", "attribute", "count", "relation")
GALLERY_SIZE = 12
FALSE_POSITIVES = 8
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1180px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
td:first-child,th:first-child{text-align:left}.yes{color:#1a7f37;font-weight:600}.no{color:#cf222e;font-weight:600}
.sig-a{background:#dafbe1}.sig-b{background:#ffebe9}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px;display:flex;gap:10px;font-size:.85em}
.card img{width:128px;height:128px;image-rendering:pixelated;flex:none;border:1px solid #ccc}
.cap{margin:.25em 0}.truth{color:#555}mark{border-radius:3px;padding:0 2px}
mark.object{background:#ffb3b3}mark.attribute{background:#ffd98c}mark.count{background:#b8d8ff}mark.relation{background:#d9c2ff}
.legend mark{margin-right:.6em}.fig{max-width:100%}.muted{color:#777;font-size:.85em}
"""


# ---------------------------------------------------------------------------- inputs
def load(dirs: list[str | Path]) -> dict[str, Any]:
    """What the report shows, from run folders: a demo folder (its results.json names its arms) or
    any folders `read_run` accepts. Returns {"header", "checks", "arms": {label: tasks}, "comparison",
    "baselines", "speeds"}; the comparison is recomputed only where no demo results hold one."""
    arms: dict[str, dict[str, RunTask]] = {}
    speeds: dict[str, Any] = {}
    header: dict[str, Any] = {}
    checks: list[dict[str, Any]] | None = None
    kinds: list[dict[str, Any]] | None = None
    comparison = None
    for d in dirs:
        d = Path(d)
        summary_path = d / "results.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        if isinstance(summary, dict) and "methods" in summary:  # a demo folder
            header = header or summary.get("header", {})
            checks = checks if checks is not None else summary.get("checks")
            kinds = kinds if kinds is not None else summary.get("kinds")
            comparison = comparison or summary.get("comparison")
            for name, info in summary["methods"].items():
                arms[name] = read_run(d / Path(info["folder"]).name)
                speeds[name] = speed(d / Path(info["folder"]).name)
        else:
            tasks = read_run(d)
            label = d.name if d.name not in arms else str(d)
            arms[label] = tasks
            speeds[label] = speed(d)
            header = header or {"model": next(iter(tasks.values())).results.get("config", {}).get("model")}
    baselines = tuple(b for b in BASELINES if b in arms) or (next(iter(arms)),)
    if comparison is None and len(arms) > 1:
        comparison = method_comparison(arms, speeds, baselines)
    if checks is None:
        checks = _checks(arms)
    if kinds is None:
        kinds = _kinds(arms)
    return {"header": header, "checks": checks, "kinds": kinds, "arms": arms, "comparison": comparison,
            "baselines": baselines, "speeds": speeds}


def _checks(arms: dict[str, dict[str, RunTask]]) -> list[dict[str, Any]] | None:
    from . import hallucination_checks

    for tasks in arms.values():
        needed = ("world-pope:random", "world-pope:adversarial", "world-chair")
        if all(n in tasks for n in needed):
            return hallucination_checks({n: t.results for n, t in tasks.items()})
    return None


def _kinds(arms: dict[str, dict[str, RunTask]]) -> list[dict[str, Any]] | None:
    """The kind profile of the first arm that has one (world-CHAIR's claims or a world-qa task)."""
    from . import kind_profile

    for tasks in arms.values():
        profile = kind_profile({n: t.results for n, t in tasks.items()})
        if profile:
            return profile
    return None


# ---------------------------------------------------------------------------- images
def _data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode()}"


_WORLDS: dict[str, Any] = {}


def image_uri(task: RunTask, record: dict[str, Any]) -> str | None:
    """The record's image as a data URI: a world image drawn again from the run's world, a real
    one read from its path (relative paths from the run's --images folder); None if unreachable."""
    from PIL import Image

    world_args = task.task_args.get("world")
    image_id = str(record.get("image_id", record.get("id")))
    if world_args is not None and re.fullmatch(r"[a-z]+-\d+", image_id):
        from ..world import World

        key = json.dumps(world_args, sort_keys=True)
        if key not in _WORLDS:
            _WORLDS[key] = World(world_args["seed"], **world_args["knobs"])
        split, index = image_id.rsplit("-", 1)
        image = _WORLDS[key].render(_WORLDS[key].scene(split, int(index)))
    else:
        path = record.get("image")
        if not path:
            return None
        path = Path(path)
        if not path.is_absolute() and task.task_args.get("images"):
            path = Path(task.task_args["images"]) / path
        try:
            image = Image.open(path).convert("RGB")
        except OSError:
            return None
        image.thumbnail((256, 256))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return _data_uri(buf.getvalue())


# ---------------------------------------------------------------------------- marking
def hallucinated_spans(task: RunTask, record: dict[str, Any]) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each hallucinated phrase in a caption record: the claims' spans where
    the benchmark lists claims with verdicts, else the words of its hallucinated objects."""
    caption = record.get("caption", "")
    if isinstance(record.get("claims"), list):
        return sorted((c["span"][0], c["span"][1], c.get("kind", "object")) for c in record["claims"]
                      if not c.get("true", True) and c.get("span"))
    words = _hallucinated_words(task, record)
    spans = []
    for w in words:
        for m in re.finditer(rf"\b{re.escape(w)}\b", caption, flags=re.IGNORECASE):
            spans.append((m.start(), m.end(), "object"))
    return sorted(spans)


def _hallucinated_words(task: RunTask, record: dict[str, Any]) -> list[str]:
    from .. import metrics

    if task.benchmark == "world-chair":
        from ..tasks.world import world_vocabulary

        vocab = world_vocabulary()
        per = metrics.chair_vocabulary([record["caption"]], [record["objects"]], vocab)["per_sample"][0]
        return [w for w, c in vocab.items() if c in per["hallucinated"]]
    if task.benchmark == "chair":
        from ..tasks.real import CHAIR

        gt = {str(k): v for k, v in CHAIR(gt=task.task_args.get("gt")).ground_truth().items()}
        per = metrics.chair([record], gt, parity=task.task_args.get("parity", True))["per_sample"][0]
        return [w for line in metrics.coco_synonyms() for w in line if line[0] in per["hallucinated"]]
    return []


def marked(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` escaped, with each span in a <mark class=kind>."""
    out, at = [], 0
    for start, end, kind in spans:
        if start < at:
            continue
        out += [html.escape(text[at:start]), f'<mark class="{kind}" title="{kind} hallucination">',
                html.escape(text[start:end]), "</mark>"]
        at = end
    return "".join(out) + html.escape(text[at:])


# ---------------------------------------------------------------------------- sections
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""


def _metric_rows(m: dict[str, Any]) -> list[tuple[str, float, list | None]]:
    """(name, value, ci) of a results' scalar metrics in [0, 1]."""
    ci = m.get("ci95", {})
    rows = []
    for k, v in m.items():
        if isinstance(v, float) and 0 <= v <= 1:
            rows.append((k, v, ci.get(k) if isinstance(ci, dict) else (ci if k == "chair_i" else None)))
    return rows


def _benchmarks_section(arms: dict[str, dict[str, RunTask]]) -> str:
    parts = ['<h2 id="benchmarks">Benchmarks (%, 95 % bootstrap intervals over images)</h2>']
    benches = list(dict.fromkeys(b for tasks in arms.values() for b in tasks))
    for bench in benches:
        having = {a: t[bench] for a, t in arms.items() if bench in t}
        names = list(dict.fromkeys(k for t in having.values() for k, _, _ in _metric_rows(t.results["metrics"])))
        parts.append(f"<h3>{html.escape(bench)}</h3><table><tr><th>run</th><th>n</th>"
                     + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>")
        for arm, t in having.items():
            vals = {k: (v, c) for k, v, c in _metric_rows(t.results["metrics"])}
            cells = "".join(f"<td>{_pct(vals[n][0])} {_ci(vals[n][1])}</td>" if n in vals else "<td></td>"
                            for n in names)
            parts.append(f"<tr><td>{html.escape(arm)}</td><td>{t.results.get('n_samples', '')}</td>{cells}</tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _checks_section(checks: list[dict[str, Any]] | None) -> str:
    if not checks:
        return ('<h2 id="profile">Hallucination profile checks</h2><p class="muted">Not measured: the runs hold '
                'no world POPE (random, adversarial) and world CHAIR results of one model.</p>')
    rows = "".join(f"<tr><td>{html.escape(c['check'])}</td><td>{html.escape(c['value'])}</td>"
                   f"<td class=\"{'yes' if c['holds'] else 'no'}\">{'yes' if c['holds'] else 'NO'}</td></tr>"
                   for c in checks)
    return ('<h2 id="profile">Hallucination profile checks</h2>'
            f"<table><tr><th>check</th><th>measured</th><th>holds</th></tr>{rows}</table>")


def _kinds_section(kinds: list[dict[str, Any]] | None) -> str:
    from . import KIND_COLUMNS, kind_rows

    if not kinds:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in KIND_COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in kind_rows(kinds))
    return ('<h2 id="kinds">Each kind of hallucination</h2><p class="muted">False claims: the share of the '
            "captions' claims of that kind that the scene refutes (world-chair). Accuracy: yes/no questions "
            "of that kind (world-qa), on items that conform to the world's bias and items that break it; the "
            "last column is the share of wrong answers that gave the prior's answer. 95 % bootstrap "
            f"intervals over images.</p><table><tr>{head}</tr>{rows}</table>")


def _comparison_section(data: dict[str, Any], figs: dict[str, Any]) -> str:
    comparison, baselines = data["comparison"], data["baselines"]
    if not comparison:
        return ""
    png, figs["forest"] = figures.forest_plot(comparison, baselines)
    png2, figs["cost_benefit"] = figures.cost_benefit(comparison)
    parts = ['<h2 id="comparison">What each method buys and what it costs</h2>',
             f'<img class="fig" alt="forest plot" src="{_data_uri(png)}">',
             f'<img class="fig" alt="cost-benefit scatter" src="{_data_uri(png2)}">',
             "<table><tr><th>method</th><th>benchmark</th><th>value [95 % CI]</th>"
             + "".join(f"<th>vs {b} (points)</th>" for b in baselines) + "<th>speed vs greedy</th></tr>"]
    for arm, row in comparison.items():
        for bench, e in row.items():
            cells = ""
            for b in baselines:
                d = e.get(f"delta_vs_{b}")
                if d is None:
                    cells += "<td></td>"
                    continue
                cls = f' class="sig-{d["better"]}"' if d["significant"] else ""
                cells += (f"<td{cls}>{100 * d['value']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
                          f"{' *' if d['significant'] else ''}</td>")
            ratio = e.get("speed_ratio_vs_greedy")
            parts.append(f"<tr><td>{html.escape(arm)}</td><td>{html.escape(bench)} {e['metric']}</td>"
                         f"<td>{_pct(e['value'])} {_ci(e['ci'])}</td>{cells}"
                         f"<td>{'' if ratio is None else f'{ratio:.2f}x'}</td></tr>")
    parts.append('</table><p class="muted">* the 95 % paired-bootstrap interval leaves out 0 (green: the method '
                 "is better, red: worse). Values are on the images every method answered.</p>")
    return "\n".join(parts)


def _caption_task(tasks: dict[str, RunTask]) -> RunTask | None:
    return next((t for b, t in tasks.items() if b.partition(":")[0] in ("world-chair", "chair")), None)


def _gallery_section(data: dict[str, Any]) -> str:
    arms = data["arms"]
    base_name = data["baselines"][0]
    base = _caption_task(arms.get(base_name, {}))
    legend = "".join(f'<mark class="{k}">{k}</mark>' for k in KINDS)
    parts = ['<h2 id="gallery">Gallery: captions with their hallucinations marked</h2>',
             f'<p class="legend">{legend}</p>']
    for arm, tasks in arms.items():
        task = _caption_task(tasks)
        if task is None:
            continue
        records = [r for r in task.records if "caption" in r]
        base_by_id = {r["id"]: r for r in base.records} if base is not None and arm != base_name else {}
        # Hallucinated captions first (those where the method and greedy differ before them), then others.
        scored = [(r, hallucinated_spans(task, r)) for r in records]
        scored.sort(key=lambda x: (not x[1], base_by_id.get(x[0]["id"], {}).get("caption") == x[0]["caption"]))
        cards = []
        for r, spans in scored[:GALLERY_SIZE]:
            uri = image_uri(task, r)
            img = (f'<img alt="{html.escape(str(r["id"]))}" src="{uri}">' if uri
                   else '<p class="muted">image not reachable</p>')
            truth = r.get("objects")
            truth_text = f'<p class="truth">truth: {html.escape(", ".join(truth))}</p>' if truth else ""
            lines = [f'<p class="cap"><b>{html.escape(arm)}:</b> {marked(r["caption"], spans)}</p>']
            if r["id"] in base_by_id:
                b = base_by_id[r["id"]]
                lines.append(f'<p class="cap"><b>{html.escape(base_name)}:</b> '
                             f'{marked(b["caption"], hallucinated_spans(base, b))}</p>')
            cards.append(f'<div class="card">{img}<div><p class="muted">{html.escape(str(r["id"]))}</p>'
                         f'{truth_text}{"".join(lines)}</div></div>')
        parts.append(f'<h3>{html.escape(arm)}</h3><div class="grid">{"".join(cards)}</div>')
    return "\n".join(parts)


def _false_positives_section(data: dict[str, Any]) -> str:
    base = data["arms"].get(data["baselines"][0], {})
    task = base.get("world-pope:adversarial") or base.get("pope:adversarial")
    if task is None:
        return ""
    fps = [r for r in task.records if r.get("label") == "no" and str(r.get("prediction", "")).lower() == "yes"]
    partners = {}
    world_args = task.task_args.get("world")
    if world_args is not None:
        from ..world import WorldConfig

        partners = WorldConfig(**world_args["knobs"]).partners()
    present: dict[Any, set] = {}
    for r in task.records:
        if r.get("label") == "yes" and r.get("object"):
            present.setdefault(unit(r), set()).add(r["object"])
    cards = []
    for r in fps[:FALSE_POSITIVES]:
        uri = image_uri(task, r)
        img = f'<img alt="{html.escape(str(unit(r)))}" src="{uri}">' if uri else ""
        asked = r.get("object")
        if asked is None:  # a real benchmark's record names its question, not the object
            cards.append(f'<div class="card">{img}<div><p>Question {html.escape(str(r.get("question_id", r["id"])))}: '
                         'the object is absent; answered <span class="no">yes</span>.</p></div></div>')
            continue
        cause = sorted(p for p in present.get(unit(r), ()) if partners.get(p) == asked)
        why = (f"it co-occurs with the <b>{html.escape(cause[0])}</b> in the picture" if cause
               else "no co-occurrence partner of it is in the picture")
        cards.append(f'<div class="card">{img}<div><p>Asked about a <b>{html.escape(asked)}</b>, '
                     f'absent; answered <span class="no">yes</span>.</p><p class="muted">{why}</p></div></div>')
    return (f'<h2 id="false-positives">POPE adversarial: the objects it imagined ({len(fps)} false positives, '
            f'{html.escape(data["baselines"][0])})</h2><div class="grid">{"".join(cards)}</div>')


def build_report(dirs: list[str | Path], output: str | Path) -> dict[str, Any]:
    """Write the self-contained report.html of run folders `dirs` to `output`; returns the figures'
    data ({name: JSON-able data})."""
    runs = [d for d in dirs if not diagnosis_only(d)]  # a `halluscope diagnose` folder alone has no runs
    figs: dict[str, Any] = {}
    body = ["<h1>halluscope report</h1>"]
    if runs:
        data = load(runs)
        header = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in data["header"].items())
        body = [f"<h1>halluscope report</h1><ul>{header}</ul>", _checks_section(data["checks"]),
                _kinds_section(data["kinds"]), _comparison_section(data, figs), _benchmarks_section(data["arms"]),
                _gallery_section(data), _false_positives_section(data)]
    body += [correction_section(d, image_uri) for d in runs if has_correction(d)]
    body += [diagnosis_section(d) for d in dirs if has_diagnosis(d)]
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>halluscope report</title>'
            f'<style>{CSS}</style></head><body>{"".join(body)}</body></html>')
    Path(output).write_text(page)
    return figs
