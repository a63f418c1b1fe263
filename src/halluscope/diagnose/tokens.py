"""Token-level analyses of captions, by teacher forcing each caption through the VLM:

- `base_rank` (VDGD, Ghosh et al. 2024): the rank of each hallucinated phrase's first token under a
  text-only base LM given the same text without the image: unshifted (0), marginal (1-2), shifted (>= 3);
  and VDGD's attribution into language, vision, style and instruction-tuning hallucination;
- `logit_elbow` (VDGD): the number of confident candidates (the elbow of the sorted next-token
  probabilities) at hallucinated and at correct first tokens;
- `attention_to_image` (the survey's insufficient attention to the image): the share of attention on the
  image tokens at each caption token, along the caption, for hallucinated and correct tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..world import World
from ..world.claims import parse_claims
from ._forced import forced_pass
from .base_lm import bucket_shares, mean_or_none
from .data import claim_char

ATTRIBUTION = ("language", "vision", "style", "instruction_tuning")
STYLE_REASONS = ("repeat", "self")  # false by the caption's form: a class listed twice, related to itself


def _first_tokens(record: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """(claim, character of its first token) of every claim of a record."""
    return [(c, claim_char(c, record["caption"])) for c in record["claims"]]


def signature(claim: dict[str, Any]) -> tuple:
    """What a claim says, comparable across captions: (kind, class, value)."""
    if claim["kind"] == "relation":
        return ("relation", claim["class"], claim.get("relation"), claim.get("other"))
    return (claim["kind"], claim["class"], claim.get("value"))


def world_neighbours(world: World, n_train: int = 2000, k: int = 10) -> Callable[[dict[str, Any]], set]:
    """For instruction-tuning hallucination: record -> the claims made by the training captions of the `k`
    training scenes most like the record's image (Jaccard of their classes; the same scene type first),
    among the first `n_train` training scenes, which the world lists exactly."""
    train = [world.scene("train", i) for i in range(n_train)]
    classes = [set(s.classes) for s in train]
    said = [{signature(c.to_dict()) for c in parse_claims(World.caption(s)).claims} for s in train]

    def neighbours(record: dict[str, Any]) -> set:
        mine = set(record["objects"])
        score = [(len(mine & c) / max(1, len(mine | c)), s.scene_type == record.get("scene"))
                 for c, s in zip(classes, train)]
        top = sorted(range(len(train)), key=lambda i: (-score[i][0], -score[i][1], i))[:k]
        return set().union(*(said[i] for i in top))

    return neighbours


def attribute(claim: dict[str, Any], rank: int, in_training: bool | None) -> str:
    """VDGD's kind of a hallucination: style (false by the caption's form), language (unshifted: the base
    LM alone says it), instruction tuning (shifted by the image, and said by the training captions of the
    most similar images), else vision."""
    if claim.get("reason") in STYLE_REASONS:
        return "style"
    if rank == 0:
        return "language"
    if in_training:
        return "instruction_tuning"
    return "vision"


def base_rank(records: Sequence[dict[str, Any]], scorer, neighbours: Callable[[dict], set] | None = None
              ) -> dict[str, Any]:
    """VDGD's base-rank analysis of hallucinated (and, for comparison, correct) first tokens: the rank of
    the caption's token under `scorer` (`base_lm.TextLMScorer`: the base LM without the image) and its
    bucket; the attribution of each hallucination (`attribute`), `neighbours` giving the training captions'
    claims (None: no instruction-tuning attribution)."""
    hall, correct, items = [], [], []
    by_kind: dict[str, dict[str, int]] = {}
    for r in records:
        pairs = _first_tokens(r)
        if not pairs:
            continue
        ranks = scorer.ranks(r, [ch for _, ch in pairs])
        near = neighbours(r) if neighbours is not None and any(not c["true"] for c, _ in pairs) else None
        for (c, _), rank in zip(pairs, ranks):
            if rank is None:
                continue
            if c["true"]:
                correct.append(rank)
                continue
            hall.append(rank)
            in_training = None if near is None else signature(c) in near
            kind = attribute(c, rank, in_training)
            by_kind.setdefault(c["kind"], {k: 0 for k in ATTRIBUTION})[kind] += 1
            items.append({"id": str(r["id"]), "kind": c["kind"], "text": c["text"], "rank": int(rank),
                          "attribution": kind, "in_training": in_training})
    counts = {k: sum(i["attribution"] == k for i in items) for k in ATTRIBUTION}
    n = len(items)
    return {
        "base": getattr(scorer, "name", type(scorer).__name__),
        "hallucinated": {"n": len(hall), "buckets": bucket_shares(hall), "mean_rank": mean_or_none(hall),
                         "median_rank": float(np.median(hall)) if hall else None},
        "correct": {"n": len(correct), "buckets": bucket_shares(correct), "mean_rank": mean_or_none(correct),
                    "median_rank": float(np.median(correct)) if correct else None},
        "attribution": {k: (v / n if n else 0.0) for k, v in counts.items()},
        "attribution_counts": counts,
        "attribution_by_kind": by_kind,
        "instruction_tuning_checked": neighbours is not None,
        "examples": items[:20],
    }


# ------------------------------------------------------------------------------ logit elbow
def elbow_k(probs: torch.Tensor, top: int = 50) -> int:
    """VDGD's number of confident candidates: the elbow of the sorted next-token probabilities (the point
    of the top-`top` curve furthest below the chord from the first to the last), 1 at least."""
    p = probs.float().sort(descending=True).values[:top].numpy()
    if len(p) < 3 or p[0] <= p[-1]:
        return 1
    x = np.linspace(0, 1, len(p))
    y = (p - p[-1]) / (p[0] - p[-1])
    return max(1, int(np.argmax((1 - x) - y)))


def _summary(ks: list[int]) -> dict[str, Any]:
    return {"n": len(ks), "mean": mean_or_none(ks), "median": float(np.median(ks)) if ks else None,
            "histogram": {str(k): ks.count(k) for k in sorted(set(ks))}}


def logit_elbow(adapter, records: Sequence[dict[str, Any]], top: int = 50) -> dict[str, Any]:
    """The elbow k of the VLM's next-token distribution (with the image) at the first token of each
    hallucinated and each correct claim."""
    hall, correct = [], []
    for r in records:
        pairs = _first_tokens(r)
        if not pairs:
            continue
        f = forced_pass(adapter, r["image"], r["prompt"], r["caption"])
        probs = f.logits.softmax(-1)
        for c, ch in pairs:
            j = f.token_at(ch)
            if j is not None:
                (correct if c["true"] else hall).append(elbow_k(probs[j], top))
    return {"top": top, "hallucinated": _summary(hall), "correct": _summary(correct)}


# ------------------------------------------------------------------------------ attention
@contextlib.contextmanager
def eager_attention(model):
    """The model with eager attention for the block (attention weights need it), restored after; yields
    whether it runs eagerly."""
    before = getattr(model.config, "_attn_implementation", None)
    if before == "eager":
        yield True
        return
    try:
        model.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001  (a model that cannot switch: say so, do not fail)
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(Exception):
            model.set_attn_implementation(before)


def attention_to_image(adapter, records: Sequence[dict[str, Any]], bins: int = 5) -> dict[str, Any]:
    """The share of attention (mean over layers and heads) on the image tokens at each caption token, by
    relative position along the caption, and at the first tokens of hallucinated vs correct claims."""
    with eager_attention(adapter.model) as eager:
        if not eager:
            return {"eager": False, "note": "this model cannot run with eager attention, which attention weights "
                                            "need; no attention analysis"}
        along = [[] for _ in range(bins)]
        hall, correct, every = [], [], []
        for r in records:
            if not r["caption"].strip():
                continue
            f = forced_pass(adapter, r["image"], r["prompt"], r["caption"], attentions=True)
            share = f.image_share.tolist()
            every += share
            for j, s in enumerate(share):
                along[min(bins - 1, int(bins * j / max(1, len(share))))].append(s)
            for c, ch in _first_tokens(r):
                j = f.token_at(ch)
                if j is not None:
                    (correct if c["true"] else hall).append(share[j])
    edges = [round(i / bins, 3) for i in range(bins + 1)]
    return {"eager": True, "along_caption": {"edges": edges, "mean": [mean_or_none(b) for b in along],
                                             "n": [len(b) for b in along]},
            "hallucinated": {"n": len(hall), "mean": mean_or_none(hall)},
            "correct": {"n": len(correct), "mean": mean_or_none(correct)},
            "all_tokens": {"n": len(every), "mean": mean_or_none(every)}}


__all__ = ["ATTRIBUTION", "attention_to_image", "attribute", "base_rank", "eager_attention", "elbow_k",
           "logit_elbow", "signature", "world_neighbours"]
