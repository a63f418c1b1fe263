"""AMBER (Wang et al., "An LLM-free Multi-dimensional Benchmark for MLLMs Hallucination Evaluation", 2023).

Generative task (descriptions): the nouns of a response that are AMBER object words count as
mentions; one that is neither a safe word nor an annotated object (or a near-synonym of one) is a
hallucination. CHAIR = hallucinated / mentioned nouns, Cover = annotated objects mentioned / annotated
objects, Hal = share of responses with a hallucination, Cog = annotated likely-hallucination objects
mentioned / those objects. Discriminative task (yes/no questions on existence, attribute, relation):
accuracy, and precision, recall, F1 with 'No' as the positive class. AMBER score = (1 - CHAIR + F1) / 2.

This follows AMBER's inference.py step by step, quirks included (a safe word still counts in CHAIR's
denominator; a repeated annotated object can be covered only once). Where it differs, it says so:
  - the near-synonym check (spaCy en_core_web_lg vector similarity > 0.8) runs only when a
    `similarity` function is given (`spacy_similarity()` builds the official one); without it only
    exact matches count, which can only raise CHAIR and lower Cover and Cog;
  - values are exact fractions; inference.py prints percentages rounded to 0.1 and computes F1
    from the rounded precision and recall with 1e-4 (existence: 1e-3) added to the denominator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ._amber_data import RELATION, SAFE_WORDS
from ._pope import POPE_PARSERS
from ._text import backend

ANNOTATIONS_ENV = "HALLUSCOPE_AMBER_ANNOTATIONS"
ATTRIBUTE_TYPES = {"discriminative-attribute-state": "state", "discriminative-attribute-number": "number",
                   "discriminative-attribute-action": "action"}
EXISTENCE_TYPE = "discriminative-hallucination"


def _amber_exact(text: str) -> str:
    return "yes" if text == "Yes" else "no" if text == "No" else "other"


# "official": AMBER compares the response with exactly "Yes" / "No"; the POPE parsers are offered
# for free-text answers.
AMBER_PARSERS: dict[str, Callable[[str], str]] = {
    "official": _amber_exact, "pope": POPE_PARSERS["official"], "opera": POPE_PARSERS["opera"],
    "lmms_eval": POPE_PARSERS["lmms_eval"],
}


def load_amber_annotations(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """AMBER's data/annotations.json (1.8 MB, not packaged), from `path` or from the file named by the
    HALLUSCOPE_AMBER_ANNOTATIONS environment variable."""
    path = path or os.environ.get(ANNOTATIONS_ENV)
    if not path:
        raise FileNotFoundError(
            "AMBER's annotations.json is not packaged with halluscope (1.8 MB). Get data/annotations.json from the "
            "AMBER repository (junyangwang0410/AMBER, Apache-2.0) and pass annotations=<path> "
            f"or set {ANNOTATIONS_ENV}.")
    return json.loads(Path(path).read_text(encoding="utf-8"))


def spacy_similarity(model: str = "en_core_web_lg") -> Callable[[str, str], float]:
    """The near-synonym score AMBER uses: spaCy word-vector similarity under `model` (install spaCy
    and the model yourself: pip install spacy && python -m spacy download en_core_web_lg)."""
    try:
        import spacy
    except ImportError as e:
        raise ImportError("spacy_similarity needs spaCy: pip install spacy, then python -m spacy download "
                          f"{model}") from e
    nlp = spacy.load(model)

    @cache
    def doc(word: str):
        return nlp(word)

    def similarity(a: str, b: str) -> float:
        return doc(a).similarity(doc(b))

    similarity.__name__ = f"spacy:{model}"
    return similarity


def _mark(flags: list[int], n_objects: int, j: int) -> None:
    # inference.py keeps, per annotated object, its near-synonyms (holding the object's index) then the
    # objects themselves (holding 0/1 "mentioned" flags, the last n_objects entries); a match on a
    # near-synonym sets the flag of the object it belongs to.
    start = len(flags) - n_objects
    flags[flags[j] + start if j < start else j] = 1


def _generative(nouns: list[str], truth: Sequence[str], hallu: Sequence[str], relation: Mapping[str, list[str]],
                words: set[str], safe: set[str], similar: Callable[[str, str], bool] | None) -> tuple[int, ...]:
    nouns = [n for n in nouns if n in words]
    safe_words, safe_flags, ha_words, ha_flags = [], [], [], []
    for dst, flags, objects in ((safe_words, safe_flags, truth), (ha_words, ha_flags, hallu)):
        for idx, obj in enumerate(objects):
            if obj not in relation:
                raise ValueError(f"AMBER object {obj!r} is not in the relation table")
            dst += relation[obj]
            flags += [idx] * len(relation[obj])
        dst += objects
        flags += [0] * len(objects)
    hallucinated = [0] * len(nouns)
    for i, noun in enumerate(nouns):
        if noun in safe:
            continue
        if noun in safe_words:
            _mark(safe_flags, len(truth), safe_words.index(noun))
            continue
        if noun in ha_words:
            _mark(ha_flags, len(hallu), ha_words.index(noun))
        if similar is not None:
            j = next((j for j, w in enumerate(ha_words) if similar(noun, w)), None)
            if j is not None:
                _mark(ha_flags, len(hallu), j)
            j = next((j for j, w in enumerate(safe_words) if similar(noun, w)), None)
            if j is not None:
                _mark(safe_flags, len(truth), j)
                continue
        hallucinated[i] = 1
    cover = safe_flags[len(safe_flags) - len(truth):]
    cog = ha_flags[len(ha_flags) - len(hallu):]
    return sum(hallucinated), len(hallucinated), sum(cover), len(cover), sum(cog), len(cog)


def _binary(pairs: list[tuple[str, str]]) -> dict[str, Any] | None:
    """pairs of (truth, parsed answer); 'no' is the positive class, as in AMBER."""
    if not pairs:
        return None
    n = len(pairs)
    correct = sum(t == a for t, a in pairs)
    ans_no = sum(a == "no" for _, a in pairs)
    truth_no = sum(t == "no" for t, _ in pairs)
    hit = sum(t == "no" and a == "no" for t, a in pairs)
    precision = hit / ans_no if ans_no else 0.0
    recall = hit / truth_no if truth_no else 0.0
    return {"accuracy": correct / n, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0, "n": n}


def amber(responses: Iterable[Mapping[str, Any]], annotations: str | os.PathLike | Sequence[Mapping] | None = None, *,
          relation: Mapping[str, list[str]] | None = None, safe_words: Iterable[str] | None = None,
          similarity: Callable[[str, str], float] | None = None, similarity_threshold: float = 0.8,
          parity: bool = True, parser: str = "official") -> dict[str, Any]:
    """AMBER metrics on whichever ids are given.

    responses: [{"id", "response"}]. annotations: AMBER's annotations (a path, the loaded list, or
    None for the file named by HALLUSCOPE_AMBER_ANNOTATIONS). relation, safe_words: AMBER's packaged
    lists by default. similarity: a word-pair score (see `spacy_similarity`), None to use exact
    matches only. parity: NLTK noun extraction (True, as AMBER) or the built-in approximation.
    parser: how discriminative answers map to yes/no ("official": exactly "Yes"/"No", as AMBER).

    Returns chair, cover, hal, cog (None without generative ids), accuracy, precision, recall, f1 over
    all discriminative ids and per dimension (existence, attribute with state/number/action,
    relation; None when absent), amber_score = (1 - chair + f1) / 2 (None unless both tasks are
    present), counts and the settings used.
    """
    if parser not in AMBER_PARSERS:
        raise ValueError(f"unknown AMBER parser {parser!r}; choose one of {sorted(AMBER_PARSERS)}")
    parse = AMBER_PARSERS[parser]
    if annotations is None or isinstance(annotations, str | os.PathLike):
        annotations = load_amber_annotations(annotations)
    truth_by_id = {int(a["id"]): a for a in annotations}
    relation = RELATION if relation is None else relation
    words = {w for k, v in relation.items() for w in (k, *v)}
    safe = set(SAFE_WORDS if safe_words is None else safe_words)
    similar = None if similarity is None else (lambda a, b: similarity(a, b) > similarity_threshold)

    responses = list(responses)
    ids = [int(r["id"]) for r in responses]
    if len(set(ids)) != len(ids):
        raise ValueError("repeated AMBER ids in responses")
    unknown = sorted(set(ids) - truth_by_id.keys())
    if unknown:
        raise ValueError(f"{len(unknown)} response ids are not in the annotations: {unknown[:10]}")

    nlp = None
    gen = [0] * 6  # hallucinated, mentioned, covered, objects, cog hits, cog objects
    n_gen = n_gen_hal = 0
    groups: dict[str, list[tuple[str, str]]] = {k: [] for k in
                                                ("existence", "attribute", "state", "number", "action", "relation")}
    for i, r in zip(ids, responses):
        a = truth_by_id[i]
        if a["type"] == "generative":
            nlp = nlp or backend(parity, words)
            counts = _generative(nlp.nouns(nlp.tokens(r["response"])), a["truth"], a["hallu"], relation, words,
                                 safe, similar)
            gen = [g + c for g, c in zip(gen, counts)]
            n_gen += 1
            n_gen_hal += counts[0] > 0
            continue
        pair = (a["truth"], parse(r["response"]))
        if a["type"] == EXISTENCE_TYPE:
            groups["existence"].append(pair)
        elif a["type"] in ATTRIBUTE_TYPES:
            groups["attribute"].append(pair)
            groups[ATTRIBUTE_TYPES[a["type"]]].append(pair)
        else:  # inference.py counts every other type ('discriminative-relation', 'relation') as relation
            groups["relation"].append(pair)
    overall = _binary(groups["existence"] + groups["attribute"] + groups["relation"])
    chair_v = gen[0] / gen[1] if gen[1] else (0.0 if n_gen else None)
    out: dict[str, Any] = {
        "chair": chair_v,
        "cover": (gen[2] / gen[3] if gen[3] else 0.0) if n_gen else None,
        "hal": n_gen_hal / n_gen if n_gen else None,
        "cog": (gen[4] / gen[5] if gen[5] else 0.0) if n_gen else None,
        "n_generative": n_gen,
        **({k: overall[k] for k in ("accuracy", "precision", "recall", "f1")} if overall else
           dict.fromkeys(("accuracy", "precision", "recall", "f1"))),
        "n_discriminative": overall["n"] if overall else 0,
        **{k: _binary(v) for k, v in groups.items()},
        "amber_score": (1 - chair_v + overall["f1"]) / 2 if chair_v is not None and overall else None,
        "parser": parser,
        "backend": nlp.name if nlp else None,
        "similarity": getattr(similarity, "__name__", "custom") if similarity else None,
    }
    return out
