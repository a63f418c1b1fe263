"""The stages on the synthetic world, where every claim has an exact verdict.

- extraction: the world's claim parser (`world.claims.parse_claims`), exact on grammatical captions and
  lenient on broken ones;
- questions: the world's own question templates (`world.language`), so the built-in model is asked in
  the words it was trained on: "Is there a fork in the image?", "Is the fork red?", "Are there two
  forks?", "Is the fork left of the cup?", and for a fix "What color is the fork?", "How many forks are
  there?";
- the oracle: answers those questions from the scene's truth (the ceiling of every later stage);
- verdicts: Woodpecker's (a refuted claim is fixed from the short answer where it gives a better value,
  else deleted; a refuted object takes its colour, number and relations with it) and LogicCheck's (an
  object whose answers do not close their loops goes);
- rewriting: edits the caption as data (`CaptionParts`) and renders it with the one grammar, so the
  corrected caption is read by the same parser and stays inside the built-in model's vocabulary.
"""

from __future__ import annotations

from typing import Any

from ..world import (
    COLORS, NUMBERS, PLURALS, QUESTION_TEMPLATES, CaptionParts, Phrase, parse_world_caption, relation, tokenize_words,
)
from ..world.claims import Claim, parse_claims
from ..world.language import RELATION_SENTENCE, YES_NO_TEMPLATES
from ..world.qa import count_question
from .stages import Answer, Item, Question, Verdict

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def parse_open(kind: str, text: str) -> str:
    """The first colour word (attribute) or number word (count; digits read as words) of a short
    answer, or "" where it has none (as world-qa reads open answers)."""
    words = tokenize_words(text)
    if kind == "count":
        words = [NUMBERS[int(w)] if w.isdigit() and int(w) < len(NUMBERS) else w for w in words]
    options = COLORS if kind == "attribute" else NUMBERS
    return next((w for w in words if w in options), "")


# ---------------------------------------------------------------------------- 1. extraction
class WorldExtractor:
    """The world's claim parser: every object, attribute (colour, size), count and relation claim."""

    def extract(self, caption: str) -> tuple[list[Claim], list[tuple[int, int]]]:
        parsed = parse_claims(caption)
        return parsed.claims, parsed.unparsed


# ---------------------------------------------------------------------------- 2. questions
def check_question(i: int, c: Claim) -> Question | None:
    """The yes/no question whose yes supports claim `c` (index `i`), in the world's templates."""
    if c.kind == "object":
        return Question(i, "existence", "yes_no", YES_NO_TEMPLATES["existence"].format(c.cls), c.cls)
    if c.kind == "attribute":
        kind = "attribute" if c.attribute == "color" else "size"
        return Question(i, kind, "yes_no", YES_NO_TEMPLATES["attribute"].format(c.cls, c.value), c.cls, c.value)
    if c.kind == "count":
        if not 0 <= c.value < len(NUMBERS):
            return None
        return Question(i, "count", "yes_no", count_question(c.cls, c.value), c.cls, c.value)
    if c.kind == "relation":
        rel, other = c.value
        return Question(i, "relation", "yes_no", YES_NO_TEMPLATES["relation"].format(c.cls, rel, other), c.cls, rel,
                        other)
    return None


def colour_question(i: int, cls: str, role: str) -> Question:
    return Question(i, "attribute", "open", QUESTION_TEMPLATES["attribute"].format(cls), cls, role=role)


def count_open_question(i: int, cls: str, role: str) -> Question:
    return Question(i, "count", "open", QUESTION_TEMPLATES["count"].format(PLURALS[cls]), cls, role=role)


def said_yes(answer: Answer | None, threshold: float) -> bool | None:
    """Whether an answer to a yes/no question is yes (p(yes) >= threshold), None without an answer."""
    if answer is None:
        return None
    if answer.p_yes is not None:
        return answer.p_yes >= threshold
    return answer.text.strip().lower() == "yes"


