"""`run_study`: one cause at several levels, each level trained on several seeds with everything else held at the
study recipe, every arm measured on the same test images of the default world.

An arm is a cached model (trained once per recipe, under `zoo.tiny.cache_dir()`, so levels that equal the study
recipe are shared between studies) plus its evaluation in OUTPUT/arms/<level>/s<seed>/, which the runner resumes
sample by sample; `arm.json` marks a finished arm. A killed study, run again, picks up where it stopped and ends
with the same results. OUTPUT/study.json holds each arm's metrics, each level's mean over seeds with a 95 %
t-interval, each level's paired difference to the baseline level, and per metric the literature's direction
against the lab's.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..world import POPE_SPLITS, World, WorldConfig
from .table import Arm, Cause, get_cause

# What each arm reports (lower is better unless the name says accuracy or pope_): names, for the plots' titles.
METRICS: dict[str, str] = {
    "pope_random": "POPE random accuracy",
    "pope_popular": "POPE popular accuracy",
    "pope_adversarial": "POPE adversarial accuracy",
    "pope_yes_rate": "POPE yes rate (3 splits)",
    "yes_plateau": "seeds that answer yes to (nearly) every POPE question",
    "chair_i": "CHAIR_i",
    "chair_s": "CHAIR_s",
    "coverage": "coverage (scene objects named)",
    "claims_object": "false object claims",
    "claims_attribute": "false attribute claims",
    "claims_count": "false count claims",
    "claims_relation": "false relation claims",
    "claims_all": "false claims, all kinds",
    "repeats_phrase": "captions naming a class in two phrases",
    "attribute_breaking": "false colour claims on prior-breaking objects",
    "count_breaking": "false count claims on prior-breaking classes",
    "relation_breaking": "false relation claims on prior-breaking pairs",
    "prior_yes_rate": "yes rate without the image",
    "prior_persist": "false 'yes' that persist without the image",
    "base_rank_unshifted": "hallucinated first tokens the model ranks first without the image",
}


@dataclass
class StudyConfig(Config):
    """The study recipe (smaller than the built-in model's, so that an arm takes minutes) and the evaluation
    sizes. `model` and `train` override `TinyConfig` and `TrainConfig` fields."""

    knobs: dict[str, Any] = field(default_factory=lambda: {"cooccurrence_strength": 0.8}, metadata={
        "help": "world knobs of the study recipe's training world (default: the built-in model's world with pairs "
                "co-occurring at 0.8, not 0.95: at 0.95 two of three study seeds stayed on the yes plateau, "
                "docs/studies/causes.md); the test images are always the default world's"})
    model: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "TinyConfig fields of the study recipe (default: the built-in model's sizes)"})
    train: dict[str, Any] = field(
        default_factory=lambda: {"steps": 1400, "batch_size": 24, "vision_pretrain_steps": 400}, metadata={
            "help": "TrainConfig fields of the study recipe (default: the built-in model's recipe at 3/4 of its batch "
                    "and under half its stage 0: docs/studies/causes.md)"})
    pope_images: int = field(default=200, metadata={"help": "world test images per POPE split (6 questions each)"})
    chair_images: int = field(default=300, metadata={"help": "world test images captioned (CHAIR, claims, base rank)"})
    prior_images: int = field(default=100, metadata={
        "help": "POPE-adversarial images for the language-prior analysis (6 questions each)"})
    batch_size: int = field(default=64, metadata={"help": "samples per generation call"})
    threads: int = field(default=1, metadata={
        "help": "torch threads while evaluating (at the built-in size a second one only waits)"})

    def __post_init__(self) -> None:
        from ..models.tiny import TinyConfig
        from ..training.sft import TrainConfig

        self.check_at_least(1, "chair_images", "batch_size", "threads")
        self.check_at_least(2, "pope_images", "prior_images",
                            why="(POPE draws an image's absent objects from the other images')")
        for name, cls in (("knobs", WorldConfig), ("model", TinyConfig), ("train", TrainConfig)):
            try:
                cls(**getattr(self, name))
            except (TypeError, ValueError) as e:
                self.fail(name, str(e))
        if "seed" in self.train:
            self.fail("train", "leave out 'seed': each arm's training seed comes from --seeds")


def _label(level: Any) -> str:
    return str(level)


def arm_recipe(cause: Cause, level: Any, seed: int, config: StudyConfig):
    """(training world, TinyConfig, TrainConfig, Arm) of one arm: the study recipe with the level's changes (none
    for a decoding level)."""
    arm = cause.arm(level)
    return (*study_recipe(config, seed, arm.knobs, arm.model, arm.train), arm)


def study_recipe(config: StudyConfig, seed: int, knobs: dict[str, Any] | None = None,
                 model: dict[str, Any] | None = None, train: dict[str, Any] | None = None):
    """(training world, TinyConfig, TrainConfig) of the study recipe with training seed `seed`, and these changes."""
    from ..models.tiny import TinyConfig
    from ..training.sft import TrainConfig

    return (World(**{**config.knobs, **(knobs or {})}), TinyConfig(**{**config.model, **(model or {})}),
            TrainConfig(**{**config.train, **(train or {}), "seed": seed}))


def _t95(n: int) -> float:
    """Student's t quantile 0.975 for n - 1 degrees of freedom (n >= 2)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    return table.get(n - 1, 1.96 + 2.5 / (n - 1))


def mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean over seeds with its 95 % t-interval (None with one seed)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "ci95": None, "n": 0}
    m = statistics.mean(vals)
    if len(vals) < 2:
        return {"mean": m, "ci95": None, "n": 1}
    half = _t95(len(vals)) * statistics.stdev(vals) / math.sqrt(len(vals))
    return {"mean": m, "ci95": [m - half, m + half], "n": len(vals)}


def caption_metrics(res: dict[str, Any]) -> dict[str, float | None]:
    """The arm's caption measures from world-chair's metrics."""
    m = {"chair_i": res["chair_i"], "chair_s": res["chair_s"], "coverage": res["coverage"]["value"],
         "repeats_phrase": res["repeats_phrase"]["value"]}
    m |= {f"{kind}_breaking": res["claims_bias"].get(kind, {}).get("breaking", {}).get("value")
          for kind in ("attribute", "count", "relation")}
    return m | {f"claims_{kind}": e["value"] if e["n"] else None for kind, e in res["claims"].items()}


def evaluate_arm(adapter, world: World, arm: Arm, out: Path, config: StudyConfig) -> dict[str, float | None]:
    """The arm's metrics on the default world's test images (`world`), evaluated into OUT (resumes)."""
    from ..diagnose.base_lm import VLMScorer
    from ..diagnose.data import world_caption_records, world_questions
    from ..diagnose.tokens import base_rank
    from ..diagnose.vision import language_prior
    from ..runner import read_jsonl, run_benchmark
    from ..tasks.world import WorldCHAIR, WorldPOPE

    run = {"method": arm.method, "method_args": arm.method_args, "batch_size": config.batch_size, "progress": False}
    m: dict[str, float | None] = {}
    yes = []
    for split in POPE_SPLITS:
        res = run_benchmark(WorldPOPE(world, split, n_images=config.pope_images, mode=arm.yes_no), adapter, out, **run)
        m[f"pope_{split}"] = res["metrics"]["accuracy"]
        yes.append(res["metrics"]["yes_ratio"])
    m["pope_yes_rate"] = statistics.mean(yes)
    # A model that says yes to everything has not learnt to look (the recipe's "yes" plateau): counted, so that
    # a level that keeps models there is seen as such rather than as more hallucination.
    m["yes_plateau"] = float(m["pope_yes_rate"] >= 0.98)
    chair_task = WorldCHAIR(world, n_images=config.chair_images)
    m |= caption_metrics(run_benchmark(chair_task, adapter, out, **run)["metrics"])

    by_id = {r["id"]: r["caption"] for r in read_jsonl(out / "world-chair.jsonl")}
    samples = chair_task.samples()
    records = world_caption_records(adapter, world, len(samples), captions=[by_id[s["id"]] for s in samples])
    rank = base_rank(records, VLMScorer(adapter, image=False))
    m["base_rank_unshifted"] = rank["hallucinated"]["buckets"].get("unshifted") if rank["hallucinated"]["n"] else None
    if arm.yes_no == "score":
        prior = language_prior(adapter, world_questions(world, config.prior_images), config.batch_size)
        m["prior_yes_rate"] = prior["yes_rate"]["no_image"]
        m["prior_persist"] = prior["false_positives_persist"]["no_image"]
    else:  # a decoding arm: the model's answers without the image do not depend on how it samples
        m["prior_yes_rate"] = m["prior_persist"] = None
    return m


def paired_diffs(arms: dict[tuple[str, int], dict], to: str, base: str, metric: str, seeds: list[int]) -> list[float]:
    """metric(level `to`) - metric(level `base`), one per seed that has both."""
    out = []
    for s in seeds:
        a, b = arms.get((to, s)), arms.get((base, s))
        if a and b and a["metrics"].get(metric) is not None and b["metrics"].get(metric) is not None:
            out.append(a["metrics"][metric] - b["metrics"][metric])
    return out


