"""The world's versions of POPE, CHAIR (with every claim of a caption judged) and AMBER-style questions of
every kind (world-qa), scored against exact ground truth.

Each is a task (see `base.py`): `samples()` lists what to run (each with an `id`), `request()` says
what to ask the model, `record()` keeps the answer, `score()` turns the finished records into metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import metrics
from ..world import CAPTION_PROMPTS, CLASSES, COLORS, NUMBERS, PLURALS, QA_KINDS, World, tokenize_words
from ..world.claims import CLAIM_KINDS, caption_claims, parse_claims
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


CLAIM_KEYS = (*CLAIM_KINDS, "all")


def claim_counts(records: Sequence[dict]) -> np.ndarray:
    """(n, 2 * 5 + 4) rows of world-CHAIR records with their claims: (false, claims) of each of
    `CLAIM_KEYS` (object, attribute, count, relation, all), then the scene's classes named, the
    scene's classes, whether the caption repeats a class phrase, and 1."""
    rows = []
    for r in records:
        row = []
        for kind in CLAIM_KEYS:
            mine = [c for c in r["claims"] if kind == "all" or c["kind"] == kind]
            row += [sum(not c["true"] for c in mine), len(mine)]
        named = {c["class"] for c in r["claims"] if c["kind"] == "object" and c["true"]}
        row += [len(named & set(r["objects"])), len(set(r["objects"])), bool(r["repeats_phrase"]), 1]
        rows.append(row)
    return np.array(rows, dtype=float).reshape(-1, 2 * len(CLAIM_KEYS) + 4)


def _share(num: int, den: int):
    return lambda s: metrics.ratio(s[:, num], s[:, den])


