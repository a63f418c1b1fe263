"""The causes a study can vary, one table: what each sets, its levels, the level of the study recipe, and what the
literature says it does (docs/studies/causes.md holds the sources).

A cause's `arm(level)` is what changes against the study recipe: knobs of the training world, fields of the model
(`TinyConfig`) or of training (`TrainConfig`), or, for the decoding causes, how the fixed model decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..models.tiny import query_tokens


@dataclass(frozen=True)
class Arm:
    """One level of a cause: overrides of the world's knobs, the model's sizes and training (all empty for a
    decoding cause, which reuses the study recipe's model), and the decoding method with its arguments."""

    knobs: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    method: str = "greedy"
    method_args: dict[str, Any] = field(default_factory=dict)
    yes_no: str = "score"  # a decoding arm generates its yes/no answers, where sampling can change them

    @property
    def trains(self) -> bool:
        """Whether this arm needs a model of its own (else it decodes the study recipe's)."""
        return bool(self.knobs or self.model or self.train)


def _number(cast: type, ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """A level parser: `cast(text)`, which must pass `ok`, else a ValueError saying it is not `what`."""

    def parse(text: str):
        value = cast(text)
        if not ok(value):
            raise ValueError(f"{text!r} is not {what}")
        return value

    return parse


_probability = _number(float, lambda v: 0 <= v <= 1, "in [0, 1]")
_positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
_temperature = _number(float, lambda v: v >= 0, "0 (greedy decoding) or a positive temperature")
_top_p = _number(float, lambda v: 0 < v <= 1, "in (0, 1]")


def _connector(text: str) -> str:
    if text not in ("mlp", "linear") and query_tokens(text) is None:
        raise ValueError(f"{text!r} is not a connector; use mlp, linear or query-K (K >= 1, e.g. query-8)")
    return text


def _knob(name: str) -> Callable[[Any], Arm]:
    return lambda level: Arm(knobs={name: level})


def _sampled(level: float) -> Arm:
    if level == 0:
        return Arm(method="greedy", yes_no="generate")
    return Arm(method="sample", method_args={"temperature": level}, yes_no="generate")


@dataclass(frozen=True)
class Cause:
    """One cause of hallucination as a study varies it. `levels` run from least to most of the cause where
    that order exists (the connector's run from the richest to the most compressed); `baseline` is the study
    recipe's level. `expect` is the literature's direction: metric -> +1 where more of the cause should raise
    it, -1 where it should lower it."""

    name: str
    group: str
    sets: str
    levels: tuple[Any, ...]
    baseline: Any
    parse: Callable[[str], Any]
    make_arm: Callable[[Any], Arm]
    claim: str
    expect: dict[str, int]

    def arm(self, level: Any) -> Arm:
        return self.make_arm(level)

    def parse_levels(self, text: str) -> list[Any]:
        """'0.5,0.7,0.9' -> the levels; a bad one fails naming the cause and the fix."""
        out = []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            try:
                out.append(self.parse(part))
            except ValueError as e:
                raise ValueError(f"--levels: {e} (cause {self.name!r}, which sets {self.sets}; e.g. "
                                 f"--levels {','.join(map(str, self.levels))})") from None
        if not out:
            raise ValueError(f"--levels is empty; give levels of {self.sets}, e.g. {','.join(map(str, self.levels))}")
        return out


_OBJECTS = {"chair_i": 1, "claims_object": 1, "pope_adversarial": -1, "pope_popular": -1, "pope_random": -1}

CAUSES: dict[str, Cause] = {c.name: c for c in (
    Cause("cooccurrence", "data", "WorldConfig.cooccurrence_strength (training world)", (0.0, 0.5, 0.8, 0.95), 0.8,
          _probability, _knob("cooccurrence_strength"),
          "Objects that co-occur in the training data are hallucinated together: stronger co-occurrence, more object "
          "hallucination, worst on POPE's adversarial split (POPE; LURE; HalluciDoctor).", _OBJECTS),
    Cause("yes-bias", "data", "WorldConfig.yes_bias (share of 'yes' among training existence questions)",
          (0.5, 0.6, 0.7, 0.8), 0.6, _probability, _knob("yes_bias"),
          "Instruction data dominated by positive answers teaches a model to say yes: a higher yes rate and lower "
          "POPE accuracy, most where the answer is no (LRV-Instruction).",
          {"pope_yes_rate": 1, "pope_adversarial": -1, "pope_random": -1, "prior_yes_rate": 1}),
    Cause("annotation-noise", "data", "TrainConfig.caption_noise (share of training captions naming an absent object "
          "or a wrong colour)", (0.0, 0.1, 0.2, 0.4), 0.0, _probability,
          lambda level: Arm(train={"caption_noise": level}),
          "Captions that describe what is not in the image are learnt as such: more noise, more hallucinated objects "
          "and attributes in captions (the survey's annotation irrelevance; HalluciDoctor; ReCaption).",
          {"chair_i": 1, "claims_object": 1, "claims_attribute": 1}),
    Cause("color-prior", "data", "WorldConfig.color_prior_strength", (0.25, 0.5, 0.7, 0.85), 0.85, _probability,
          _knob("color_prior_strength"),
          "A class's usual colour is said whatever the image shows: a stronger prior, more attribute errors on "
          "objects that break it (errors that follow language priors: CHAIR's authors; AMBER measures them).",
          {"claims_attribute": 1, "attribute_breaking": 1}),
    Cause("spatial-prior", "data", "WorldConfig.spatial_prior_strength", (0.0, 0.5, 0.75, 0.9), 0.9, _probability,
          _knob("spatial_prior_strength"),
          "Pairs usually seen in one arrangement are described in it: a stronger prior, more relation errors, "
          "most on pairs that break it (Kamath et al. 2023 trace VLMs' spatial failures to their training data).",
          {"claims_relation": 1, "relation_breaking": 1}),
    Cause("count-prior", "data", "WorldConfig.count_prior_strength", (0.0, 0.5, 0.7, 0.85), 0.85, _probability,
          _knob("count_prior_strength"),
          "Classes that usually come in twos are counted as two: a stronger prior, more count errors, most where "
          "the image breaks it (Vo et al. 2025: most counting errors on counterfactual images give the prior's "
          "answer).",
          {"claims_count": 1, "count_breaking": 1}),
    Cause("resolution", "vision", "TinyConfig.image_size (pixels per side the vision tower sees; 16 patches always)",
          (64, 32, 16, 8), 64, _positive_int, lambda level: Arm(model={"image_size": level}),
          "Too low a resolution loses the details (small, faint objects, colours): lower resolution, more "
          "hallucination (the survey's limited visual resolution; LLaVA-1.5; HallE-Control).",
          {"chair_i": 1, "claims_object": 1, "claims_attribute": 1, "pope_adversarial": -1, "pope_random": -1}),
    Cause("connector", "connector", "TinyConfig.connector (mlp, linear, query-K)",
          ("mlp", "linear", "query-16", "query-8", "query-4", "query-2"), "mlp", _connector,
          lambda level: Arm(model={"connector": level}),
          "A simple connector aligns the modalities poorly and a few learnable queries compress the image: linear "
          "worse than MLP, and fewer queries, more hallucination (the survey's connection-module simplicity and "
          "limited token constraints); MM1's ablation finds the connector's type matters little, its token count much.",
          {"chair_i": 1, "claims_object": 1, "pope_random": -1, "pope_adversarial": -1}),
    Cause("lm-size", "language model", "TinyConfig.text_layers (decoder depth; the vision side stays 2 layers)",
          (1, 2, 3, 4), 3, _positive_int, lambda level: Arm(model={"text_layers": level}),
          "No consensus: a language model much stronger than its vision side leans on its own priors (the survey's "
          "capability misalignment), so a larger LM, more prior-driven hallucination; HallE-Control found 7B to 33B "
          "changed little, and text-only studies point both ways. Tested here as the survey's direction.",
          {"chair_i": 1, "prior_persist": 1}),
    Cause("temperature", "decoding", "sampling temperature (0: greedy) on the study recipe's model",
          (0.0, 0.5, 1.0, 1.5), 0.0, _temperature, _sampled,
          "Random sampling picks unlikely, often ungrounded, tokens (the survey's stochastic sampling decoding): a "
          "higher temperature, more hallucination in captions and more wrong yes/no answers.",
          {"chair_i": 1, "claims_all": 1, "pope_adversarial": -1, "pope_random": -1}),
    Cause("top-p", "decoding", "nucleus top-p at temperature 1 on the study recipe's model", (0.5, 0.8, 0.9, 1.0),
          1.0, _top_p,
          lambda level: Arm(method="sample", method_args={"temperature": 1.0, "top_p": level}, yes_no="generate"),
          "A wider nucleus admits more of the unreliable tail: a higher top-p, more hallucination (Lee et al. 2022, "
          "text only: top-p's randomness harms factuality).",
          {"chair_i": 1, "claims_all": 1}),
)}


def get_cause(name: str) -> Cause:
    if name not in CAUSES:
        raise ValueError(f"unknown cause {name!r}; use one of {', '.join(CAUSES)}")
    return CAUSES[name]


__all__ = ["CAUSES", "Arm", "Cause", "get_cause"]
