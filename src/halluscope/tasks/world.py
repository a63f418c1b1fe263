"""The world's versions of POPE and CHAIR, scored against exact ground truth.

Each is a task (see `base.py`): `samples()` lists what to run (each with an `id`), `request()` says
what to ask the model, `record()` keeps the answer, `score()` turns the finished records into metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import metrics
from ..world import CAPTION_PROMPTS, CLASSES, PLURALS, World
from .base import Request, TaskBase, generate, yes_no


def world_vocabulary() -> dict[str, str]:
    """Surface word -> class, singular and plural."""
    return {c: c for c in CLASSES} | {PLURALS[c]: c for c in CLASSES}


# Per-record counts whose column sums give the metrics: bootstraps resample the sums (one matrix
# product) rather than rescoring every resample.
def pope_counts(records: Sequence[dict]) -> np.ndarray:
    """(n, 5) rows tp, fp, tn, fn, 1 of POPE records (`prediction` read by the official parser)."""
    rows = []
    for r in records:
        yes, pos = metrics.parse_yes_no(r["prediction"]) == "yes", r["label"] == "yes"
        rows.append([yes and pos, yes and not pos, not yes and not pos, not yes and pos, 1])
    return np.array(rows, dtype=float).reshape(-1, 5)


POPE_FROM_SUMS = {  # column sums (B, 5) -> metric (B,), as metrics.pope computes it
    "accuracy": lambda s: metrics.ratio(s[:, 0] + s[:, 2], s[:, 4]),
    "f1": lambda s: metrics.ratio(2 * s[:, 0], 2 * s[:, 0] + s[:, 1] + s[:, 3]),
    "false_positive_rate": lambda s: metrics.ratio(s[:, 1], s[:, 1] + s[:, 2]),
}


def chair_counts(records: Sequence[dict], per_sample: Sequence[dict] | None = None) -> np.ndarray:
    """(n, 6) rows of world-CHAIR records: hallucinated at all, 1, hallucinated mentions, mentions,
    ground-truth objects mentioned, ground-truth objects. `per_sample`: `chair_vocabulary`'s, if
    the caller already has it."""
    if per_sample is None:
        per_sample = _chair(records)["per_sample"]
    rows = [[bool(s["hallucinated"]), 1, len(s["hallucinated"]), len(s["mentioned"]),
             len(set(s["mentioned"]) & set(r["objects"])), len(set(r["objects"]))] for r, s in zip(records, per_sample)]
    return np.array(rows, dtype=float).reshape(-1, 6)


def _chair(records: Sequence[dict]) -> dict[str, Any]:
    captions, objects = [r["caption"] for r in records], [r["objects"] for r in records]
    return metrics.chair_vocabulary(captions, objects, world_vocabulary())


CHAIR_FROM_SUMS = {  # column sums (B, 6) -> metric (B,), as metrics.chair_vocabulary computes it
    "chair_s": lambda s: metrics.ratio(s[:, 0], s[:, 1]),
    "chair_i": lambda s: metrics.ratio(s[:, 2], s[:, 3]),
    "recall": lambda s: metrics.ratio(s[:, 4], s[:, 5]),
}


def metric_of(counts: np.ndarray, fn) -> float:
    """A `*_FROM_SUMS` metric of per-record count rows, all rows together."""
    return float(fn(counts.sum(0, keepdims=True))[0])


def _with_ci(counts: np.ndarray, fn) -> dict[str, Any]:
    return {"value": metric_of(counts, fn), "ci95": list(metrics.bootstrap_sums_ci(counts, fn)), "n": len(counts)}


@dataclass
class WorldPOPE(TaskBase):
    """POPE on the world's test images (per image 3 present + 3 absent objects)."""

    world: World
    split: str = "adversarial"
    n_images: int = 500
    mode: str = "score"  # "score": one forward pass, yes vs no log-probability; "generate": parse text

    @property
    def name(self) -> str:
        return f"world-pope:{self.split}"

    def samples(self) -> list[dict[str, Any]]:
        return [dict(q, id=q["question_id"]) for q in self.world.pope(self.split, self.n_images)]

    def request(self, sample: dict[str, Any]) -> Request:
        return yes_no(sample["text"], self.mode)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        s = sample
        return {"id": s["id"], "question_id": s["question_id"], "image_id": s["image_id"], "object": s["object"],
                "label": s["label"], "breaks_bias": s["breaks_bias"], **answer}

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        records = sorted(records, key=lambda r: r["question_id"])
        out = metrics.pope([r["prediction"] for r in records], [r["label"] for r in records])
        by_image: dict[str, list[dict]] = {}
        for r in records:
            by_image.setdefault(r["image_id"], []).append(r)
        counts = np.stack([pope_counts(g).sum(0) for g in by_image.values()])  # per image: resample images
        out["ci95"] = {k: list(metrics.bootstrap_sums_ci(counts, POPE_FROM_SUMS[k])) for k in POPE_FROM_SUMS}
        # False positives on absent co-occurrence partners of a present object: the bias at work.
        partners = self.world.config.partners()
        present = {img: {r["object"] for r in g if r["label"] == "yes"} for img, g in by_image.items()}
        partner_neg = [r for r in records if r["label"] == "no" and
                       any(partners.get(p) == r["object"] for p in present[r["image_id"]])]
        out["partner_negatives"] = len(partner_neg)
        out["partner_false_positive_rate"] = (
            sum(r["prediction"] == "yes" for r in partner_neg) / len(partner_neg) if partner_neg else 0.0)
        return out


@dataclass
class WorldCHAIR(TaskBase):
    """CHAIR on captions of the world's test images, overall and on ordinary vs bias-breaking ones."""

    world: World
    n_images: int = 1000
    style: str = "detailed"
    max_new_tokens: int = 64

    @property
    def name(self) -> str:
        return "world-chair"

    def samples(self) -> list[dict[str, Any]]:
        return [{"id": s.image_id, "image": s.image, "objects": s.truth.classes,
                 "breaks_bias": s.truth.breaks_bias} for s in self.world.sample("test", self.n_images)]

    def request(self, sample: dict[str, Any]) -> Request:
        return generate(CAPTION_PROMPTS[self.style], self.max_new_tokens)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {"id": sample["id"], "caption": answer["text"], "objects": sample["objects"],
                "breaks_bias": sample["breaks_bias"]}

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        out = _chair(records)
        counts = chair_counts(records, out.pop("per_sample"))  # one record per image
        out["ci95"] = {k: list(metrics.bootstrap_sums_ci(counts, CHAIR_FROM_SUMS[k])) for k in ("chair_s", "chair_i")}
        subsets = {
            "ordinary": [not r["breaks_bias"] for r in records],
            "breaking": [bool(r["breaks_bias"]) for r in records],
            "lone_partner": [any(b.startswith("lone:") for b in r["breaks_bias"]) for r in records],
        }
        out["subsets"] = {name: {k: _with_ci(counts[np.array(mask)], CHAIR_FROM_SUMS[k]) for k in CHAIR_FROM_SUMS}
                          for name, mask in subsets.items() if any(mask)}
        return out