def summarize(cause: Cause, levels: list[Any], seeds: list[int], arms: dict[tuple[str, int], dict]) -> dict[str, Any]:
    """Per level and metric the mean over seeds with its interval; per level the paired difference to the
    baseline level (or the first level when the baseline is not studied); per metric the effect of going from the
    first to the last level, paired by seed, and how it compares with the literature's direction."""
    base = _label(cause.baseline) if cause.baseline in levels else _label(levels[0])
    out: dict[str, Any] = {"baseline": base, "levels": {}, "effects": {}}
    for level in map(_label, levels):
        entry: dict[str, Any] = {}
        for metric in METRICS:
            values = [arms[(level, s)]["metrics"].get(metric) for s in seeds if (level, s) in arms]
            entry[metric] = mean_ci(values) | {"per_seed": values}
            if level != base:
                entry[metric]["diff_vs_baseline"] = mean_ci(paired_diffs(arms, level, base, metric, seeds))
        out["levels"][level] = entry
    first, last = _label(levels[0]), _label(levels[-1])
    for metric in METRICS:
        effect = mean_ci(paired_diffs(arms, last, first, metric, seeds))
        expect = cause.expect.get(metric)
        out["effects"][metric] = effect | {"from": first, "to": last, "expected_sign": expect,
                                           "verdict": verdict(effect, expect)}
    return out


def verdict(effect: dict[str, Any], expect: int | None) -> str:
    """'agrees' / 'disagrees' (the interval excludes 0 on the literature's side / the other side), 'no clear
    effect' (it spans 0), 'not predicted' (no direction claimed) or 'n/a'."""
    if effect["mean"] is None or effect["ci95"] is None:
        return "n/a"
    lo, hi = effect["ci95"]
    sign = 1 if lo > 0 else (-1 if hi < 0 else 0)
    if expect is None:
        return "not predicted" if sign == 0 else ("rises" if sign > 0 else "falls")
    if sign == 0:
        return "no clear effect"
    return "agrees" if sign == expect else "disagrees"


