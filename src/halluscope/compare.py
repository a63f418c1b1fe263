"""Paired comparisons: one run against another over the samples both answered, and the main job's
comparison of every decoding method against greedy decoding and sampling on the same test images.

    compare_runs("runs/greedy", "runs/vcd")        # {benchmark: {metric: {"value", "ci", ...}}}
    run_methods(adapter, world, ["greedy", "sample", "vcd"], "runs/demo")

A difference's interval is a paired percentile bootstrap over images: each resample draws images
with replacement and takes both runs' answers for them, so what the images share (their difficulty)
cancels and the interval is narrower than two separate intervals would suggest. A difference is
called significant when its 95 % interval leaves out 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .runner import read_jsonl, run_benchmark
from .tasks.world import (
    CHAIR_FROM_SUMS, POPE_FROM_SUMS, QA_FROM_SUMS, chair_counts, metric_of, qa_counts, read_qa_answers,
)


# ---------------------------------------------------------------------------- per-image counts
def _yes_no_rows(records: list[dict]) -> np.ndarray:
    """(n, 5) rows tp, fp, tn, fn, 1 of yes/no records: POPE's (`prediction`, `label`) or MME's and
    AMBER's (`response`, `answer`), the answer read by POPE's official parser."""
    rows = []
    for r in records:
        said = r.get("raw", r.get("prediction", r.get("response", "")))
        yes = metrics.parse_yes_no(said) == "yes"
        pos = str(r.get("label", r.get("answer", ""))).strip().lower() == "yes"
        rows.append([yes and pos, yes and not pos, not yes and not pos, not yes and pos, 1])
    return np.array(rows, dtype=float).reshape(-1, 5)


def _real_chair_rows(records: list[dict], task_args: dict[str, Any]) -> np.ndarray:
    """world-CHAIR's count rows for COCO CHAIR records, scored against the run's ground truth."""
    from .tasks.real import CHAIR

    parity = task_args.get("parity", True)
    gt = {str(k): v for k, v in CHAIR(gt=task_args.get("gt"), parity=parity).ground_truth().items()}
    per_sample = metrics.chair(records, gt, parity=parity)["per_sample"]
    return chair_counts([{"objects": sorted(gt[str(r["image_id"])])} for r in records], per_sample)


def _qa_rows(records: list[dict], _: dict[str, Any]) -> np.ndarray:
    """world-qa's count rows (yes/no and open questions together), yes/no answers read as its score reads them."""
    return qa_counts(read_qa_answers(records))


@dataclass(frozen=True)
class Scoring:
    """How a benchmark's records become per-image count rows, and its metrics from their sums.
    `lower_is_better`: the metrics that count hallucination."""

    rows: Callable[[list[dict], dict[str, Any]], np.ndarray]
    metrics: dict[str, Callable[[np.ndarray], np.ndarray]]
    headline: str
    lower_is_better: frozenset[str] = field(default_factory=frozenset)


YES_NO = Scoring(lambda records, _: _yes_no_rows(records), POPE_FROM_SUMS, "accuracy",
                 frozenset({"false_positive_rate"}))
CAPTIONS = Scoring(lambda records, _: chair_counts(records), CHAIR_FROM_SUMS, "chair_i",
                   frozenset({"chair_i", "chair_s"}))
COCO_CAPTIONS = Scoring(_real_chair_rows, CHAIR_FROM_SUMS, "chair_i", frozenset({"chair_i", "chair_s"}))
QUESTIONS = Scoring(_qa_rows, QA_FROM_SUMS, "accuracy")
SCORINGS = {"world-pope": YES_NO, "pope": YES_NO, "mme": YES_NO, "world-chair": CAPTIONS, "chair": COCO_CAPTIONS,
            "world-qa": QUESTIONS}


def scoring(benchmark: str, records: list[dict] | None = None) -> Scoring:
    """The paired scoring of a benchmark, by its family; any other task whose records are yes/no
    answers with labels is scored as POPE is."""
    family = benchmark.partition(":")[0]
    if family in SCORINGS:
        return SCORINGS[family]
    if records and all("label" in r and ("prediction" in r or "raw" in r) for r in records):
        return YES_NO
    raise ValueError(f"benchmark {benchmark!r} has no paired comparison; compare runs of "
                     f"{', '.join(SCORINGS)} or of a task with yes/no answers and labels")


