"""Rule-based hallucinated mirrors of real captions: word rules over the 80 COCO categories, with
the built-in co-occurrence table or one computed from the ground-truth objects you pass."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import coco_synonyms
from ..world import article
from .base import Hallucination, check_kinds
from .cooccurrence import COCO_COOCCURRENCE, cooccurrence_table

COLOR_WORDS = ("white", "black", "red", "blue", "green", "yellow", "brown", "pink", "purple", "gray", "grey",
               "silver", "orange")
SIZE_OPPOSITES = {"big": "small", "large": "small", "small": "large", "little": "big", "tall": "short",
                  "short": "tall", "long": "short", "huge": "tiny", "tiny": "huge"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
RELATION_OPPOSITES = {"left": "right", "right": "left", "above": "below", "below": "above", "under": "above",
                      "underneath": "on top of", "beneath": "above", "on top of": "underneath",
                      "in front of": "behind", "behind": "in front of", "inside": "outside", "outside": "inside",
                      "next to": "far from", "near": "far from"}
_WORDS = re.compile(r"[A-Za-z]+")


def _pluralize(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    irregular = {"person": "people", "knife": "knives", "mouse": "mice", "skis": "skis", "sheep": "sheep"}
    if last in irregular:
        plural = irregular[last]
    elif last.endswith(("s", "sh", "ch", "x", "z")):
        plural = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


def _singulars(word: str) -> list[str]:
    out = [word]
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("ves"):
        out += [word[:-3] + "fe", word[:-3] + "f"]
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


@dataclass
class _Mention:
    start: int  # character span of the object words in the caption
    end: int
    category: str
    plural: bool


class RuleHallucinator:
    """Rule-based hallucinated mirrors of real captions, over the COCO categories.

    `hallucinator(caption, objects=None, kinds=None)` returns one `Hallucination` per kind that
    applies: objects are found with the COCO synonym list CHAIR uses; an object is swapped for its
    most associated absent category, a colour or size word for another, a number for a neighbour,
    a spatial word for its opposite, or an absent associated object is added after a mentioned one.
    `objects`: the image's ground-truth categories, so that swapped-in and added objects are
    really absent (without them, only the objects the caption mentions count as present).
    `cooccurrence`: category -> associated categories (default: `COCO_COOCCURRENCE`); or pass
    `gt_objects` (image id -> categories) to compute one with `cooccurrence_table`.
    """

    def __init__(self, cooccurrence: Mapping[str, Sequence[str]] | None = None,
                 gt_objects: Mapping[Any, Iterable[str]] | None = None, synonyms=None, seed: int = 0) -> None:
        if cooccurrence is not None and gt_objects is not None:
            raise ValueError("pass cooccurrence or gt_objects, not both")
        self.cooccurrence = dict(cooccurrence or (cooccurrence_table(gt_objects) if gt_objects else COCO_COOCCURRENCE))
        lines = coco_synonyms() if synonyms is None else synonyms
        self.word_to_category = {w.strip(): line[0] for line in lines for w in line if w.strip()}
        self.max_words = max(len(w.split()) for w in self.word_to_category)
        self.rng = np.random.default_rng(seed)

    def mentions(self, caption: str) -> list[_Mention]:
        """The object mentions of a caption, in order (longest match first: 'hot dog' before 'dog')."""
        words = [(m.start(), m.end(), m.group().lower()) for m in _WORDS.finditer(caption)]
        out, i = [], 0
        while i < len(words):
            for k in range(min(self.max_words, len(words) - i), 0, -1):
                phrase = " ".join(w for _, _, w in words[i:i + k])
                head = phrase.rpartition(" ")[0]
                found = None
                for form in _singulars(words[i + k - 1][2]):
                    candidate = f"{head} {form}" if head else form
                    if candidate in self.word_to_category:
                        found = (self.word_to_category[candidate], candidate != phrase)
                        break
                if found:
                    out.append(_Mention(words[i][0], words[i + k - 1][1], found[0], found[1]))
                    i += k
                    break
            else:
                i += 1
        return out

    def __call__(self, caption: str, objects: Iterable[str] | None = None,
                 kinds: Iterable[str] | None = None) -> list[Hallucination]:
        mentions = self.mentions(caption)
        present = set(objects) if objects is not None else set()
        present |= {m.category for m in mentions}
        out = []
        for kind in check_kinds(kinds):
            made = getattr(self, f"_{kind}")(caption, mentions, present)
            if made is not None:
                text, target, changed = made
                out.append(Hallucination(text, kind, caption, target, changed, "rules"))
        return out

    # -- one rule per kind: (new caption, target, (true, said)) or None
    def _associated_absent(self, category: str, present: set[str]) -> str | None:
        return next((c for c in self.cooccurrence.get(category, ()) if c not in present), None)

    def _object(self, caption, mentions, present):
        options = [(m, new) for m in mentions if (new := self._associated_absent(m.category, present))]
        if not options:
            return None
        m, new = options[int(self.rng.integers(len(options)))]
        return (_replace_noun(caption, m.start, m.end, _pluralize(new) if m.plural else new),
                m.category, (m.category, new))

    def _attribute(self, caption, mentions, present):
        options = []
        for w in _WORDS.finditer(caption):
            low = w.group().lower()
            if low in COLOR_WORDS[:-1] or low in SIZE_OPPOSITES:  # 'orange' is also a fruit: never a source
                target = _described(caption, w.end(), mentions)
                if target is not None:
                    options.append((w, low, target.category))
        if not options:
            return None
        w, low, target = options[int(self.rng.integers(len(options)))]
        if low in SIZE_OPPOSITES:
            new = SIZE_OPPOSITES[low]
        else:
            colors = [c for c in COLOR_WORDS if c not in (low, "grey" if low == "gray" else "gray")]
            new = colors[int(self.rng.integers(len(colors)))]
        return _splice(caption, w.start(), w.end(), _match_case(w.group(), new)), target, (low, new)

    def _count(self, caption, mentions, present):
        options = []
        for w in _WORDS.finditer(caption):
            low = w.group().lower()
            target = _described(caption, w.end(), mentions)
            if low in NUMBER_WORDS[2:] and target is not None and target.plural:
                options.append((w, NUMBER_WORDS.index(low), target.category))
        if not options:
            return None
        w, n, target = options[int(self.rng.integers(len(options)))]
        if n == 2 or (n < 10 and self.rng.random() < 0.5):  # stay plural: two -> three, never one
            new = n + 1
        else:
            new = n - 1
        word = NUMBER_WORDS[new]
        return _splice(caption, w.start(), w.end(), _match_case(w.group(), word)), target, (NUMBER_WORDS[n], word)

    def _relation(self, caption, mentions, present):
        low = caption.lower()
        options = []
        for phrase, opposite in RELATION_OPPOSITES.items():
            for m in re.finditer(rf"\b{phrase}\b", low):
                options.append((m.start(), m.end(), phrase, opposite))
        # keep the longest phrase where phrases overlap ('on top of' over nothing shorter, 'in front of')
        options = [o for o in options if not any(p[0] <= o[0] and o[1] <= p[1] and p != o for p in options)]
        if not options or len(mentions) < 2:
            return None
        start, end, phrase, opposite = options[int(self.rng.integers(len(options)))]
        target = next((m.category for m in reversed(mentions) if m.end <= start), mentions[0].category)
        return _splice(caption, start, end, _match_case(caption[start:end], opposite)), target, (phrase, opposite)

    def _added(self, caption, mentions, present):
        options = [(m, new) for m in mentions if (new := self._associated_absent(m.category, present))]
        if not options:
            return None
        m, new = options[int(self.rng.integers(len(options)))]
        return _splice(caption, m.end, m.end, f" and {article(new)} {new}"), new, ("", new)


def _described(caption: str, end: int, mentions: list[_Mention]) -> _Mention | None:
    """The object a word ending at `end` qualifies: the next mention, at most one word later
    ('red car', 'large wooden bench'), else None ('red shirt ... a horse')."""
    nxt = next((m for m in mentions if m.start >= end), None)
    if nxt is None or len(_WORDS.findall(caption[end:nxt.start])) > 1 or re.search(r"[,.;:]", caption[end:nxt.start]):
        return None
    return nxt


def _splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _match_case(old: str, new: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _replace_noun(caption: str, start: int, end: int, new: str) -> str:
    """Replace the noun at [start, end) and make a preceding 'a'/'an' agree with it."""
    text = _splice(caption, start, end, _match_case(caption[start:end], new))
    before = re.search(r"\b(a|an|A|An)(\s+)(\w+\s+)?$", text[:start])
    if before and before.group(3) is None:  # article right before the noun
        agreed = article(new)
        agreed = agreed.capitalize() if before.group(1)[0].isupper() else agreed
        text = text[:before.start(1)] + agreed + text[before.end(1):]
    return text


__all__ = ["COLOR_WORDS", "NUMBER_WORDS", "RELATION_OPPOSITES", "SIZE_OPPOSITES", "RuleHallucinator"]
