"""What the benchmark scripts that compare arms share: the world test set (POPE x3 in score mode,
CHAIR on detailed captions), one evaluation per model with resume, each arm's mean over seeds with
a 95 % bootstrap CI over images pooled across seeds, and differences to a reference arm with a
paired bootstrap CI (the arms answer the same images)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np


def _metric(name: str):
    """(per-record counts, metric of their column sums) of a benchmark: POPE accuracy or CHAIR_i."""
    from halluscope.tasks.world import CHAIR_FROM_SUMS, POPE_FROM_SUMS, chair_counts, pope_counts

    return (pope_counts, POPE_FROM_SUMS["accuracy"]) if "pope" in name else (chair_counts, CHAIR_FROM_SUMS["chair_i"])


def stat(name: str, records: list[dict]) -> float:
    """POPE accuracy or CHAIR_i of a benchmark's records."""
    from halluscope.tasks.world import metric_of

    counts, fn = _metric(name)
    return metric_of(counts(records), fn)


def image_counts(name: str, groups: dict, keys: list) -> np.ndarray:
    """One row of summed counts per image (dict image -> records), in the order of `keys`."""
    counts, _ = _metric(name)
    return np.stack([counts(groups[k]).sum(0) for k in keys])


def paired_diff_ci(a: dict, b: dict, name: str, n_boot: int = 1000, seed: int = 0) -> tuple[float, list[float]]:
    """stat(a) - stat(b) and its 95 % CI, resampling the images both arms share (dicts image -> records)."""
    from halluscope import metrics
    from halluscope.tasks.world import metric_of

    keys = sorted(set(a) & set(b))
    ca, cb = image_counts(name, a, keys), image_counts(name, b, keys)
    _, fn = _metric(name)
    width = ca.shape[1]
    point = metric_of(ca, fn) - metric_of(cb, fn)
    lo, hi = metrics.bootstrap_sums_ci(np.hstack([ca, cb]), lambda s: fn(s[:, :width]) - fn(s[:, width:]), n_boot, seed)
    return point, [lo, hi]


def by_image(records: list[dict]) -> dict:
    groups: dict = {}
    for r in records:
        groups.setdefault(r.get("image_id", r["id"]), []).append(r)
    return groups


def world_benches(world, pope_images: int, chair_images: int) -> list:
    from halluscope.tasks.world import WorldCHAIR, WorldPOPE
    from halluscope.world import POPE_SPLITS

    return [WorldPOPE(world, s, n_images=pope_images) for s in POPE_SPLITS] + [WorldCHAIR(world, n_images=chair_images)]


def profile_checks(adapter, world, out: Path, pope_images: int, chair_images: int,
                   qa_images: int = 0) -> tuple[list[dict], dict]:
    """The demo's hallucination-profile checks of one model (POPE random and adversarial, CHAIR, and
    with `qa_images` the world-qa questions of every kind, which add the checks of the other kinds),
    evaluated into OUT (a rerun resumes); returns the checks and CHAIR's metrics, with the kind
    profile under "kinds" when world-qa ran."""
    from halluscope.report import hallucination_checks, kind_profile
    from halluscope.runner import run_benchmark
    from halluscope.tasks.world import WorldCHAIR, WorldPOPE, WorldQA
    from halluscope.world import QA_KINDS

    benches = [WorldPOPE(world, "random", n_images=pope_images), WorldPOPE(world, "adversarial", n_images=pope_images),
               WorldCHAIR(world, n_images=chair_images)]
    benches += [WorldQA(world, kind, n_images=qa_images) for kind in QA_KINDS] if qa_images else []
    results = {}
    for bench in benches:
        results[bench.name] = run_benchmark(bench, adapter, out, batch_size=64, progress=False)
    chair = dict(results["world-chair"]["metrics"])
    if qa_images:
        chair["kinds"] = kind_profile(results)
    return hallucination_checks(results), chair


def evaluate_arms(models: dict[str, list[str]], out: Path, benches: list, reference: str | None = None,
                  batch_size: int = 32) -> list[dict]:
    """Evaluate every model (arm -> one path per seed) on every benchmark into OUT/eval/<model
    folder name>/ (a rerun resumes) and return one row per arm and benchmark."""
    from halluscope import load_model, metrics
    from halluscope.runner import read_jsonl, run_benchmark

    records: dict[tuple[str, str], list[list[dict]]] = {}
    extra: dict[tuple[str, str], list[dict]] = {}  # per seed: CHAIR_s, recall, words per caption
    for arm, paths in models.items():
        for path in paths:
            adapter = load_model(path)
            folder = out / "eval" / Path(path).name
            for bench in benches:
                run_benchmark(bench, adapter, folder, batch_size=batch_size)
                stem = folder / bench.name.replace(":", "_")
                records.setdefault((arm, bench.name), []).append(read_jsonl(Path(f"{stem}.jsonl")))
                if "chair" in bench.name:
                    m = json.loads(Path(f"{stem}.results.json").read_text())["metrics"]
                    words = statistics.mean(len(r["caption"].split()) for r in records[(arm, bench.name)][-1])
                    extra.setdefault((arm, bench.name), []).append(
                        {"chair_s": m["chair_s"], "recall": m["recall"], "words": words})
    rows = []
    for (arm, name), per_seed in records.items():
        values = [stat(name, rs) for rs in per_seed]
        pooled = by_image([r for rs in per_seed for r in rs])
        ci = metrics.bootstrap_sums_ci(image_counts(name, pooled, list(pooled)), _metric(name)[1])
        row = {"arm": arm, "benchmark": name, "metric": "accuracy" if "pope" in name else "chair_i",
               "per_seed": values, "mean": statistics.mean(values), "ci95_pooled": list(ci)}
        if (arm, name) in extra:  # means over seeds
            row |= {k: statistics.mean(e[k] for e in extra[(arm, name)]) for k in ("chair_s", "recall", "words")}
        if reference is not None and arm != reference:
            ref = by_image([r for rs in records[(reference, name)] for r in rs])
            row["diff_vs_" + reference], row["diff_ci95"] = paired_diff_ci(pooled, ref, name)
        rows.append(row)
    return rows


def model_hashes(models: dict[str, list[str]]) -> dict[str, str | None]:
    """Model folder name -> hash of its weights, for every model of every arm (the provenance block)."""
    from _provenance import model_hash

    return {Path(p).name: model_hash(p) for paths in models.values() for p in paths}


def write_table(out: Path, stem: str, rows: list[dict], reference: str | None = None) -> str:
    """OUT/<stem>.md, the rows as a Markdown table (the JSON goes through `_provenance.write_result`);
    returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    head = "| arm | benchmark | mean over seeds % | pooled 95 % CI | per seed | CHAIR_s %, recall %, words |"
    rule = "|---|---|---|---|---|---|"
    if reference:
        head, rule = head + f" vs {reference}, points [95 % CI] |", rule + "---|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['arm']} | {r['benchmark']} {r['metric']} | {100 * r['mean']:.1f} | "
                f"[{100 * r['ci95_pooled'][0]:.1f}, {100 * r['ci95_pooled'][1]:.1f}] | "
                f"{', '.join(f'{100 * v:.1f}' for v in r['per_seed'])} | "
                + (f"{100 * r['chair_s']:.1f}, {100 * r['recall']:.1f}, {r['words']:.1f} |" if "words" in r else " |"))
        if reference:
            d = r.get("diff_vs_" + reference)
            lo, hi = r.get("diff_ci95", (0.0, 0.0))
            line += " |" if d is None else f" {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"
        lines.append(line)
    table = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(table)
    return table
