"""Metrics as pure functions of (predictions, ground truth). All values are fractions in [0, 1]
(mean caption length excepted); they never depend on batch size or order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def parse_yes_no(text: str) -> str:
    """POPE's official answer parser: keep the text before the first '.', drop commas, split on
    spaces; any word exactly 'No', 'not' or 'no' makes the answer 'no', anything else is 'yes'."""
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if any(w in ("No", "not", "no") for w in words) else "yes"


def _as_yes_no(p: str) -> str:
    return p if p in ("yes", "no") else parse_yes_no(p)


def pope(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """POPE metrics with 'yes' as the positive class: accuracy, precision, recall, f1, and
    yes_ratio (the share of 'yes' among the predictions). Predictions other than exactly
    'yes'/'no' go through `parse_yes_no`."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels; align them by question_id")
    if any(lab not in ("yes", "no") for lab in labels):
        raise ValueError("POPE labels must be 'yes' or 'no'")
    preds = [_as_yes_no(p) for p in predictions]
    tp = sum(p == "yes" and lab == "yes" for p, lab in zip(preds, labels))
    fp = sum(p == "yes" and lab == "no" for p, lab in zip(preds, labels))
    tn = sum(p == "no" and lab == "no" for p, lab in zip(preds, labels))
    fn = sum(p == "no" and lab == "yes" for p, lab in zip(preds, labels))
    n = len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": (tp + fp) / n if n else 0.0,
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
        "n": n,
    }


_WORD = re.compile(r"[a-z]+")


def mentioned_objects(caption: str, vocabulary: dict[str, str]) -> list[str]:
    """Object mentions in a caption, in order, duplicates kept (as CHAIR counts them).
    `vocabulary` maps each surface word (singular or plural) to its class."""
    return [vocabulary[w] for w in _WORD.findall(caption.lower()) if w in vocabulary]


def chair(captions: Sequence[str], ground_truth: Sequence[Sequence[str]], vocabulary: dict[str, str]) -> dict[str, Any]:
    """CHAIR (Rohrbach et al., 2018) over exact ground truth.

    CHAIR_i = hallucinated object mentions / all object mentions; CHAIR_s = captions with at least
    one hallucinated mention / captions; recall = ground-truth objects mentioned / ground-truth
    objects (each object once per image); mean_length = words per caption.
    """
    if len(captions) != len(ground_truth):
        raise ValueError(f"{len(captions)} captions for {len(ground_truth)} ground-truth sets")
    mentions = hallucinated = bad_captions = covered = gt_total = words = 0
    per_sample = []
    for cap, gt in zip(captions, ground_truth):
        gt = set(gt)
        found = mentioned_objects(cap, vocabulary)
        hall = [o for o in found if o not in gt]
        mentions += len(found)
        hallucinated += len(hall)
        bad_captions += bool(hall)
        covered += len(set(found) & gt)
        gt_total += len(gt)
        words += len(cap.split())
        per_sample.append({"mentioned": found, "hallucinated": hall})
    n = len(captions)
    return {
        "chair_s": bad_captions / n if n else 0.0,
        "chair_i": hallucinated / mentions if mentions else 0.0,
        "recall": covered / gt_total if gt_total else 0.0,
        "mean_length": words / n if n else 0.0,
        "n": n,
        "per_sample": per_sample,
    }


def bootstrap_ci(items: Sequence[Any], statistic: Callable[[list[Any]], float], n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over `items` resampled with
    replacement (pass one item per image to resample images rather than questions)."""
    rng = np.random.default_rng(seed)
    items = list(items)
    if not items:
        return (0.0, 0.0)
    stats = [statistic([items[i] for i in rng.integers(len(items), size=len(items))]) for _ in range(n_boot)]
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
