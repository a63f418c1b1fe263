"""The analyses that read claim verdicts only: hallucination rate per kind, over-generalization by scene
(RLHF-V), and hallucination against position in the caption. Pure functions of caption records
(`diagnose.data`); no model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import metrics
from ..world.claims import CLAIM_KINDS
from ..world.language import word_spans
from .data import claim_char


def _share(s: np.ndarray) -> np.ndarray:
    return metrics.ratio(s[:, 0], s[:, 1])


def rate_with_ci(rows: np.ndarray) -> dict[str, Any]:
    """(n_items, 2) rows of (false, total): the share, its 95 % CI resampling items, the counts."""
    rows = np.asarray(rows, dtype=float).reshape(-1, 2)
    total = rows.sum(0)
    return {"rate": float(metrics.ratio(total[0], total[1])), "ci95": list(metrics.bootstrap_sums_ci(rows, _share)),
            "n_false": int(total[0]), "n": int(total[1])}


def kinds(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The share of false claims of each kind (object, attribute, count, relation, all), with 95 % CIs
    resampling images. A kind no caption makes has n = 0 (real captions: objects only)."""
    out = {}
    for kind in (*CLAIM_KINDS, "all"):
        rows = [[sum(not c["true"] for c in r["claims"] if kind == "all" or c["kind"] == kind),
                 sum(kind == "all" or c["kind"] == kind for c in r["claims"])] for r in records]
        out[kind] = rate_with_ci(np.array(rows))
    out["n_captions"] = len(records)
    return out


# ------------------------------------------------------------------------------ over-generalization
def cooccurrence_clusters(object_lists: Sequence[Sequence[str]], k: int = 6, seed: int = 0) -> dict[str, list[str]]:
    """Scene types for real data: the categories clustered by co-occurrence (k-means on each category's
    row of the normalised co-occurrence matrix), named by their most frequent member."""
    cats = sorted({c for objs in object_lists for c in objs})
    if not cats:
        return {}
    index = {c: i for i, c in enumerate(cats)}
    m = np.zeros((len(cats), len(cats)))
    for objs in object_lists:
        ids = sorted({index[c] for c in objs})
        for a in ids:
            for b in ids:
                m[a, b] += 1
    freq = np.diag(m).copy()
    x = m / np.sqrt(np.outer(freq, freq) + 1e-9)
    k = max(1, min(k, len(cats)))
    centres = x[np.argsort(-freq)[:k]].copy()  # the k most frequent categories seed the clusters
    for _ in range(50):
        assign = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.stack([x[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    clusters: dict[str, list[str]] = {}
    for j in range(k):
        members = [cats[i] for i in np.flatnonzero(assign == j)]
        if members:
            name = max(members, key=lambda c: freq[index[c]])
            clusters[name] = sorted(members)
    return clusters


def scene_of(objects: Sequence[str], scenes: dict[str, Sequence[str]]) -> str | None:
    """The scene type holding most of an image's objects (the first such in `scenes`' order)."""
    best, count = None, 0
    for name, members in scenes.items():
        n = len(set(objects) & set(members))
        if n > count:
            best, count = name, n
    return best


def overgeneralization(records: Sequence[dict[str, Any]], scenes: dict[str, Sequence[str]]) -> dict[str, Any]:
    """RLHF-V's over-generalization: for each scene type, how often its typical objects (`scenes[type]`) are
    hallucinated when absent, in images of that scene against images of other scenes (false object claims
    of a member / images where that member is absent; 95 % CIs resampling images). An image's scene is its
    record's `scene`, else the type holding most of its objects."""
    out: dict[str, Any] = {}
    for name, members in scenes.items():
        rows = {True: [], False: []}
        for r in records:
            scene = r.get("scene") or scene_of(r["objects"], scenes)
            if scene is None:
                continue
            absent = [m for m in members if m not in r["objects"]]
            hallucinated = {c["class"] for c in r["claims"] if c["kind"] == "object" and not c["true"]}
            rows[scene == name].append([len(hallucinated & set(absent)), len(absent)])
        same, other = rate_with_ci(np.array(rows[True])), rate_with_ci(np.array(rows[False]))
        ratio = same["rate"] / other["rate"] if other["rate"] else None
        out[name] = {"members": list(members), "in_scene": same, "other_scenes": other, "ratio": ratio,
                     "images_in_scene": len(rows[True]), "images_other": len(rows[False])}
    return out


# ------------------------------------------------------------------------------ position
RELATIVE_BINS = 5


def claim_positions(record: dict[str, Any]) -> list[tuple[dict[str, Any], int, float]]:
    """(claim, sentence index, relative word position in [0, 1)) of each claim of a caption."""
    caption = record["caption"]
    words = word_spans(caption)
    out = []
    for c in record["claims"]:
        at = claim_char(c, caption)
        sentence = sum(w == "." for w, s, _ in words if s < at)
        index = sum(s < at for _, s, _ in words)
        out.append((c, sentence, index / max(1, len(words))))
    return out


def position(records: Sequence[dict[str, Any]], max_sentences: int = 6) -> dict[str, Any]:
    """Hallucination rate (false claims / claims) against the claim's sentence index (0-based, the last bin
    holding all later ones) and its relative word position in the caption (RELATIVE_BINS equal bins), over all
    claims and within each kind."""
    by_sentence = np.zeros((max_sentences, 2))
    by_relative = np.zeros((RELATIVE_BINS, 2))
    by_kind = {k: np.zeros((RELATIVE_BINS, 2)) for k in CLAIM_KINDS}
    for r in records:
        for c, sentence, rel in claim_positions(r):
            b = min(int(rel * RELATIVE_BINS), RELATIVE_BINS - 1)
            by_sentence[min(sentence, max_sentences - 1)] += [not c["true"], 1]
            by_relative[b] += [not c["true"], 1]
            by_kind[c["kind"]][b] += [not c["true"], 1]

    def rows(counts: np.ndarray) -> dict[str, list]:
        return {"rate": [float(metrics.ratio(f, n)) if n else None for f, n in counts],
                "n": [int(n) for _, n in counts], "n_false": [int(f) for f, _ in counts]}

    edges = [round(i / RELATIVE_BINS, 3) for i in range(RELATIVE_BINS + 1)]
    return {"sentence": {"index": list(range(max_sentences)), **rows(by_sentence)},
            "relative": {"edges": edges, **rows(by_relative)},
            # within a kind: in the world's grammar relation sentences come last, so position and kind go together
            "relative_by_kind": {k: rows(v) for k, v in by_kind.items() if v[:, 1].sum()}}


__all__ = ["cooccurrence_clusters", "kinds", "overgeneralization", "position", "rate_with_ci", "scene_of"]