class WoodpeckerQuestions:
    """First a yes/no question per claim (size claims only with `check_size`); then, for each refuted
    colour, number or relation whose object was not refuted, the question that gives its fix: "What
    color is the X?", "How many Xs are there?", "Is the A <opposite> the B?"."""

    def __init__(self, threshold: float = 0.5, check_size: bool = True, fix: bool = True) -> None:
        self.threshold, self.check_size, self.fix = threshold, check_size, fix

    def first(self, claims: list[Claim]) -> list[Question]:
        out = []
        for i, c in enumerate(claims):
            q = check_question(i, c)
            if q is not None and (q.kind != "size" or self.check_size):
                out.append(q)
        return out

    def then(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Question]:
        if not self.fix:
            return []
        refuted = {q.claim for q, a in zip(questions, answers) if q.role == "check" and said_yes(a, self.threshold)
                   is False}
        gone = {claims[i].cls for i in refuted if claims[i].kind == "object"}
        out = []
        for i in sorted(refuted):
            c = claims[i]
            if c.cls in gone or (c.kind == "relation" and c.value[1] in gone):
                continue
            if c.kind == "attribute" and c.attribute == "color":
                out.append(colour_question(i, c.cls, "fix"))
            elif c.kind == "count":
                out.append(count_open_question(i, c.cls, "fix"))
            elif c.kind == "relation" and c.value[0] in OPPOSITE:
                rel, other = OPPOSITE[c.value[0]], c.value[1]
                out.append(Question(i, "relation", "yes_no", YES_NO_TEMPLATES["relation"].format(c.cls, rel, other),
                                    c.cls, rel, other, role="fix"))
        return out


class LogicCheckQuestions:
    """LogicCheckGPT's loops in the world's words. Per object claim X, first the object -> attribute
    questions "What color is the X?" and "How many Xs are there?"; then the questions that close each loop
    from the answer back to the object: "Is the X c?" and "Are there n Xs?". A real object's answers
    agree with each other; a hallucinated one's often do not."""

    def first(self, claims: list[Claim]) -> list[Question]:
        out = []
        for i, c in enumerate(claims):
            if c.kind == "object":
                out += [colour_question(i, c.cls, "loop"), count_open_question(i, c.cls, "loop")]
        return out

    def then(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Question]:
        out = []
        for q, a in zip(questions, answers):
            if a is None:
                continue
            said = parse_open(q.kind, a.text)
            if q.kind == "attribute" and said:
                out.append(Question(q.claim, "attribute", "yes_no", YES_NO_TEMPLATES["attribute"].format(q.cls, said),
                                    q.cls, said, role="close"))
            elif q.kind == "count" and said and said != "zero":
                n = NUMBERS.index(said)
                out.append(Question(q.claim, "count", "yes_no", count_question(q.cls, n), q.cls, n, role="close"))
        return out


# ---------------------------------------------------------------------------- 3. the oracle
class OracleValidator:
    """Answers every question from the scene's exact truth: the ceiling of validation.

    A colour or size question asks about every object of the class ("Is the fork red?": are all the
    forks red), as the grammar says a colour only when all share it; where the caption's number is wrong
    this is the reading its fixed phrase will have."""

    name = "oracle"

    def answer(self, items: list[Item], questions: list[tuple[int, Question]]) -> list[Answer | None]:
        out: list[Answer | None] = []
        for i, q in questions:
            scene = items[i].scene
            if scene is None:
                raise ValueError("the oracle validator answers from the world's truth; this caption has no scene "
                                 "(use validator 'self' or 'detector' on real images)")
            out.append(truth_answer(scene, q))
        return out


def truth_answer(scene, q: Question) -> Answer:
    objs = [o for o in scene.objects if o.cls == q.cls]
    if q.form == "open":
        if q.kind == "attribute":
            colours = {o.color for o in objs}
            return Answer(next(iter(colours)) if len(colours) == 1 else "")
        return Answer(NUMBERS[len(objs)] if len(objs) < len(NUMBERS) else str(len(objs)))
    if q.kind == "existence":
        yes = bool(objs)
    elif q.kind == "attribute":
        yes = bool(objs) and all(o.color == q.value for o in objs)
    elif q.kind == "size":
        yes = bool(objs) and all(o.size == "small" for o in objs)
    elif q.kind == "count":
        yes = len(objs) == q.value
    else:  # relation
        others = [o for o in scene.objects if o.cls == q.other]
        yes = q.cls != q.other and any(relation(a, b) == q.value for a in objs for b in others)
    return Answer("yes" if yes else "no", 1.0 if yes else 0.0)