def unit(record: dict) -> Any:
    """The unit a bootstrap resamples: the image (all its questions together), else the sample."""
    return record.get("image_id", record.get("image", record["id"]))


def image_counts(benchmark: str, records: list[dict], task_args: dict[str, Any] | None = None) -> dict[Any, np.ndarray]:
    """{image: summed count row} of a benchmark's records (error records left out)."""
    records = [r for r in records if "error" not in r]
    rows = scoring(benchmark, records).rows(records, task_args or {})
    out: dict[Any, np.ndarray] = {}
    for r, row in zip(records, rows):
        key = unit(r)
        out[key] = out[key] + row if key in out else row
    return out


def paired_difference(a: dict[Any, np.ndarray], b: dict[Any, np.ndarray], benchmark: str,
                      metric: str | None = None, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """metric(a) - metric(b) over the images both have (dicts image -> count row, from
    `image_counts`), with its paired-bootstrap 95 % interval.

    Returns value, ci, a and b (each run's metric on the shared images), n_images, significant
    (the interval leaves out 0) and better ("a", "b" or None: which run it favours, when significant)."""
    s = scoring(benchmark)
    metric = metric or s.headline
    fn = s.metrics[metric]
    keys = sorted(set(a) & set(b), key=str)
    if not keys:
        raise ValueError(f"{benchmark}: the two runs share no image; compare runs of the same samples")
    ca, cb = np.stack([a[k] for k in keys]), np.stack([b[k] for k in keys])
    width = ca.shape[1]
    va, vb = metric_of(ca, fn), metric_of(cb, fn)
    lo, hi = metrics.bootstrap_sums_ci(np.hstack([ca, cb]), lambda t: fn(t[:, :width]) - fn(t[:, width:]),
                                       n_boot, seed)
    significant = bool(lo > 0 or hi < 0)
    better = None
    if significant:
        a_higher = va > vb
        better = "b" if a_higher == (metric in s.lower_is_better) else "a"
    return {"metric": metric, "value": va - vb, "ci": [lo, hi], "a": va, "b": vb, "n_images": len(keys),
            "significant": significant, "better": better}


# ---------------------------------------------------------------------------- run folders
@dataclass
class RunTask:
    """One benchmark's finished run in a folder: its results JSON and its per-sample records."""

    benchmark: str
    folder: Path
    results: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def task_args(self) -> dict[str, Any]:
        return self.results.get("config", {}).get("task_args", {})

    @property
    def method(self) -> str:
        return self.results.get("config", {}).get("method", "?")

    def counts(self) -> dict[Any, np.ndarray]:
        return image_counts(self.benchmark, self.records, self.task_args)


def read_run(folder: str | Path) -> dict[str, RunTask]:
    """Every benchmark run in `folder` (`<task>.results.json` beside `<task>.jsonl`, as
    `run_benchmark` writes them), or in its subfolders one level down (as `run_tasks` writes
    them). A folder with neither is not a run: ValueError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder; pass a run folder (one that holds <task>.results.json files)")
    found: dict[str, RunTask] = {}
    for path in sorted(folder.glob("*.results.json")) + sorted(folder.glob("*/*.results.json")):
        try:
            results = json.loads(path.read_text())
            name = results["benchmark"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a halluscope results file ({e}); rerun the evaluation "
                             "into a new folder") from e
        found.setdefault(name, RunTask(name, path.parent, results,
                                       read_jsonl(path.with_name(path.name.replace(".results.json", ".jsonl")))))
    if not found:
        raise ValueError(f"{folder}: not a run folder (no <task>.results.json in it or one level down); "
                         "pass the --output folder of `halluscope eval` or `halluscope demo`")
    return found


def compare_runs(run_a: str | Path, run_b: str | Path, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Run A against run B on each benchmark both hold, over the images both answered: for each
    metric, A - B with its paired-bootstrap interval (see `paired_difference`)."""
    a, b = read_run(run_a), read_run(run_b)
    shared = [name for name in a if name in b]
    if not shared:
        raise ValueError(f"{run_a} and {run_b} share no benchmark ({', '.join(a)} vs {', '.join(b)}); "
                         "compare runs of the same tasks")
    out = {}
    for name in shared:
        ca, cb = a[name].counts(), b[name].counts()
        out[name] = {m: paired_difference(ca, cb, name, m, n_boot, seed) for m in scoring(name).metrics}
    return {"a": str(run_a), "b": str(run_b), "method_a": a[shared[0]].method, "method_b": b[shared[0]].method,
            "benchmarks": out}


# ---------------------------------------------------------------------------- the main job's methods
# The arms of the demo: a name -> (method, its arguments). Sampling at temperature 1 is the baseline
# the contrastive papers report against; VDGD's description is capped at its caption's length.
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "greedy": ("greedy", {}),
    "sample": ("sample", {"temperature": 1.0, "seed": 0}),
    "vcd": ("vcd", {}),
    "icd": ("icd", {}),
    "m3id": ("m3id", {}),
    "vdgd": ("vdgd", {"description_max_new_tokens": 64}),
    "vti": ("vti", {}),
    "vti+vcd": ("vti", {"base": "vcd"}),
}
BASELINES = ("greedy", "sample")


