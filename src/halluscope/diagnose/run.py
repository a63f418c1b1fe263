"""All the analyses on one model, into one folder: `diagnosis.json` (one key per analysis), one PNG each,
`diagnosis.md` with a plain reading of each, and `diagnosis.meta.json` (model, settings, timings).

    diagnose_world(adapter, World(), base=TextLMScorer.load(builtin_base_lm()))   # the built-in lab
    diagnose_real(adapter, [make_task("chair", ...), make_task("pope:adversarial", ...)], base=...)
    write_diagnosis(diagnosis, "diag/", meta)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..world import World
from . import claims as claim_analyses
from .data import real_caption_records, real_questions, world_caption_records, world_questions
from .plots import write_plots
from .readings import TITLES, reading
from .tokens import attention_to_image, base_rank, logit_elbow, world_neighbours
from .vision import feature_stability, language_prior, modality_gap

ANALYSES = ("kinds", "overgeneralization", "position", "base_rank", "logit_elbow", "feature_stability",
            "modality_gap", "language_prior", "attention_to_image")


@dataclass
class DiagnoseConfig(Config):
    """How much of each analysis to run (the defaults take about a minute with the built-in model on two CPU cores,
    its base LM's training included: docs/diagnose.md)."""

    n_captions: int = field(default=1000, metadata={"help": "images captioned (kinds, position, base rank, elbow)"})
    n_pope_images: int = field(default=200, metadata={"help": "world POPE-adversarial images (6 questions each)"})
    n_stability: int = field(default=300, metadata={"help": "images for feature stability"})
    n_gap: int = field(default=300, metadata={"help": "caption pairs for the modality gap"})
    n_attention: int = field(default=300, metadata={"help": "captions for attention to the image"})
    trials: int = field(default=8, metadata={"help": "masked copies per image (feature stability)"})
    mask_ratio: float = field(default=0.25, metadata={"help": "share of patches masked in each copy"})
    n_train: int = field(default=2000, metadata={"help": "training scenes searched for the most similar images"})
    neighbours: int = field(default=10, metadata={"help": "most similar training images per test image"})
    batch_size: int = field(default=16, metadata={"help": "captions or questions per generation call"})
    max_new_tokens: int = field(default=64, metadata={
        "help": "caption length (the world's captions fit in 64 tokens; real models' detailed ones need more)"})
    seed: int = field(default=0, metadata={"help": "masks, noise images, probe folds"})

    def __post_init__(self) -> None:
        self.check_at_least(1, "n_captions", "n_pope_images", "n_stability", "n_gap", "n_attention", "trials",
                            "n_train", "neighbours", "batch_size", "max_new_tokens")
        self.check_range("mask_ratio", 0.0, 1.0)

    def limited(self, limit: int | None) -> DiagnoseConfig:
        """This config with every count at most `limit`."""
        if limit is None:
            return self
        counts = ("n_captions", "n_pope_images", "n_stability", "n_gap", "n_attention")
        return type(self)(**{**self.to_dict(), **{k: min(getattr(self, k), limit) for k in counts}})


class _Clock:
    def __init__(self, progress: bool) -> None:
        self.progress, self.seconds = progress, {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.time()
        if self.progress:
            print(f"diagnose: {name} ...", file=sys.stderr, flush=True)
        out = fn()
        self.seconds[name] = round(time.time() - t0, 2)
        return out


def image_rates(records: Sequence[dict[str, Any]]) -> list[float | None]:
    return [sum(not c["true"] for c in r["claims"]) / len(r["claims"]) if r["claims"] else None for r in records]


def _caption_analyses(adapter, records, scenes, scorer, neighbours, cfg: DiagnoseConfig, clock: _Clock,
                      gap: Callable[[], dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["kinds"] = clock.run("kinds", lambda: claim_analyses.kinds(records))
    out["overgeneralization"] = clock.run("overgeneralization",
                                          lambda: claim_analyses.overgeneralization(records, scenes))
    out["position"] = clock.run("position", lambda: claim_analyses.position(records))
    out["base_rank"] = clock.run("base_rank", lambda: base_rank(records, scorer, neighbours))
    out["logit_elbow"] = clock.run("logit_elbow", lambda: logit_elbow(adapter, records))
    few = records[: cfg.n_stability]
    out["feature_stability"] = clock.run("feature_stability", lambda: feature_stability(
        adapter, [r["image"] for r in few], image_rates(few), cfg.trials, cfg.mask_ratio, seed=cfg.seed))
    out["modality_gap"] = clock.run("modality_gap", gap)
    out["attention_to_image"] = clock.run("attention_to_image",
                                          lambda: attention_to_image(adapter, records[: cfg.n_attention]))
    return out


def diagnose_world(adapter, world: World | None = None, scorer=None, config: DiagnoseConfig | None = None,
                   limit: int | None = None, progress: bool = True, timings: dict | None = None) -> dict[str, Any]:
    """Every analysis on the world's test images: captions judged claim by claim, POPE-adversarial
    questions, caption pairs (true and hallucinated mirrors) for the modality gap. `scorer` ranks tokens
    for the base-rank analysis (default: the VLM without its image, `VLMScorer(adapter, image=False)`)."""
    from ..steering.fit import world_demos
    from .base_lm import VLMScorer

    world, cfg = world or World(), (config or DiagnoseConfig()).limited(limit)
    clock = _Clock(progress)
    scorer = scorer or VLMScorer(adapter, image=False)
    records = clock.run("captions", lambda: world_caption_records(
        adapter, world, cfg.n_captions, cfg.batch_size, cfg.max_new_tokens))
    neighbours = clock.run("neighbours", lambda: world_neighbours(world, cfg.n_train, cfg.neighbours))

    def gap() -> dict[str, Any]:
        demos = world_demos(world, max(2, cfg.n_gap), cfg.seed, split="test")
        return modality_gap(adapter, [d.image for d in demos], [d.caption for d in demos],
                            [d.hallucinated for d in demos], seed=cfg.seed)

    out = _caption_analyses(adapter, records, world.config.scenes, scorer, neighbours, cfg, clock, gap)
    questions = world_questions(world, cfg.n_pope_images)
    out["language_prior"] = clock.run("language_prior", lambda: language_prior(adapter, questions, cfg.batch_size,
                                                                                 cfg.seed))
    if timings is not None:
        timings.update(clock.seconds)
    return {k: out[k] for k in ANALYSES}


def diagnose_real(adapter, tasks: Sequence[Any], scorer=None, config: DiagnoseConfig | None = None,
                  limit: int | None = None, scenes: dict[str, Sequence[str]] | None = None,
                  image_scenes: dict[str, str] | None = None, progress: bool = True,
                  timings: dict | None = None) -> dict[str, Any]:
    """Every analysis on real benchmark tasks: a CHAIR task gives the captions (object claims from its
    ground truth), a POPE task the yes/no questions. Scenes for over-generalization: `scenes` (scene ->
    objects; `image_scenes` assigns images), else clusters of the ground truth's co-occurrences."""
    from .base_lm import VLMScorer

    cfg = (config or DiagnoseConfig()).limited(limit)
    clock = _Clock(progress)
    chair = next((t for t in tasks if t.name == "chair"), None)
    pope = next((t for t in tasks if t.name.startswith("pope")), None)
    out: dict[str, Any] = {}
    if chair is not None:
        scorer = scorer or VLMScorer(adapter, image=False)
        records = clock.run("captions", lambda: real_caption_records(
            adapter, chair, cfg.n_captions, cfg.batch_size, scenes=image_scenes, max_new_tokens=cfg.max_new_tokens))
        if scenes is None:
            scenes = claim_analyses.cooccurrence_clusters(list(chair.ground_truth().values()))

        def gap() -> dict[str, Any]:
            ok = [r for r in records if r["claims"] and all(c["true"] for c in r["claims"])][: cfg.n_gap]
            bad = [r for r in records if any(not c["true"] for c in r["claims"])][: cfg.n_gap]
            if not ok or not bad:
                return {"n": 0, "note": "needs captions both with and without hallucinated objects"}
            return modality_gap(adapter, [r["image"] for r in records[: cfg.n_gap]], [r["caption"] for r in ok],
                                [r["caption"] for r in bad], seed=cfg.seed)

        out |= _caption_analyses(adapter, records, scenes, scorer, None, cfg, clock, gap)
    else:
        note = {"skipped": True, "note": "needs a captioning task (--tasks chair)"}
        out |= {k: dict(note) for k in ANALYSES if k != "language_prior"}
    if pope is not None:
        questions = real_questions(pope, 6 * cfg.n_pope_images)
        out["language_prior"] = clock.run("language_prior",
                                          lambda: language_prior(adapter, questions, cfg.batch_size, cfg.seed))
    else:
        out["language_prior"] = {"skipped": True, "note": "needs a POPE task (--tasks pope:adversarial)"}
    if timings is not None:
        timings.update(clock.seconds)
    return {k: out[k] for k in ANALYSES}


def diagnosis_markdown(diagnosis: dict[str, Any], plots: dict[str, str], meta: dict[str, Any] | None = None) -> str:
    lines = ["# Diagnosis", ""]
    if meta:
        lines += [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, dict | list)] + [""]
    for key in ANALYSES:
        lines += [f"## {TITLES[key]}", "", reading(key, diagnosis.get(key)), ""]
        if key in plots:
            lines += [f"![{key}]({plots[key]})", ""]
    return "\n".join(lines)


def write_diagnosis(diagnosis: dict[str, Any], output: str | Path, meta: dict[str, Any] | None = None
                    ) -> dict[str, str]:
    """diagnosis.json, diagnosis.meta.json, one PNG per analysis and diagnosis.md into `output`; returns
    {analysis: PNG name}."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnosis.json").write_text(json.dumps(diagnosis, indent=1, default=str))
    (out / "diagnosis.meta.json").write_text(json.dumps(meta or {}, indent=1, default=str))
    plots = write_plots(diagnosis, out)
    (out / "diagnosis.md").write_text(diagnosis_markdown(diagnosis, plots, meta))
    return plots


__all__ = ["ANALYSES", "DiagnoseConfig", "diagnose_real", "diagnose_world", "diagnosis_markdown", "image_rates",
           "write_diagnosis"]