# ---------------------------------------------------------------------------- 4. verdicts
def _dependents(claims: list[Claim], verdicts: list[Verdict]) -> None:
    """Claims about a refuted object go with it (its colour, number and relations)."""
    gone = {c.cls for c, v in zip(claims, verdicts) if c.kind == "object" and v.action == "delete"}
    for i, c in enumerate(claims):
        if c.kind == "object" or verdicts[i].action == "delete":
            continue
        if c.cls in gone or (c.kind == "relation" and c.value[1] in gone):
            verdicts[i] = Verdict(verdicts[i].supported, "delete", why="its object was refuted")


class WoodpeckerDecider:
    """A claim whose check is answered no is refuted (p(yes) < threshold). A refuted colour becomes the
    answered colour (deleted where the answer names none or the same), a refuted number the answered one
    (kept where the answer gives no other number of at least one), a refuted relation its opposite where
    that is answered yes (else deleted); a refuted object or size is deleted."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def decide(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Verdict]:
        checks = {q.claim: a for q, a in zip(questions, answers) if q.role == "check"}
        fixes = {q.claim: (q, a) for q, a in zip(questions, answers) if q.role == "fix"}
        verdicts = []
        for i, c in enumerate(claims):
            yes = said_yes(checks.get(i), self.threshold)
            if yes is None:
                verdicts.append(Verdict(None, "keep", why="not checked"))
            elif yes:
                verdicts.append(Verdict(True, "keep", why="answered yes"))
            else:
                verdicts.append(self._refuted(c, fixes.get(i)))
        _dependents(claims, verdicts)
        return verdicts

    def _refuted(self, c: Claim, fix: tuple[Question, Answer | None] | None) -> Verdict:
        if c.kind == "count":
            said = parse_open("count", fix[1].text) if fix and fix[1] else ""
            if said and said != "zero" and NUMBERS.index(said) != c.value:
                return Verdict(False, "fix", NUMBERS.index(said), f"answered {said}")
            return Verdict(False, "keep", why="refuted, but no other number answered")
        if fix is not None and fix[1] is not None:
            q, a = fix
            if c.kind == "attribute":
                said = parse_open("attribute", a.text)
                if said and said != c.value:
                    return Verdict(False, "fix", said, f"answered {said}")
            elif c.kind == "relation" and said_yes(a, self.threshold):
                return Verdict(False, "fix", (q.value, c.value[1]), f"answered yes to {q.value}")
        return Verdict(False, "delete", why="answered no")


class LogicCheckDecider:
    """An object claim stays when at least `loop_threshold` of its loops close (LogicCheckGPT's loop rate
    against its lambda): a loop closes when its open answer names a value and the closing question about
    that value is answered yes. Claims other than objects are not checked (LogicCheckGPT removes objects);
    those about a removed object go with it."""

    def __init__(self, threshold: float = 0.5, loop_threshold: float = 0.5, closes=None) -> None:
        # closes(question, answer): whether an open closing question's answer closes its loop (free text)
        self.threshold, self.loop_threshold, self.closes = threshold, loop_threshold, closes

    def decide(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Verdict]:
        loops: dict[int, int] = {}
        closed: dict[int, int] = {}
        for q, a in zip(questions, answers):
            if q.role == "loop" and a is not None:
                loops[q.claim] = loops.get(q.claim, 0) + 1
            elif q.role == "close" and (self.closes(q, a) if q.form == "open" and self.closes else
                                        said_yes(a, self.threshold)):
                closed[q.claim] = closed.get(q.claim, 0) + 1
        verdicts = []
        for i, c in enumerate(claims):
            if c.kind != "object" or not loops.get(i):
                verdicts.append(Verdict(None, "keep", why="not checked"))
                continue
            rate = closed.get(i, 0) / loops[i]
            ok = rate >= self.loop_threshold
            verdicts.append(Verdict(ok, "keep" if ok else "delete", why=f"loop rate {rate:.2f}"))
        _dependents(claims, verdicts)
        return verdicts


# ---------------------------------------------------------------------------- 5. rewriting
def parts_from_claims(caption: str, claims: list[Claim]) -> tuple[CaptionParts, str]:
    """(parts, style) of a caption outside the grammar, rebuilt from the claims the lenient parser read:
    one phrase per listed class (its number the count claim's, its colour and size the attribute
    claims'), in order of first mention, and the relation claims. Text it could not read is dropped."""
    words = tokenize_words(caption)
    short = len(words) >= 4 and words[2:4] == ["scene", "with"] and words[0] in ("a", "an")
    phrases: dict[str, Phrase] = {}
    for c in sorted(claims, key=lambda c: c.span[0]):
        if c.kind == "count":
            phrases.setdefault(c.cls, Phrase(c.cls, 1)).n = max(1, min(int(c.value), len(NUMBERS) - 1))
    for c in claims:
        if c.kind == "attribute" and c.cls in phrases:
            if c.attribute == "color" and phrases[c.cls].color is None:
                phrases[c.cls].color = c.value
            elif c.attribute == "size":
                phrases[c.cls].small = True
    order = {c.cls: c.span[0] for c in reversed(claims) if c.kind == "count" or c.kind == "object"}
    listed = sorted(phrases.values(), key=lambda p: order.get(p.cls, 0))
    relations = [(c.cls, c.value[0], c.value[1]) for c in claims if c.kind == "relation"]
    return CaptionParts(words[1] if short else "", listed, relations), "short" if short else "detailed"


def render(parts: CaptionParts, style: str) -> str:
    """`parts.render(style)`, but a caption whose objects all went keeps only its relation sentences (or
    is empty): the grammar has no sentence for an empty list."""
    if parts.phrases:
        return parts.render(style)
    if style == "short":
        return ""
    return " ".join(RELATION_SENTENCE.format(*r) for r in parts.relations)


def _merge_repeats(phrases: list[Phrase]) -> list[Phrase]:
    """One phrase per class (the grammar never repeats one): numbers add up, the first adjectives stay."""
    out: dict[str, Phrase] = {}
    for p in phrases:
        if p.cls in out:
            out[p.cls].n = min(out[p.cls].n + p.n, len(NUMBERS) - 1)
        else:
            out[p.cls] = Phrase(p.cls, p.n, p.small, p.color)
    return list(out.values())


class WorldRewriter:
    """Edits the caption's parts (`parse_world_caption`, or `parts_from_claims` for a caption outside the
    grammar) as the verdicts say and renders them with the world's grammar. Nothing refuted: the caption
    comes back as it was."""

    def rewrite(self, caption: str, claims: list[Claim], verdicts: list[Verdict]) -> tuple[str, list[dict[str, Any]]]:
        if all(v.action == "keep" for v in verdicts):
            return caption, []
        parsed = parse_world_caption(caption)
        parts, style = parsed if parsed is not None else parts_from_claims(caption, claims)
        parts.phrases = _merge_repeats(parts.phrases)
        by_class = {p.cls: p for p in parts.phrases}
        edits = []
        for c, v in zip(claims, verdicts):
            if v.action == "keep":
                continue
            edit = {"kind": c.kind, "claim": c.text, "class": c.cls, "action": v.action, "why": v.why}
            p = by_class.get(c.cls)
            if c.kind == "object":
                parts.phrases = [q for q in parts.phrases if q.cls != c.cls]
                parts.relations = [r for r in parts.relations if c.cls not in (r[0], r[2])]
            elif c.kind == "attribute" and p is not None:
                if c.attribute == "size":
                    p.small = False
                else:
                    p.color = v.fix if v.action == "fix" else None
                edit["to"] = v.fix
            elif c.kind == "count" and p is not None and v.action == "fix":
                p.n = int(v.fix)
                edit["to"] = NUMBERS[p.n]
            elif c.kind == "relation":
                rel, other = c.value
                old = (c.cls, rel, other)
                if v.action == "fix":
                    parts.relations = [(c.cls, v.fix[0], other) if r == old else r for r in parts.relations]
                    edit["to"] = v.fix[0]
                else:
                    parts.relations = [r for r in parts.relations if r != old]
            edits.append(edit)
        return render(parts, style), edits


__all__ = ["OPPOSITE", "LogicCheckDecider", "LogicCheckQuestions", "OracleValidator", "WoodpeckerDecider",
           "WoodpeckerQuestions", "WorldExtractor", "WorldRewriter", "check_question", "parse_open",
           "parts_from_claims", "render", "said_yes", "truth_answer"]
