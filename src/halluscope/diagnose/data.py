"""What the analyses read: captions with claim verdicts, and yes/no questions, from the world or from real
benchmark files.

A caption record is a dict: `id`, `image` (PIL), `prompt`, `caption`, `claims` (each with `kind`, `span`,
`true`, `class`, and for a false one `reason`), `objects` (the image's classes) and `scene` (its scene
type, or None). World records come from `WorldCHAIR` (every claim judged against the scene); real ones
from the CHAIR task's ground truth, where a claim is an object mention (CHAIR's words, first mention).
A question record: `image`, `text`, `label` ("yes"/"no"), `object`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..images import load_image
from ..tasks import answer
from ..tasks.world import WorldCHAIR
from ..world import World


def claim_char(claim: dict[str, Any], caption: str) -> int:
    """Where a claim's decisive first token is: its span's start, or for a relation ("the A is REL the B")
    the relation's first word."""
    start, end = claim["span"]
    if claim["kind"] == "relation":
        at = caption[start:end].find(" is ")
        if at >= 0:
            return start + at + 4
    return start


def world_caption_records(adapter, world: World, n: int, batch_size: int = 16, max_new_tokens: int = 64,
                          captions: Sequence[str] | None = None, method: str = "greedy") -> list[dict[str, Any]]:
    """Captions of the first `n` world test images by `adapter` (or the given `captions`), with every claim
    judged (`WorldCHAIR.record`)."""
    task = WorldCHAIR(world, n_images=n, max_new_tokens=max_new_tokens)
    samples = task.samples()
    prompt = task.request(samples[0]).prompt if samples else ""
    out = []
    for i in range(0, len(samples), batch_size):
        batch = samples[i : i + batch_size]
        if captions is None:
            records = answer(task, adapter, batch, method)
        else:
            records = [task.record(s, {"text": captions[i + k]}) for k, s in enumerate(batch)]
        for s, r in zip(batch, records):
            out.append({"id": s["id"], "image": s["image"], "prompt": prompt, "caption": r["caption"],
                        "claims": r["claims"], "objects": list(s["objects"]), "scene": s["scene"].scene_type,
                        "truth": s["scene"]})
    return out


def _word_span(caption: str, word: str) -> tuple[int, int] | None:
    m = re.search(r"\b" + re.escape(word.lower()), caption.lower())
    return (m.start(), m.start() + len(word)) if m else None


def chair_claims(caption: str, words: Sequence[str], categories: Sequence[str], objects: Sequence[str]
                 ) -> list[dict[str, Any]]:
    """Object claims of a real caption from CHAIR's words and categories: one per category, at its first
    mention, true where the category is in the ground truth."""
    claims, seen = [], set()
    for word, cat in zip(words, categories):
        if cat in seen:
            continue
        span = _word_span(caption, word) or _word_span(caption, cat)
        if span is None:
            continue
        seen.add(cat)
        true = cat in objects
        claims.append({"kind": "object", "text": caption[span[0]:span[1]], "span": list(span), "class": cat,
                       "true": true, **({} if true else {"reason": "absent"})})
    return claims


def real_caption_records(adapter, task, limit: int | None = None, batch_size: int = 8,
                         parity: bool = False, scenes: dict[str, str] | None = None,
                         max_new_tokens: int | None = None) -> list[dict[str, Any]]:
    """Captions of a real CHAIR task's images by `adapter`, with CHAIR's object mentions as claims (`parity`:
    NLTK's lemmatizer, as the official scorer; else the built-in approximation). `scenes`: image id -> scene;
    `max_new_tokens`: caption length (default: the task's)."""
    from .. import metrics

    gt = task.ground_truth()
    samples = task.samples()[:limit]
    out = []
    for i in range(0, len(samples), batch_size):
        batch = [dict(s, image=load_image(s["image"])) for s in samples[i : i + batch_size]]
        texts = adapter.generate([s["image"] for s in batch], [task.prompt] * len(batch),
                                 max_new_tokens=max_new_tokens or task.max_new_tokens)
        scored = metrics.chair([{"image_id": s["id"], "caption": t} for s, t in zip(batch, texts)],
                               {s["id"]: gt[s["id"]] for s in batch}, parity=parity)["per_sample"]
        for s, t, p in zip(batch, texts, scored):
            objects = sorted(gt[s["id"]])
            out.append({"id": s["id"], "image": s["image"], "prompt": task.prompt, "caption": t,
                        "claims": chair_claims(t, p["words"], p["mentioned"], objects), "objects": objects,
                        "scene": (scenes or {}).get(str(s["id"]))})
    return out


def world_questions(world: World, n_images: int, split: str = "adversarial") -> list[dict[str, Any]]:
    return [{"id": q["question_id"], "image": q["image"], "text": q["text"], "label": q["label"],
             "object": q["object"], "image_id": q["image_id"]} for q in world.pope(split, n_images)]


def real_questions(task, limit: int | None = None) -> list[dict[str, Any]]:
    """A real POPE task's questions with their images loaded (the first `limit`)."""
    out = []
    for s in task.samples()[:limit]:
        try:
            image = load_image(s["image"])
        except (OSError, ValueError):
            continue
        out.append({"id": s["id"], "image": image, "text": s["text"], "label": s["label"], "object": None,
                    "image_id": s["image"]})
    return out


__all__ = ["chair_claims", "claim_char", "real_caption_records", "real_questions", "world_caption_records",
           "world_questions"]
