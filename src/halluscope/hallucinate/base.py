"""What every engine returns: a `Hallucination` of one of the `KINDS`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("object", "attribute", "count", "relation", "added")


@dataclass(frozen=True)
class Hallucination:
    """A hallucinated mirror of `original`: `text` says `changed[1]` where the truth is `changed[0]`
    ("" when there is nothing in the truth, as for an added object), about object `target`."""

    text: str
    kind: str
    original: str
    target: str = ""
    changed: tuple[str, str] = ("", "")
    source: str = "world"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_kinds(kinds: Iterable[str] | None) -> tuple[str, ...]:
    """`kinds` as a tuple (all of `KINDS` for None); an unknown kind fails with the valid ones."""
    kinds = KINDS if kinds is None else tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown hallucination kind(s) {unknown}; use some of {KINDS}")
    return kinds


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A generator as given, or a new one seeded with `rng`."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


__all__ = ["KINDS", "Hallucination", "as_rng", "check_kinds", "pick"]
