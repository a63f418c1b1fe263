"""The stages of post-hoc correction, one small protocol each, and the data that flows between them.

    caption --extract--> claims --formulate--> questions --validate--> answers --decide--> verdicts
            --rewrite--> corrected caption and its edits

Woodpecker (Yin et al., 2023) runs the same five steps with GPT-3.5 for extraction, questions and the
rewrite, GroundingDINO and BLIP-2 for the answers. Here each stage is an interface with local
implementations (`world.py`: the synthetic world's grammar, the model's own answers, the truth; `real.py`:
COCO object words, a zero-shot detector, rule or local-LM rewriting), so one stage can be swapped and
scored on its own.

Validation runs in two rounds, each batched across the captions of a batch: `Formulator.first` asks what
checks each claim (Woodpecker's questions; LogicCheckGPT's object -> attribute questions), and
`Formulator.then`, given the first answers, asks what fixes a refuted claim (the true colour or number)
or closes a loop (LogicCheckGPT's attribute -> object questions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..world.claims import Claim


@dataclass
class Question:
    """One question about one claim (`claim`: its index in the caption's claims).

    `kind`: what it asks ("existence", "attribute", "size", "count", "relation"); `form`: "yes_no" or "open";
    `role`: "check" (a yes supports the claim), "answer" (an open answer: the claimed value supports it,
    another refutes it and is its fix), "choice" (one of the yes/no questions about each alternative value,
    the claim's among them: the likeliest wins), "loop" and "close" (LogicCheck's questions). `cls`, `value`,
    `other`, `n` (the claimed number of the phrase) say what is asked, for an answerer that reads them
    rather than the text (the truth, a detector)."""

    claim: int
    kind: str
    form: str
    text: str
    cls: str
    value: Any = None
    other: str | None = None
    role: str = "check"
    n: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "form": self.form, "text": self.text, "role": self.role}


@dataclass
class Answer:
    """An answer: `text` ("yes"/"no" for a yes/no question, the parsed word of an open one, "" for none),
    `p_yes` (the answerer's probability of yes, for yes/no questions) and `evidence` (e.g. a detector's
    boxes)."""

    text: str
    p_yes: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"answer": self.text}
        if self.p_yes is not None:
            d["p_yes"] = round(self.p_yes, 4)
        return d | self.evidence


@dataclass
class Verdict:
    """What the pipeline concluded about one claim: `supported` (True, False, or None when nothing
    checked it) and `action`: "keep", "delete" or "fix" (to `fix`)."""

    supported: bool | None
    action: str = "keep"
    fix: Any = None
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"supported": self.supported, "action": self.action, "why": self.why}
        if self.action == "fix":
            d["fix"] = list(self.fix) if isinstance(self.fix, tuple) else self.fix
        return d


@dataclass
class Item:
    """One caption on its way through the pipeline. `scene`: the world's truth where there is one
    (the oracle answers from it; nothing else reads it)."""

    image: Any
    caption: str
    scene: Any = None
    claims: list[Claim] = field(default_factory=list)
    unparsed: list[tuple[int, int]] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    corrected: str = ""
    edits: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------- one protocol per stage
@runtime_checkable
class Extractor(Protocol):
    """Stage 1: the claims a caption makes, unjudged, with their character spans."""

    def extract(self, caption: str) -> tuple[list[Claim], list[tuple[int, int]]]:
        """(claims, spans of text it could not read)."""
        ...


@runtime_checkable
class Formulator(Protocol):
    """Stage 2: the questions that check (first) and fix (then) the claims of one caption."""

    def first(self, claims: list[Claim]) -> list[Question]: ...

    def then(self, claims: list[Claim], questions: list[Question], answers: list[Answer]) -> list[Question]: ...


@runtime_checkable
class Validator(Protocol):
    """Stage 3: answers to questions about images, batched across captions. `name`: "self", "oracle",
    "detector", ... A validator that cannot answer a question returns None for it."""

    name: str

    def answer(self, items: list[Item], questions: list[tuple[int, Question]]) -> list[Answer | None]:
        """One answer per (item index, question)."""
        ...


@runtime_checkable
class Decider(Protocol):
    """Stage 4: the claims' verdicts from the answers."""

    def decide(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Verdict]:
        ...


@runtime_checkable
class Rewriter(Protocol):
    """Stage 5: the corrected caption and its edits; a caption with nothing refuted comes back unchanged."""

    def rewrite(self, caption: str, claims: list[Claim], verdicts: list[Verdict]) -> tuple[str, list[dict[str, Any]]]:
        ...


__all__ = ["Answer", "Decider", "Extractor", "Formulator", "Item", "Question", "Rewriter", "Validator", "Verdict"]
