"""Each stage of a correction scored on the world against exact truth (pure functions of corrected records,
as `run.py` writes them):

- extraction: the share of captions in the grammar, and the content words (classes, colours, "small",
  numbers) the parser could not place in a claim, over all content words: its recall (1 on grammatical
  captions, where the parser is exact; lower on broken model outputs);
- validation, per claim kind: the verdict (supported or refuted) against the claim's truth: accuracy,
  and the precision and recall of refuting;
- edits: edit precision (claims the pipeline itself refuted and edited that were really false), edit
  recall (false claims edited, with those that went with a refuted object), and fix accuracy (fixed values
  that are true);
- the result: per-kind false-claim rates and coverage of the original and corrected captions
  (`tasks.world.claim_metrics`), and the paired change of each with its bootstrap interval over images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import metrics
from ..tasks.world import CAPTION_FROM_SUMS, CLAIM_KEYS, CLAIMS_FROM_SUMS, claim_counts, claim_metrics, metric_of
from ..world import CLASSES, COLORS, NUMBERS, PLURALS, tokenize_words
from ..world.claims import CLAIM_KINDS

CONTENT_WORDS = frozenset([*CLASSES, *PLURALS.values(), *COLORS, "small", *NUMBERS[2:]])


def extraction_scores(records: list[dict[str, Any]]) -> dict[str, Any]:
    content = lost = 0
    for r in records:
        words = [w for w in tokenize_words(r["original"]) if w in CONTENT_WORDS]
        content += len(words)
        for s, e in r.get("unparsed", []):
            lost += sum(w in CONTENT_WORDS for w in tokenize_words(r["original"][s:e]))
    n = len(records)
    return {"captions": n, "grammatical": sum(r["grammatical"] for r in records) / n if n else 0.0,
            "with_unparsed_text": sum(bool(r.get("unparsed")) for r in records) / n if n else 0.0,
            "content_words": content, "content_words_lost": lost,
            "recall": 1 - lost / content if content else 1.0}


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def validation_scores(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per claim kind and over all: checked claims, accuracy of the verdicts, refute precision and recall."""
    out = {}
    for kind in (*CLAIM_KINDS, "all"):
        rows = [(c["true"], c["verdict"]["supported"]) for r in records for c in r["checks"]
                if (kind == "all" or c["kind"] == kind) and c["true"] is not None and c["verdict"]["supported"]
                is not None]
        tp = sum(not t and s is False for t, s in rows)  # refuted and false
        fp = sum(t and s is False for t, s in rows)
        fn = sum(not t and s for t, s in rows)
        tn = sum(t and s for t, s in rows)
        out[kind] = {"checked": len(rows), "false": tp + fn, "accuracy": _rate(tp + tn, len(rows)),
                     "refute_precision": _rate(tp, tp + fp), "refute_recall": _rate(tp, tp + fn)}
    return out


def edit_scores(records: list[dict[str, Any]]) -> dict[str, Any]:
    # the pipeline's own edits: of claims it refuted (not those that went with a refuted object)
    own = [c for r in records for c in r["checks"] if c["verdict"]["action"] != "keep"
           and c["verdict"]["supported"] is False and c["true"] is not None]
    false = [c for r in records for c in r["checks"] if c["true"] is False]
    fixes = [c for c in own if c["verdict"]["action"] == "fix" and c.get("fix_true") is not None]
    by_kind = {}
    for kind in CLAIM_KINDS:
        mine = [c for c in own if c["kind"] == kind]
        by_kind[kind] = {"edits": len(mine), "precision": _rate(sum(not c["true"] for c in mine), len(mine))}
    return {"edits": len(own), "precision": _rate(sum(not c["true"] for c in own), len(own)),
            "recall": _rate(sum(c["verdict"]["action"] != "keep" for c in false), len(false)),
            "fixes": len(fixes), "fix_accuracy": _rate(sum(c["fix_true"] for c in fixes), len(fixes)),
            "deleted_true_claims": sum(c["true"] is True and c["verdict"]["action"] == "delete"
                                       for r in records for c in r["checks"]),
            "by_kind": by_kind}


def paired_changes(original: list[dict[str, Any]], corrected: list[dict[str, Any]], n_boot: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """Per kind, the relative reduction of the false-claim rate (1 - corrected / original) and of the
    number of false claims, and the relative change of coverage (corrected / original - 1), each with a
    paired bootstrap 95 % interval over images (one resample draws the same images for both)."""
    co, cc = claim_counts(original), claim_counts(corrected)
    width = co.shape[1]
    both = np.hstack([co, cc])
    out: dict[str, Any] = {}

    def entry(fn, relative: str) -> dict[str, Any]:
        a, b = metric_of(co, fn), metric_of(cc, fn)
        sign = -1 if relative == "reduction" else 1  # a reduction is 1 - b / a; a change, b / a - 1

        def stat(t):
            return sign * (metrics.ratio(fn(t[:, width:]), fn(t[:, :width])) - 1)

        value = sign * (b / a - 1) if a else 0.0
        return {"original": a, "corrected": b, relative: value, "ci95": list(metrics.bootstrap_sums_ci(both, stat,
                                                                                                        n_boot, seed))}

    for i, k in enumerate(CLAIM_KEYS):
        out[k] = {"rate": entry(CLAIMS_FROM_SUMS[k], "reduction"),
                  "false_claims": entry(lambda s, i=i: s[:, 2 * i], "reduction")}
    out["coverage"] = entry(CAPTION_FROM_SUMS["coverage"], "change")
    return out


def correction_scores(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every stage's scores of world-CHAIR correction records, and the paired result."""
    original = [{"claims": r["original_claims"], "objects": r["objects"], "breaks_bias": r["breaks_bias"],
                 "repeats_phrase": r["original_repeats_phrase"]} for r in records]
    return {"n": len(records), "extraction": extraction_scores(records), "validation": validation_scores(records),
            "edits": edit_scores(records), "original": claim_metrics(original), "corrected": claim_metrics(records),
            "paired": paired_changes(original, records)}


__all__ = ["CONTENT_WORDS", "correction_scores", "edit_scores", "extraction_scores", "paired_changes",
           "validation_scores"]