def run_arm(cause: str | Cause, level: Any, seed: int, output: str | Path = "study",
            config: StudyConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """One arm of a study: train (or find cached) the model of (level, seed), evaluate it into
    OUTPUT/arms/<level>/s<seed>/ and return its record; a finished arm is read, not redone."""
    import torch

    from ..runner import write_json
    from ..zoo import load_model
    from ..zoo.tiny import tiny_path, tiny_recipe, train_tiny

    cause = get_cause(cause) if isinstance(cause, str) else cause
    config = config or StudyConfig()
    folder = Path(output) / "arms" / _label(level) / f"s{seed}"
    done = folder / "arm.json"
    world, tiny, train, arm = arm_recipe(cause, level, seed, config)  # a decoding arm: the study recipe
    if done.exists():
        record = json.loads(done.read_text())
        if not same_arm(record, tiny_path(tiny_recipe(world, train, tiny)), config):
            raise ValueError(f"{done} was made with another study recipe or evaluation ({record['model']}, "
                             f"{record['config']}); give this study a new --output, or rerun it as it was")
        # caption measures added after the arm finished come from its saved caption results
        saved = json.loads((folder / "world-chair.results.json").read_text())["metrics"]
        return record | {"metrics": caption_metrics(saved) | record["metrics"]}
    t0 = time.time()
    training_threads = torch.get_num_threads()
    model_dir = train_tiny(world, train, tiny, progress=progress)
    t1 = time.time()
    torch.set_num_threads(config.threads)
    try:
        metrics = evaluate_arm(load_model(str(model_dir)), World(), arm, folder, config)
    finally:
        torch.set_num_threads(training_threads)
    log = json.loads((model_dir / "train_log.json").read_text())
    record = {"cause": cause.name, "level": level, "seed": seed, "model": str(model_dir),
              "config": config.to_dict(), "metrics": metrics,
              "arm": {"knobs": arm.knobs, "model": arm.model, "train": arm.train, "method": arm.method,
                      "method_args": arm.method_args},
              "seconds": {"training_recorded": round(log["seconds"], 1),
                          "this_run_training": round(t1 - t0, 1),
                          "this_run_evaluation": round(time.time() - t1, 1)},
              # what this_run_training ran on: two one-thread workers make each arm slower than one process
              "training_threads": training_threads}
    write_json(done, record)
    return record


def run_study(cause: str | Cause, levels: list[Any] | None = None, seeds: list[int] | None = None,
              output: str | Path = "study", config: StudyConfig | None = None, progress: bool = True,
              plots: bool = True, train: bool = True) -> dict[str, Any]:
    """Train and evaluate every (level, seed) arm of `cause` that is not finished in OUTPUT (`run_arm`), then
    write OUTPUT/study.json, one dose-response PNG per metric under OUTPUT/plots/, and OUTPUT/study.md; returns
    what study.json holds. With `train=False` only the finished arms are summarized, and the others are listed
    under "missing_arms"."""
    from ..runner import write_json

    cause = get_cause(cause) if isinstance(cause, str) else cause
    levels = list(levels) if levels is not None else list(cause.levels)
    seeds = list(seeds) if seeds is not None else [0, 1, 2]
    config = config or StudyConfig()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    arms: dict[tuple[str, int], dict] = {}
    missing: list[str] = []
    total = len(levels) * len(seeds)
    for level in levels:
        for seed in seeds:
            fresh = not (out / "arms" / _label(level) / f"s{seed}" / "arm.json").exists()
            if fresh and not train:
                missing.append(f"{_label(level)}/s{seed}")
                continue
            if fresh and progress:
                print(f"study {cause.name}: arm {len(arms) + 1} of {total}, level {level}, seed {seed}",
                      file=sys.stderr, flush=True)
            record = arms[(_label(level), seed)] = run_arm(cause, level, seed, out, config, progress)
            if fresh and progress:
                s = record["seconds"]
                print(f"study {cause.name}: level {level}, seed {seed} done (training {s['this_run_training']:.0f} s, "
                      f"evaluation {s['this_run_evaluation']:.0f} s)", file=sys.stderr, flush=True)
    result = {"cause": cause.name, "group": cause.group, "sets": cause.sets, "claim": cause.claim,
              "levels": [_label(v) for v in levels], "seeds": seeds, "config": config.to_dict(),
              "metric_names": METRICS,
              "arms": [arms[(_label(v), s)] for v in levels for s in seeds if (_label(v), s) in arms],
              "missing_arms": missing}
    result |= {"summary": summarize(cause, levels, seeds, arms)}
    write_json(out / "study.json", result)
    if plots:
        from .plots import write_plots

        result["plots"] = write_plots(result, out / "plots")
    (out / "study.md").write_text(study_markdown(result))
    return result


EVALUATION = ("pope_images", "chair_images", "prior_images")


def same_arm(record: dict[str, Any], model_dir: Path, config: StudyConfig) -> bool:
    """Whether a finished arm's record is this arm: the same model recipe (its cache folder's name is the recipe's
    hash) evaluated at the same sizes."""
    done = record.get("config", {})
    return Path(record["model"]).name == model_dir.name and all(done.get(k) == getattr(config, k) for k in EVALUATION)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def study_markdown(result: dict[str, Any]) -> str:
    """The study as a page: per metric a row of level means (with intervals), the first-to-last effect and the
    verdict against the literature."""
    s = result["summary"]
    levels = result["levels"]
    lines = [f"# Cause study: {result['cause']} ({result['group']})", "",
             f"Varies {result['sets']} over levels {', '.join(levels)}, seeds {', '.join(map(str, result['seeds']))}.",
             "", f"Literature: {result['claim']}", "",
             "| metric (%) | " + " | ".join(levels) + f" | {levels[-1]} - {levels[0]}, points [95 % CI] | verdict |",
             "|---|" + "---|" * (len(levels) + 2)]
    for metric, name in result["metric_names"].items():
        cells = []
        for level in levels:
            e = s["levels"][level][metric]
            ci = e["ci95"]
            cells.append(_pct(e["mean"]) + ("" if ci is None else f" [{_pct(ci[0])}, {_pct(ci[1])}]"))
        eff = s["effects"][metric]
        d = "-" if eff["mean"] is None else (f"{100 * eff['mean']:+.1f}" + (
            "" if eff["ci95"] is None else f" [{100 * eff['ci95'][0]:+.1f}, {100 * eff['ci95'][1]:+.1f}]"))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {d} | {eff['verdict']} |")
    secs = [a["seconds"]["this_run_training"] + a["seconds"]["this_run_evaluation"] for a in result["arms"]]
    lines += ["", f"{len(result['arms'])} arms; wall time per arm in the run that made it: median "
                  f"{statistics.median(secs):.0f} s, max {max(secs):.0f} s (0 training where the model was cached)."]
    return "\n".join(lines) + "\n"


__all__ = ["METRICS", "StudyConfig", "arm_recipe", "evaluate_arm", "mean_ci", "paired_diffs", "run_study",
           "study_markdown", "study_recipe", "summarize", "verdict"]