def arm(name: str) -> tuple[str, dict[str, Any]]:
    """(method, arguments) of an arm: one of ARMS, any registered method with its defaults, or
    'vti+NAME' (VTI over method NAME)."""
    from .decoding import METHODS

    if name in ARMS:
        method, args = ARMS[name]
        return method, dict(args)
    if name in METHODS:
        return name, {}
    head, _, base = name.partition("+")
    if head == "vti" and base in METHODS and base != "vti":
        return "vti", {"base": base}
    raise ValueError(f"unknown method {name!r}; use one of {', '.join(dict.fromkeys([*ARMS, *METHODS]))} "
                     "or vti+NAME")


def _tokens(adapter, texts: list[str]) -> int:
    tokenizer = getattr(adapter, "tokenizer", None)
    if tokenizer is None:
        return sum(len(t.split()) for t in texts)
    return sum(len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"])


def run_methods(adapter, world, methods: list[str], output: str | Path, pope_images: int = 200,
                chair_images: int = 300, batch_size: int = 64, directions: str | Path | None = None,
                speed_images: int = 32, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate each arm (see `arm`) on the world's POPE splits (score mode) and CHAIR, on the same
    test images, into OUTPUT/<arm>/ (a rerun resumes). VTI's directions are fitted once into
    OUTPUT/directions.safetensors unless `directions` is given.

    Returns {arm: {"method", "method_args", "folder", "results": {benchmark: results}, "speed"}}; speed
    is `measure_speed`'s on `speed_images` test captions (kept in OUTPUT/<arm>/speed.json; 0: not
    measured, an earlier measurement is kept)."""
    from .tasks.world import WorldCHAIR, WorldPOPE
    from .world import POPE_SPLITS

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plans = {name: arm(name) for name in methods}
    if any(m == "vti" for m, _ in plans.values()) and directions is None:
        directions = out / "directions.safetensors"
        from .steering import Directions, FitConfig, fit_directions

        # fitted once per model: a file another model left here is fitted again
        if not directions.exists() or Directions.load(directions).metadata.get("model") != adapter.name:
            fit_directions(adapter, FitConfig(), world=world).save(directions)
    runs: dict[str, dict[str, Any]] = {}
    for name, (method, args) in plans.items():
        if method == "vti":
            args = dict(args, directions=str(directions))
        folder = out / name.replace("+", "_")
        results = {}
        for split in POPE_SPLITS:
            task = WorldPOPE(world, split, n_images=pope_images)
            results[task.name] = run_benchmark(task, adapter, folder, method=method, method_args=args,
                                               batch_size=batch_size, progress=progress)
        chair = WorldCHAIR(world, n_images=chair_images)
        results[chair.name] = run_benchmark(chair, adapter, folder, method=method, method_args=args,
                                                batch_size=batch_size, progress=progress)
        runs[name] = {"method": method, "method_args": args, "folder": str(folder), "results": results}
    if speed_images:
        measured = measure_speed(adapter, world, {n: (runs[n]["method"], runs[n]["method_args"]) for n in runs},
                                 n_images=speed_images, batch_size=min(batch_size, speed_images))
        for name, run in runs.items():
            (Path(run["folder"]) / "speed.json").write_text(json.dumps(measured[name]))
    for run in runs.values():
        run["speed"] = speed(run["folder"])
    return runs


def measure_speed(adapter, world, arms: dict[str, tuple[str, dict[str, Any]]], n_images: int = 64,
                  batch_size: int = 64, rounds: int = 3) -> dict[str, dict[str, Any]]:
    """Generated tokens per second of each arm's detailed captions of the same `n_images` test
    images: the arms interleaved (every arm once per round) after one untimed warm-up batch each,
    and each arm's fastest round kept, so that a busy moment of the machine costs no arm alone."""
    from .world import CAPTION_PROMPTS

    images = [s.image for s in world.sample("test", n_images)]
    prompts = [CAPTION_PROMPTS["detailed"]] * n_images
    for method, args in arms.values():
        adapter.generate(images[:2], prompts[:2], method=method, max_new_tokens=8, **args)
    tokens: dict[str, int] = {}
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, (method, args) in arms.items():
            t0 = time.perf_counter()
            texts = []
            for i in range(0, n_images, batch_size):
                texts += adapter.generate(images[i:i + batch_size], prompts[i:i + batch_size], method=method,
                                          max_new_tokens=64, **args)
            seconds[name].append(time.perf_counter() - t0)
            tokens[name] = _tokens(adapter, texts)
    # The fastest round: other work on the machine only ever slows a round down.
    return {name: {"tokens": tokens[name], "seconds": [round(t, 3) for t in seconds[name]], "images": n_images,
                   "tokens_per_second": tokens[name] / min(seconds[name])} for name in arms}


def speed(folder: str | Path) -> dict[str, Any] | None:
    """The caption run's speed kept in a run folder (`run_methods` writes speed.json), if any."""
    path = Path(folder) / "speed.json"
    return json.loads(path.read_text()) if path.exists() else None


def method_comparison(arms: dict[str, dict[str, RunTask]], speeds: dict[str, dict | None] | None = None,
                      baselines: tuple[str, ...] = BASELINES, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """`results.json`'s comparison of arms ({arm: `read_run`'s tasks}): comparison[arm][benchmark]
    with the arm's headline metric on the images every arm answered (value, ci), delta_vs_<baseline>
    for each baseline arm ({"value", "ci", "significant", "better"}, paired over those images) and
    speed_ratio_vs_greedy (generated tokens per second over the first baseline's, both measured in
    the same run; None where either was not)."""
    speeds = speeds or {}
    counts = {name: {b: t.counts() for b, t in tasks.items()} for name, tasks in arms.items()}
    for bench in {b for c in counts.values() for b in c}:
        having = [c[bench] for c in counts.values() if bench in c]
        shared = set.intersection(*(set(c) for c in having))
        for c in having:
            for key in set(c) - shared:
                del c[key]

    def tps(name: str) -> float | None:
        s = speeds.get(name)
        return s.get("tokens_per_second") if s else None

    out: dict[str, Any] = {}
    for name in arms:
        row: dict[str, Any] = {}
        for bench, c in counts[name].items():
            s = scoring(bench)
            fn = s.metrics[s.headline]
            values = np.stack(list(c.values()))
            entry: dict[str, Any] = {"metric": s.headline, "value": metric_of(values, fn),
                                     "ci": list(metrics.bootstrap_sums_ci(values, fn, n_boot, seed)),
                                     "n_images": len(c), "lower_is_better": s.headline in s.lower_is_better}
            for base in baselines:
                if base in counts and base != name and bench in counts[base]:
                    d = paired_difference(c, counts[base][bench], bench, s.headline, n_boot, seed)
                    entry[f"delta_vs_{base}"] = {k: d[k] for k in ("value", "ci", "significant", "better")}
            row[bench] = entry
        base_tps, own = tps(baselines[0]) if baselines else None, tps(name)
        for entry in row.values():
            entry["speed_ratio_vs_greedy"] = own / base_tps if own and base_tps else None
        out[name] = row
    return out


__all__ = ["ARMS", "BASELINES", "RunTask", "Scoring", "arm", "compare_runs", "image_counts", "method_comparison",
           "measure_speed", "paired_difference", "read_run", "run_methods", "scoring", "speed"]
