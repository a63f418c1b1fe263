"""What the benchmark scripts that compare arms share: the world test set (POPE x3 in score mode,
CHAIR on detailed captions), one evaluation per model with resume, each arm's mean over seeds with
a 95 % bootstrap CI over images pooled across seeds, and differences to a reference arm with a
paired bootstrap CI (the arms answer the same images)."""

from __future__ import annotations

import json
import statistics
from functools import partial
from pathlib import Path

import numpy as np


def paired_diff_ci(a: dict, b: dict, stat, n_boot: int = 1000, seed: int = 0) -> tuple[float, list[float]]:
    """stat(a) - stat(b) and its 95 % CI, resampling the images both arms share (dicts image -> records)."""
    keys = sorted(set(a) & set(b))
    rng = np.random.default_rng(seed)
    point = stat([r for k in keys for r in a[k]]) - stat([r for k in keys for r in b[k]])
    diffs = []
    for _ in range(n_boot):
        pick = [keys[i] for i in rng.integers(len(keys), size=len(keys))]
        diffs.append(stat([r for k in pick for r in a[k]]) - stat([r for k in pick for r in b[k]]))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return point, [float(lo), float(hi)]


def by_image(records: list[dict]) -> dict:
    groups: dict = {}
    for r in records:
        groups.setdefault(r.get("image_id", r["id"]), []).append(r)
    return groups


def world_benches(world, pope_images: int, chair_images: int) -> list:
    from halluscope.benchmarks.world import WorldCHAIR, WorldPOPE
    from halluscope.world import POPE_SPLITS

    return [WorldPOPE(world, s, n_images=pope_images) for s in POPE_SPLITS] + [WorldCHAIR(world, n_images=chair_images)]


def stat(name: str, records: list[dict]) -> float:
    """POPE accuracy or CHAIR_i of a benchmark's records."""
    from halluscope.benchmarks.world import chair_i

    if "pope" in name:
        return sum(r["prediction"] == r["label"] for r in records) / len(records)
    return chair_i(records)


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
        ci = metrics.bootstrap_ci(list(pooled.values()), lambda gs, name=name: stat(name, [r for g in gs for r in g]))
        row = {"arm": arm, "benchmark": name, "metric": "accuracy" if "pope" in name else "chair_i",
               "per_seed": values, "mean": statistics.mean(values), "ci95_pooled": list(ci)}
        if (arm, name) in extra:  # means over seeds
            row |= {k: statistics.mean(e[k] for e in extra[(arm, name)]) for k in ("chair_s", "recall", "words")}
        if reference is not None and arm != reference:
            ref = by_image([r for rs in records[(reference, name)] for r in rs])
            row["diff_vs_" + reference], row["diff_ci95"] = paired_diff_ci(pooled, ref, partial(stat, name))
        rows.append(row)
    return rows


def write_table(out: Path, stem: str, meta: dict, rows: list[dict], reference: str | None = None) -> str:
    """OUT/<stem>.json (meta + rows) and OUT/<stem>.md; returns the Markdown table."""
    (out / f"{stem}.json").write_text(json.dumps(meta | {"reference": reference, "rows": rows}, indent=1))
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
            line += " |" if d is None else f" {100 * d:+.1f} [{100 * r['diff_ci95'][0]:+.1f}, {100 * r['diff_ci95'][1]:+.1f}] |"
        lines.append(line)
    table = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(table)
    return table
