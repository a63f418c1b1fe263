"""Published benchmarks on real images: POPE, CHAIR, AMBER and MME (hallucination subsets).

Each is a task (see `base.py`), like the world's: `samples()` lists what to run, with the image as
a path into the folder the user passes (the runner loads it and records a missing or corrupt image
as an error for that sample); `request()` says what to ask the model, `record()` keeps the answer;
`score()` calls the official-parity metric in `halluscope.metrics`.

Question files: POPE's COCO files ship with the package (MIT, from RUCAIBox/POPE output/coco);
CHAIR needs COCO ground truth (annotation files or an image -> objects JSON), AMBER its data
folder and MME its questions, all passed by the user.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import metrics
from .base import Request, TaskBase, generate, yes_no

DATA = Path(__file__).with_name("data")
POPE_FILES = {split: DATA / "pope" / f"coco_pope_{split}.json" for split in ("random", "popular", "adversarial")}
DESCRIBE = "Please describe this image in detail."  # LLaVA-1.5 / OPERA's CHAIR prompt


def _require(path: str | os.PathLike | None, what: str, option: str) -> Path:
    if path is None:
        raise ValueError(f"{what}: pass {option}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what}: {str(p)!r} does not exist; check {option}")
    return p


@dataclass
class POPE(TaskBase):
    """POPE (Li et al., EMNLP 2023) on COCO val2014: `split` names a packaged question file, or
    `questions` is any POPE file (the legacy 2,910-line one too). Answers are matched to labels by
    question_id; `parser` names the answer parser applied to generated text."""

    split: str = "adversarial"
    images: str | None = None
    questions: str | None = None
    mode: str = "score"
    parser: str = "official"

    @property
    def name(self) -> str:
        return f"pope:{self.split}"

    def samples(self) -> list[dict[str, Any]]:
        if self.questions is None and self.split not in POPE_FILES:
            raise ValueError(f"unknown POPE split {self.split!r}; use {sorted(POPE_FILES)} or pass a question file")
        folder = _require(self.images, "POPE needs the COCO val2014 images", "--images DIR")
        rows = metrics.load_pope_questions(self.questions or POPE_FILES[self.split])
        return [{"id": r["question_id"], "question_id": r["question_id"], "image": str(folder / r["image"]),
                 "text": r["text"], "label": r["label"]} for r in rows]

    def request(self, sample: dict[str, Any]) -> Request:
        return yes_no(sample["text"], self.mode)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {"id": sample["id"], "question_id": sample["question_id"], "label": sample["label"], **answer}

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        preds = {r["question_id"]: r.get("raw", r["prediction"]) for r in records}
        return metrics.pope(preds, {r["question_id"]: r["label"] for r in records}, parser=self.parser)


@dataclass
class CHAIR(TaskBase):
    """CHAIR (Rohrbach et al., EMNLP 2018) on COCO images: captions from DESCRIBE, scored against
    `gt`: an image_id -> objects JSON, or a folder with COCO's instances_val2014.json and
    captions_val2014.json (the objects CHAIR builds from both). Images are
    `images/COCO_val2014_{image_id:012d}.jpg` unless `filename` says otherwise."""

    gt: str | None = None
    images: str | None = None
    prompt: str = DESCRIBE
    max_new_tokens: int = 512
    parity: bool = True
    filename: str = "COCO_val2014_{image_id:012d}.jpg"

    name = "chair"

    def ground_truth(self) -> dict[str, list[str]]:
        if not hasattr(self, "_gt"):
            gt = _require(self.gt, "CHAIR needs COCO ground truth",
                          "--data (an image->objects JSON or a COCO annotations folder)")
            if gt.is_dir():
                self._gt = metrics.coco_gt_objects(gt / "instances_val2014.json", gt / "captions_val2014.json",
                                                   parity=self.parity)
            else:
                self._gt = metrics.load_gt_objects(gt)
        return self._gt

    def samples(self) -> list[dict[str, Any]]:
        folder = _require(self.images, "CHAIR needs the COCO images", "--images DIR")
        return [{"id": i, "image": str(folder / self.filename.format(image_id=int(i)))}
                for i in sorted(self.ground_truth(), key=int)]

    def request(self, sample: dict[str, Any]) -> Request:
        return generate(self.prompt, self.max_new_tokens)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {"id": sample["id"], "image_id": sample["id"], "caption": answer["text"]}

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        out = metrics.chair(records, self.ground_truth(), parity=self.parity)
        return {k: v for k, v in out.items() if k != "per_sample"}


AMBER_QUERIES = {"generative": "query_generative.json", "discriminative": "query_discriminative.json",
                 "existence": "query_discriminative-existence.json", "attribute": "query_discriminative-attribute.json",
                 "relation": "query_discriminative-relation.json", "all": "query_all.json"}


@dataclass
class AMBER(TaskBase):
    """AMBER (Wang et al., 2023): `data` is AMBER's data folder (annotations.json and the query
    files); generative queries are answered by captions, discriminative ones by yes/no."""

    kind: str = "all"
    data: str | None = None
    images: str | None = None
    mode: str = "score"
    max_new_tokens: int = 512

    @property
    def name(self) -> str:
        return f"amber:{self.kind}"

    def samples(self) -> list[dict[str, Any]]:
        if self.kind not in AMBER_QUERIES:
            raise ValueError(f"unknown AMBER subset {self.kind!r}; use one of {sorted(AMBER_QUERIES)}")
        data = _require(self.data, "AMBER needs its data folder (annotations.json, query_*.json)", "--data DIR")
        folder = _require(self.images, "AMBER needs its images", "--images DIR")
        queries = json.loads(_require(data / AMBER_QUERIES[self.kind], "AMBER query file", "--data DIR").read_text())
        return [{"id": q["id"], "image": str(folder / q["image"]), "query": q["query"]} for q in queries]

    def request(self, sample: dict[str, Any]) -> Request:
        if _is_yes_no(sample["query"]):
            return yes_no(sample["query"], self.mode)
        return generate(sample["query"], self.max_new_tokens)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {"id": sample["id"], "response": _response(answer)}

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        annotations = _require(self.data, "AMBER", "--data DIR") / "annotations.json"
        return metrics.amber(records, annotations=annotations)


def _is_yes_no(query: str) -> bool:
    return not query.startswith("Describe")


def _response(answer: dict[str, Any]) -> str:
    """The text AMBER's and MME's scorers read: generated text as it is; a scored yes/no as exactly
    "Yes" / "No"."""
    if "text" in answer:
        return answer["text"]
    return answer.get("raw", answer["prediction"].capitalize())


@dataclass
class MME(TaskBase):
    """MME's hallucination subsets (existence, count, position, color): `data` is the subtask's
    question file in MME's eval-tool format (image, question, answer tab-separated), or its
    release folder (`<image>.txt` files of question/answer lines beside the images)."""

    subtask: str = "existence"
    data: str | None = None
    images: str | None = None
    mode: str = "score"

    @property
    def name(self) -> str:
        return f"mme:{self.subtask}"

    def _rows(self) -> list[tuple[str, str, str]]:
        data = _require(self.data, f"MME {self.subtask} needs its questions", "--data FILE_OR_DIR")
        if data.is_dir():
            rows = []
            for txt in sorted(data.rglob("*.txt")):
                found = (p for p in txt.parent.parent.rglob(txt.stem + ".*") if p.suffix.lower() in (".jpg", ".png"))
                image = next(found, txt.with_suffix(".jpg"))
                rows += [(image.name, *line.split("\t")[:2]) for line in txt.read_text().splitlines() if line.strip()]
            return rows
        return [tuple(line.split("\t")[:3]) for line in data.read_text().splitlines() if line.strip()]

    def samples(self) -> list[dict[str, Any]]:
        if self.subtask not in metrics.MME_HALLUCINATION_SUBTASKS:
            raise ValueError(f"unknown MME subtask {self.subtask!r}; use one of {metrics.MME_HALLUCINATION_SUBTASKS}")
        folder = _require(self.images, f"MME {self.subtask} needs its images", "--images DIR")
        return [{"id": f"{image}#{question}", "image": str(folder / image), "image_name": image,
                 "question": question, "answer": answer} for image, question, answer in self._rows()]

    def request(self, sample: dict[str, Any]) -> Request:
        return yes_no(sample["question"], self.mode)

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {"id": sample["id"], "image": sample["image_name"], "question": sample["question"],
                "answer": sample["answer"], "response": _response(answer)}

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return metrics.mme(records)