# column sums (B, 14) -> metric (B,): the share of false claims of each kind, then coverage and the
# share of captions that repeat a class phrase
_COV = 2 * len(CLAIM_KEYS)
CLAIMS_FROM_SUMS = {k: _share(2 * i, 2 * i + 1) for i, k in enumerate(CLAIM_KEYS)}
CAPTION_FROM_SUMS = {"coverage": _share(_COV, _COV + 1), "repeats_phrase": _share(_COV + 2, _COV + 3)}


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
    """CHAIR on captions of the world's test images, overall and on ordinary vs bias-breaking ones, and
    every claim of each caption (object, attribute, count, relation) judged against the scene
    (`world.claims`): `metrics["claims"]` is the share of false claims of each kind."""

    world: World
    n_images: int = 1000
    style: str = "detailed"
    max_new_tokens: int = 64

    @property
    def name(self) -> str:
        return "world-chair"

    def samples(self) -> list[dict[str, Any]]:
        return [{"id": s.image_id, "image": s.image, "objects": s.truth.classes,
                 "breaks_bias": s.truth.breaks_bias, "scene": s.truth}
                for s in self.world.sample("test", self.n_images)]

    def request(self, sample: dict[str, Any]) -> Request:
        return generate(CAPTION_PROMPTS[self.style], self.max_new_tokens)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        caption = answer["text"]
        claims = caption_claims(caption, sample["scene"], self.world.config)
        return {"id": sample["id"], "caption": caption, "objects": sample["objects"],
                "breaks_bias": sample["breaks_bias"], "claims": [c.to_dict() for c in claims],
                "repeats_phrase": any(c.kind == "count" and c.repeat for c in parse_claims(caption).claims)}

    def _with_claims(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records as `record` writes them; older lines without claims get them from their scene."""
        out = []
        for r in records:
            if "claims" not in r:
                split, _, index = r["id"].partition("-")
                r = self.record({**r, "scene": self.world.scene(split, int(index))}, {"text": r["caption"]})
            out.append(r)
        return out

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        records = self._with_claims(records)
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
        out |= claim_metrics(records)
        out["claims_subsets"] = {name: claim_metrics([r for r, m in zip(records, mask) if m])["claims"]
                                 for name, mask in subsets.items() if any(mask)}
        return out


def claim_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """From world-CHAIR records with claims: `claims` (kind -> share of false claims, its 95 % CI
    resampling images, the number of claims and of false ones), `coverage` (the share of the scene's
    classes the caption names), `repeats_phrase` (the share of captions naming a class in two phrases),
    `claims_bias` (per kind, the share of false claims among those about a bias-breaking item and among
    the others) and `false_reasons` (per kind, how many false claims had each reason)."""
    counts = claim_counts(records)
    claims = {}
    for i, k in enumerate(CLAIM_KEYS):
        claims[k] = {**_with_ci(counts, CLAIMS_FROM_SUMS[k]), "n": int(counts[:, 2 * i + 1].sum()),
                     "n_false": int(counts[:, 2 * i].sum())}
    out: dict[str, Any] = {"claims": claims}
    for k, fn in CAPTION_FROM_SUMS.items():
        out[k] = _with_ci(counts, fn)
    bias: dict[str, Any] = {}
    reasons: dict[str, dict[str, int]] = {}
    for kind in CLAIM_KINDS:
        for group, about in (("breaking", True), ("conforming", False)):
            rows = [[sum(not c["true"] for c in r["claims"] if c["kind"] == kind and c["breaks_bias"] == about),
                     sum(c["kind"] == kind and c["breaks_bias"] == about for c in r["claims"])] for r in records]
            rows = np.array(rows, dtype=float).reshape(-1, 2)
            if rows[:, 1].sum():
                entry = _with_ci(rows, _share(0, 1))
                bias.setdefault(kind, {})[group] = entry | {"n": int(rows[:, 1].sum())}
        for r in records:
            for c in r["claims"]:
                if c["kind"] == kind and not c["true"]:
                    reason = c.get("reason", "wrong")
                    reasons.setdefault(kind, {})[reason] = reasons.get(kind, {}).get(reason, 0) + 1
    out["claims_bias"], out["false_reasons"] = bias, reasons
    return out


# ---------------------------------------------------------------------------- world-qa
def read_qa_answers(records: Sequence[dict]) -> list[dict]:
    """world-qa records with their yes/no predictions read by POPE's official parser, as world-pope reads
    them (open answers are parsed when recorded)."""
    return [r | {"prediction": metrics.parse_yes_no(r["prediction"])} if r["form"] == "yes_no" else r
            for r in records]


def qa_counts(records: Sequence[dict]) -> np.ndarray:
    """(n, 8) rows of world-qa records: tp, fp, tn, fn (yes/no questions; 0 for open ones), 1, wrong and
    the prior's answer, wrong, correct."""
    rows = []
    for r in records:
        ok = r["prediction"] == r["label"]
        if r["form"] == "yes_no":
            yes, pos = r["prediction"] == "yes", r["label"] == "yes"
            conf = [yes and pos, yes and not pos, not yes and not pos, not yes and pos]
        else:
            conf = [0, 0, 0, 0]
        prior = r.get("prior")
        rows.append([*conf, 1, not ok and prior is not None and r["prediction"] == prior, not ok, ok])
    return np.array(rows, dtype=float).reshape(-1, 8)


QA_FROM_SUMS = {  # column sums (B, 8) -> metric (B,)
    "accuracy": _share(7, 4),
    "precision": lambda s: metrics.ratio(s[:, 0], s[:, 0] + s[:, 1]),
    "recall": lambda s: metrics.ratio(s[:, 0], s[:, 0] + s[:, 3]),
    "f1": lambda s: metrics.ratio(2 * s[:, 0], 2 * s[:, 0] + s[:, 1] + s[:, 3]),
    "yes_ratio": lambda s: metrics.ratio(s[:, 0] + s[:, 1], s[:, 4]),
    "prior_share": _share(5, 6),
}
YES_NO_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio", "prior_share")
OPEN_KEYS = ("accuracy", "prior_share")
QA_SUBSETS = ("conforming", "breaking", "prior_conforming")


def _subset(records: Sequence[dict], name: str) -> list[dict]:
    if name == "breaking":
        return [r for r in records if r["breaks"]]
    if name == "conforming":
        return [r for r in records if not r["breaks"]]
    return [r for r in records if not r["breaks"] and r.get("prior") is not None]


def qa_metrics(records: Sequence[dict], keys: Sequence[str]) -> dict[str, Any]:
    """`keys` of `QA_FROM_SUMS` over `records`, each with its 95 % CI resampling images, and `n` (questions)
    and `n_wrong`."""
    by_image: dict[str, list[dict]] = {}
    for r in records:
        by_image.setdefault(r["image_id"], []).append(r)
    counts = np.stack([qa_counts(g).sum(0) for g in by_image.values()]) if by_image else np.zeros((0, 8))
    out: dict[str, Any] = {k: metric_of(counts, QA_FROM_SUMS[k]) if len(counts) else 0.0 for k in keys}
    out["ci95"] = {k: list(metrics.bootstrap_sums_ci(counts, QA_FROM_SUMS[k])) for k in keys}
    out["n"], out["n_wrong"] = len(records), int(counts[:, 6].sum()) if len(counts) else 0
    return out


def _error_ratio(subsets: dict[str, Any]) -> float | None:
    """Error rate on bias-breaking items over the rate on conforming ones (None where either is missing)."""
    if "breaking" not in subsets or "conforming" not in subsets:
        return None
    err_b, err_c = 1 - subsets["breaking"]["accuracy"], 1 - subsets["conforming"]["accuracy"]
    return err_b / err_c if err_c else (float("inf") if err_b else None)


def parse_open_answer(kind: str, text: str) -> str:
    """The first colour word (attribute) or the last number word (count; digits read as words) of an answer,
    or "" where it has none; a count's last, because the built-in model says the places of what it counts
    before the number ("two three , four one , two")."""
    words = tokenize_words(text)
    if kind == "count":
        words = [NUMBERS[int(w)] if w.isdigit() and int(w) < len(NUMBERS) else w for w in words][::-1]
    options = COLORS if kind == "attribute" else NUMBERS
    return next((w for w in words if w in options), "")


# The kinds whose yes/no questions world-qa always answers by generation: the built-in model says places (and a
# relation, or a number) before its verdict (language.RELATION_ANSWER, count_answer), so its first token's yes
# and no scores say nothing; POPE's parser reads the verdict like any free-text answer.
GENERATED_KINDS = ("relation", "count")


@dataclass
class WorldQA(TaskBase):
    """AMBER-style discriminative questions of one kind on the world's test images (`World.qa`): balanced
    yes/no questions per image, plus an open question for colour and count; scored overall and on
    conforming vs bias-breaking items, with the share of wrong answers that are the prior's."""

    world: World
    kind: str = "existence"
    n_images: int = 500
    mode: str = "score"  # yes/no: "score" (yes vs no log-probability) or "generate" (always for GENERATED_KINDS)
    max_new_tokens: int = 16  # open questions: a colour word, or places and a number

    def __post_init__(self) -> None:
        if self.kind not in QA_KINDS:
            raise ValueError(f"WorldQA.kind={self.kind!r} is invalid: use one of {', '.join(QA_KINDS)}")

    @property
    def name(self) -> str:
        return f"world-qa:{self.kind}"

    def samples(self) -> list[dict[str, Any]]:
        return [dict(q, id=q["question_id"]) for q in self.world.qa(self.kind, self.n_images)]

    def request(self, sample: dict[str, Any]) -> Request:
        if sample["form"] == "yes_no":
            return yes_no(sample["text"], "generate" if self.kind in GENERATED_KINDS else self.mode)
        return generate(sample["text"], self.max_new_tokens)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        keep = ("id", "question_id", "image_id", "kind", "form", "text", "label", "prior", "breaks", "object",
                "other", "value", "breaks_bias")
        out = {k: sample[k] for k in keep if k in sample}
        if sample["form"] == "open":
            return out | {"prediction": parse_open_answer(self.kind, answer["text"]), "raw": answer["text"]}
        return out | answer

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        records = read_qa_answers(sorted(records, key=lambda r: r["question_id"]))
        out: dict[str, Any] = {}
        for form, keys in (("yes_no", YES_NO_KEYS), ("open", OPEN_KEYS)):
            mine = [r for r in records if r["form"] == form]
            if not mine:
                continue
            m = qa_metrics(mine, keys)
            m["subsets"] = {s: qa_metrics(sub, keys) for s in QA_SUBSETS if (sub := _subset(mine, s))}
            m["breaking_error_ratio"] = _error_ratio(m["subsets"])
            out[form] = m
        # the yes/no figures at the top level too (lmms-eval's summary keeps scalars)
        for k in YES_NO_KEYS:
            if "yes_no" in out:
                out[k] = out["yes_no"][k]
        if "open" in out:
            out["open_accuracy"] = out["open"]["accuracy"]
        out["n"] = len(records)
        return out
