"""Claims: what a caption in the world's grammar asserts, each judged against the scene's exact truth.

A caption of the world's grammar (`language`) makes four kinds of claims:

- object: a class is in the image ("a fork"); one claim per distinct class named anywhere in the
  caption (a class named three times is one claim), spanning its first mention;
- attribute: an adjective of a noun phrase, colour ("red") or size ("small"); true when at least
  min(n, count) of the class's objects have it (n: the phrase's number);
- count: the number of a class's objects, said by the determiners of its noun phrases ("a", "two");
  one claim per class the list names, stating the sum over its phrases, so a repeated phrase ("a red
  clock and a red clock") claims two clocks. Its span is the class's only phrase's determiner, or, for
  a repeat, the whole repeated phrase;
- relation: a sentence "the A is REL the B."; true when an object of A is REL an object of B
  (`scene.relation`). A class related to itself is false whatever the scene ("self"), and so is a
  relation with an absent class ("absent"). The sentence of the two objects' places before it ("one three ,
  four two .") is the model's working, not a claim.

Attribute and count claims about a class that is not in the image are not made: the object claim
already says it is false. Parsing is lenient: a sentence or phrase outside the grammar is skipped
(and listed by `parse_claims` as unparsed), so a model's broken caption still yields the claims it
makes. Every claim carries its character span in the caption, for highlighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import WorldConfig
from .glyphs import CLASSES, COLORS, PLURALS
from .language import NUMBERS, is_place_sentence, parse_place, word_spans
from .scene import RELATIONS, Scene, relation

CLAIM_KINDS = ("object", "attribute", "count", "relation")

_COUNT_WORDS = {"a": 1, "an": 1, **{w: i for i, w in enumerate(NUMBERS)}}
_NOUNS = {c: c for c in CLASSES} | {PLURALS[c]: c for c in CLASSES}
_RELATION_WORDS = {tuple(r.split()): r for r in RELATIONS}


@dataclass
class Claim:
    """One claim of a caption. `span` is [start, end) in characters of the caption; `true` its verdict
    (None until judged); `reason` why it is false ("absent", "wrong", "self", "repeat"); `prior` whether
    its value is the world's prior for the class (the usual colour, count or side), when it has one."""

    kind: str
    text: str
    span: tuple[int, int]
    cls: str
    value: Any = None  # attribute: the word; count: the number; relation: (relation, other class)
    attribute: str | None = None  # "color" or "size" for an attribute claim
    n: int = 1  # attribute: the number of its phrase ("two red cups": 2)
    repeat: bool = False  # count: the class is named by more than one phrase
    true: bool | None = None
    reason: str | None = None
    prior: bool | None = None
    breaks_bias: bool = False  # about the item with which the image breaks a bias (its `breaks_bias` tags)
    # relation: the cells (row, col) of its two objects as the place sentence just before it says them, if one does
    places: tuple[tuple[int, int], tuple[int, int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "text": self.text, "span": list(self.span), "true": self.true, "class": self.cls,
             "breaks_bias": self.breaks_bias}
        if self.kind == "attribute":
            d |= {"attribute": self.attribute, "value": self.value}
        elif self.kind == "count":
            d |= {"value": self.value, "repeat": self.repeat}
        elif self.kind == "relation":
            d |= {"relation": self.value[0], "other": self.value[1]}
            if self.places is not None:
                d["places"] = [list(cell) for cell in self.places]
        if self.reason is not None:
            d["reason"] = self.reason
        if self.prior is not None:
            d["prior"] = self.prior
        return d


@dataclass
class _Phrase:
    cls: str
    n: int
    det: tuple[int, int]  # span of the determiner
    noun: tuple[int, int]
    adjectives: list[tuple[str, tuple[int, int]]] = field(default_factory=list)

    @property
    def span(self) -> tuple[int, int]:
        return self.det[0], self.noun[1]


@dataclass
class ParsedCaption:
    """The claims of a caption before judgement, and the spans of what could not be read."""

    claims: list[Claim]
    unparsed: list[tuple[int, int]]


def _sentences(words):
    """Sentences as lists of (word, start, end), without their final '.'; an unfinished last one kept."""
    out, current = [], []
    for w in words:
        if w[0] == ".":
            out.append(current)
            current = []
        else:
            current.append(w)
    if current:
        out.append(current)
    return [s for s in out if s]


def _phrase(chunk) -> _Phrase | None:
    """[determiner] adjective* noun, leniently: the noun is the chunk's last word, the number its
    first word when that is a count word (else one), the adjectives the colour and size words between."""
    if not chunk or chunk[-1][0] not in _NOUNS:
        return None
    cls = _NOUNS[chunk[-1][0]]
    first = chunk[0]
    if first[0] in _COUNT_WORDS and len(chunk) > 1:
        n, det, middle = _COUNT_WORDS[first[0]], (first[1], first[2]), chunk[1:-1]
    else:
        n, det, middle = (2 if chunk[-1][0] != cls else 1), (chunk[-1][1], chunk[-1][1]), chunk[:-1]
    adjectives = [(w, (s, e)) for w, s, e in middle if w in COLORS or w == "small"]
    return _Phrase(cls, n, det, (chunk[-1][1], chunk[-1][2]), adjectives)


def _listing(words) -> tuple[list[_Phrase], list[tuple[int, int]]]:
    chunks, current = [], []
    for w in words:
        if w[0] in (",", "and"):
            chunks.append(current)
            current = []
        else:
            current.append(w)
    chunks.append(current)
    phrases, unparsed = [], []
    for c in filter(None, chunks):
        p = _phrase(c)
        if p is None:
            unparsed.append((c[0][1], c[-1][2]))
        else:
            phrases.append(p)
    return phrases, unparsed


def _relation(sentence) -> tuple[str, str, str, tuple[int, int], tuple[int, int]] | None:
    """(a, relation, b, span of a, span of b) of 'the A is REL the B', or None."""
    w = [x[0] for x in sentence]
    if len(w) < 6 or w[0] != "the" or w[2] != "is" or w[-2] != "the" or w[1] not in _NOUNS or w[-1] not in _NOUNS:
        return None
    rel = _RELATION_WORDS.get(tuple(w[3:-2]))
    if rel is None:
        return None
    return _NOUNS[w[1]], rel, _NOUNS[w[-1]], sentence[1][1:], sentence[-1][1:]


def parse_claims(caption: str) -> ParsedCaption:
    """The claims `caption` makes, unjudged (see the module docstring)."""
    sentences = _sentences(word_spans(caption))
    claims: list[Claim] = []
    unparsed: list[tuple[int, int]] = []
    first_mention: dict[str, tuple[int, int]] = {}

    def text(span):
        return caption[span[0]:span[1]]

    by_class: dict[str, list[_Phrase]] = {}
    places = None
    for s in sentences:
        said_before, places = places, None  # a place sentence is for the sentence right after it only
        words = [x[0] for x in s]
        rel = _relation(s)
        if rel is not None:
            a, r, b, sa, sb = rel
            span = (s[0][1], s[-1][2])
            first_mention.setdefault(a, sa)
            first_mention.setdefault(b, sb)
            claims.append(Claim("relation", text(span), span, a, (r, b), places=said_before))
            continue
        if is_place_sentence(words):  # where a relation's two objects are: said, not claimed
            places = parse_place(" ".join(words[:2])), parse_place(" ".join(words[3:]))
            continue
        if words[:3] == ["the", "image", "shows"]:
            listed = s[3:]
        elif len(words) >= 4 and words[2:4] == ["scene", "with"] and words[0] in ("a", "an"):
            listed = s[4:]
        else:
            unparsed.append((s[0][1], s[-1][2]))
            continue
        phrases, bad = _listing(listed)
        unparsed += bad
        for p in phrases:
            first_mention.setdefault(p.cls, p.noun)
            by_class.setdefault(p.cls, []).append(p)
            for word, span in p.adjectives:
                claims.append(Claim("attribute", word, span, p.cls, word, "color" if word in COLORS else "size", p.n))
    for cls, phrases in by_class.items():
        repeat = len(phrases) > 1
        span = phrases[-1].span if repeat else phrases[0].det
        if span[0] == span[1]:  # a bare plural with no determiner: the noun says "more than one"
            span = phrases[0].noun
        claims.append(Claim("count", text(span), span, cls, sum(p.n for p in phrases), repeat=repeat))
    objects = [Claim("object", text(span), span, cls) for cls, span in first_mention.items()]
    order = {k: i for i, k in enumerate(CLAIM_KINDS)}
    return ParsedCaption(sorted(objects + claims, key=lambda c: (c.span[0], order[c.kind])), unparsed)


def judge(claims: list[Claim], scene: Scene, config: WorldConfig | None = None) -> list[Claim]:
    """`claims` with their verdicts against `scene` (in place, and returned), attribute and count
    claims about absent classes dropped. `config` marks which claimed values are the world's priors."""
    counts = scene.counts()
    by_class: dict[str, list] = {}
    for o in scene.objects:
        by_class.setdefault(o.cls, []).append(o)
    color_priors = config.color_priors if config is not None else {}
    out = []
    for c in claims:
        present = c.cls in counts
        if c.kind == "object":
            c.true = present
        elif not present and c.kind in ("attribute", "count"):
            continue
        elif c.kind == "attribute":
            objs = by_class[c.cls]
            has = sum((o.color == c.value) if c.attribute == "color" else (o.size == "small") for o in objs)
            c.true = has >= max(1, min(c.n, len(objs)))
            if c.attribute == "color" and c.cls in color_priors:
                c.prior = c.value == color_priors[c.cls]
        elif c.kind == "count":
            c.true = c.value == counts[c.cls]
            if config is not None and config.usual_count(c.cls) is not None:
                c.prior = c.value == config.usual_count(c.cls)
        elif c.kind == "relation":
            rel, other = c.value
            if config is not None and config.usual_relation(c.cls, other) is not None:
                c.prior = rel == config.usual_relation(c.cls, other)
            if c.cls == other:
                c.true, c.reason = False, "self"
            elif not present or other not in counts:
                c.true, c.reason = False, "absent"
            else:
                c.true = any(relation(a, b) == rel for a in by_class[c.cls] for b in by_class[other])
        if c.true is False and c.reason is None:
            c.reason = "absent" if not present else ("repeat" if c.kind == "count" and c.repeat else "wrong")
        out.append(c)
    claims[:] = out
    for c in claims:
        c.breaks_bias = about_broken_bias(c, scene.breaks_bias, config)
    return claims


def about_broken_bias(claim: Claim, breaks_bias: list[str], config: WorldConfig | None = None) -> bool:
    """Whether `claim` is about what the image's `breaks_bias` tags broke: an object claim naming the
    absent partner of a lone pair member ("lone:X"), a colour claim about the class in an unusual
    colour ("color:X"), a count claim about a class without its usual number ("count:X"), a relation
    claim between the pair placed off its usual sides ("side:X", X and its spatial prior's partner)."""
    partners = config.partners() if config is not None else {}
    for tag in breaks_bias:
        kind, _, cls = tag.partition(":")
        if kind == "lone" and claim.kind == "object" and partners.get(cls) == claim.cls:
            return True
        if kind == "color" and claim.kind == "attribute" and claim.attribute == "color" and claim.cls == cls:
            return True
        if kind == "count" and claim.kind == "count" and claim.cls == cls:
            return True
        if kind == "side" and claim.kind == "relation" and config is not None:
            pair = {claim.cls, claim.value[1]}
            if any(pair == {a, b} and cls == a for a, b in config.spatial_pairs()):
                return True
    return False


def caption_claims(caption: str, scene: Scene, config: WorldConfig | None = None) -> list[Claim]:
    """Every claim of `caption`, judged against `scene` (see the module docstring)."""
    return judge(parse_claims(caption).claims, scene, config)


def repeats_a_phrase(caption: str) -> bool:
    """Whether the caption's object list names a class in more than one phrase (the grammar never does)."""
    return any(c.kind == "count" and c.repeat for c in parse_claims(caption).claims)


__all__ = ["CLAIM_KINDS", "Claim", "ParsedCaption", "about_broken_bias", "caption_claims", "judge", "parse_claims",
           "repeats_a_phrase"]
