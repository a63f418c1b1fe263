"""Validators that ask a model: the VLM itself (self-check) and a zero-shot detector (OWLv2, OWL-ViT).

Both answer the questions of a whole batch of captions together: the self-check in one yes/no forward
pass per `batch_size` questions (the adapter's `yes_no_logprobs`, under any decoding method) and one short
generation per `batch_size` open questions; the detector in one forward pass per image with every class
its questions name as text queries.
"""

from __future__ import annotations

import math
from typing import Any

from ..metrics import parse_yes_no
from ..tasks.world import GENERATED_KINDS
from .stages import Answer, Item, Question


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class SelfValidator:
    """The VLM answers its own questions (`adapter`: a `VLMAdapter`). A yes/no answer's `p_yes` is
    p(yes) / (p(yes) + p(no)) from the first-token log-probabilities under `method`, except for relation and count
    questions, which are generated and read by POPE's parser, as world-qa reads them (the built-in model says
    places, and a relation or a number, before its verdict: `tasks.world.GENERATED_KINDS`); an open answer is the
    generated text (at most `max_new_tokens` tokens), parsed by the verdict stage. `calls` counts the questions
    asked, by form."""

    name = "self"

    def __init__(self, adapter, method: str = "greedy", method_args: dict[str, Any] | None = None,
                 batch_size: int = 16, max_new_tokens: int = 16) -> None:
        self.adapter, self.method, self.method_args = adapter, method, dict(method_args or {})
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.calls = {"yes_no": 0, "open": 0}

    def answer(self, items: list[Item], questions: list[tuple[int, Question]]) -> list[Answer | None]:
        out: list[Answer | None] = [None] * len(questions)
        for form, generated in (("yes_no", False), ("yes_no", True), ("open", False)):
            idx = [k for k, (_, q) in enumerate(questions)
                   if q.form == form and (form == "open" or (q.kind in GENERATED_KINDS) == generated)]
            for chunk in _chunks(idx, self.batch_size):
                images = [items[questions[k][0]].image for k in chunk]
                texts = [questions[k][1].text for k in chunk]
                self.calls[form] += len(chunk)
                if generated:
                    said = self.adapter.yes_no_texts(images, texts, method=self.method, **self.method_args)
                    for k, text in zip(chunk, said):
                        out[k] = Answer(parse_yes_no(text))
                elif form == "yes_no":
                    lp = self.adapter.yes_no_logprobs(images, texts, method=self.method, **self.method_args).tolist()
                    for k, (y, n) in zip(chunk, lp):
                        p = 1.0 / (1.0 + math.exp(n - y)) if math.isfinite(y) or math.isfinite(n) else 0.5
                        out[k] = Answer("yes" if p >= 0.5 else "no", p)
                else:
                    said = self.adapter.generate(images, texts, method=self.method,
                                                 max_new_tokens=self.max_new_tokens, **self.method_args)
                    for k, text in zip(chunk, said):
                        out[k] = Answer(text)
        return out


class DetectorValidator:
    """A zero-shot detector of the OWL family through transformers (`Owlv2ForObjectDetection`,
    `OwlViTForObjectDetection`) answers existence questions (yes when a box of the class scores at least
    `threshold`) and count questions (the number of boxes at or above
    `threshold` after non-maximum suppression at `nms_iou`). Other questions it leaves unanswered. The
    evidence keeps the best score, the number of boxes and up to `max_boxes` boxes (x0, y0, x1, y1 in
    the processor's input pixels)."""

    name = "detector"

    def __init__(self, model, processor, threshold: float = 0.1, nms_iou: float = 0.3, query: str = "a photo of a {}",
                 max_boxes: int = 5) -> None:
        family = type(model).__name__
        if not family.startswith(("Owlv2", "OwlViT")):
            raise ValueError(f"the detector validator runs OWLv2 and OWL-ViT models; {family} is not one: pass e.g. "
                             "google/owlv2-base-patch16-ensemble")
        self.model, self.processor = model.eval(), processor
        self.threshold, self.nms_iou, self.query, self.max_boxes = threshold, nms_iou, query, max_boxes
        self.calls = {"images": 0}

    @classmethod
    def from_pretrained(cls, name: str, device: str = "cpu", **kwargs: Any) -> DetectorValidator:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        model = AutoModelForZeroShotObjectDetection.from_pretrained(name).to(device)
        return cls(model, AutoProcessor.from_pretrained(name), **kwargs)

    def detect(self, image, classes: list[str]) -> dict[str, dict[str, Any]]:
        """{class: {"score": best box score, "boxes": [[x0, y0, x1, y1, score], ...] kept after NMS}}."""
        import torch

        if not classes:
            return {}
        texts = [[self.query.format(c) for c in classes]]
        inputs = self.processor(text=texts, images=[image], return_tensors="pt", padding="max_length",
                                truncation=True).to(self.model.device)
        with torch.no_grad():
            out = self.model(**inputs)
        self.calls["images"] += 1
        scores = out.logits[0].float().sigmoid()  # (patches, queries)
        boxes = out.pred_boxes[0].float()  # (patches, 4): centre x, y, width, height in [0, 1]
        size = inputs["pixel_values"].shape[-1]
        xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], -1) * size
        found = {}
        for j, c in enumerate(classes):
            s = scores[:, j]
            keep = _nms(xyxy, s, self.threshold, self.nms_iou)
            found[c] = {"score": float(s.max()),
                        "boxes": [[round(v, 1) for v in xyxy[k].tolist()] + [round(float(s[k]), 3)] for k in keep]}
        return found

    def answer(self, items: list[Item], questions: list[tuple[int, Question]]) -> list[Answer | None]:
        out: list[Answer | None] = [None] * len(questions)
        by_item: dict[int, list[int]] = {}
        for k, (i, q) in enumerate(questions):
            if q.form == "yes_no" and q.kind in ("existence", "count"):
                by_item.setdefault(i, []).append(k)
        for i, ks in by_item.items():
            classes = list(dict.fromkeys(questions[k][1].cls for k in ks))
            found = self.detect(items[i].image, classes)
            for k in ks:
                q = questions[k][1]
                f = found[q.cls]
                n = len(f["boxes"])
                evidence = {"score": round(f["score"], 4), "boxes": f["boxes"][:self.max_boxes], "n_boxes": n}
                yes = n > 0 if q.kind == "existence" else n == q.value
                # the decision is the detector's own threshold's: p_yes is 1 or 0, the score is evidence
                out[k] = Answer("yes" if yes else "no", 1.0 if yes else 0.0, evidence)
        return out


def _nms(boxes, scores, threshold: float, iou: float) -> list[int]:
    """Indices of the boxes scoring at least `threshold`, best first, each overlapping no kept box by more
    than `iou` (plain greedy non-maximum suppression: no torchvision needed)."""
    order = [int(k) for k in scores.argsort(descending=True) if float(scores[k]) >= threshold]
    kept: list[int] = []
    for k in order:
        if all(_iou(boxes[k], boxes[j]) <= iou for j in kept):
            kept.append(k)
    return kept


def _iou(a, b) -> float:
    x0, y0 = max(float(a[0]), float(b[0])), max(float(a[1]), float(b[1]))
    x1, y1 = min(float(a[2]), float(b[2])), min(float(a[3]), float(b[3]))
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = (float(a[2]) - float(a[0])) * (float(a[3]) - float(a[1])) + (float(b[2]) - float(b[0])) * (
        float(b[3]) - float(b[1])) - inter
    return inter / area if area > 0 else 0.0


__all__ = ["DetectorValidator", "SelfValidator"]
