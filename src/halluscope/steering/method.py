"""VTI as a decoding method: any base method (greedy, sample, VCD, ...) run with the VTI hooks on.

    adapter.generate(images, prompts, method="vti", directions="directions.safetensors",
                     alpha=0.9, beta=0.9, base="greedy", base_args={})
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..decoding import DecodingMethod, MethodConfig, get_method
from .directions import Directions
from .hooks import SITES, vti


@dataclass
class VTIConfig(MethodConfig):
    """Visual and Textual Intervention (VTI): shift every vision-encoder layer's hidden states
    towards a direction of stable (mask-averaged) vision features, with strength alpha, and every
    decoder layer's towards true-minus-hallucinated captions, with strength beta, keeping each
    token's norm; then decode with the `base` method.

    Defaults: alpha = beta = 0.9 and scale 0.1 as in the reference code (github.com/shengliu66/VTI,
    README's MMHal-Bench run `--alpha_image 0.9 --alpha_text 0.9`; the constant 0.1 in
    vti_utils/llm_layers.py VTILayer).
    """

    _paper = {
        "title": "Reducing Hallucinations in Vision-Language Models via Latent Space Steering",
        "authors": "Sheng Liu, Haotian Ye, Lei Xing, James Zou",
        "venue": "ICLR 2025",
        "url": "https://arxiv.org/abs/2410.15778",
    }

    directions: str | os.PathLike | Directions | None = field(
        default=None, metadata={"help": "directions file from `halluscope steer fit` (or a Directions object)"})
    alpha: float = field(default=0.9, metadata={"help": "vision strength; 0 leaves the vision encoder alone"})
    beta: float = field(default=0.9, metadata={"help": "text strength; 0 leaves the language model alone"})
    scale: float = field(default=0.1, metadata={
        "help": "factor on the unit direction (the reference code's 0.1): the shift is strength * scale * d"})
    site: str = field(default="layer", metadata={
        "help": "'layer': shift each layer's output (the residual stream the directions come from); "
                "'mlp': shift each MLP's output, as the reference code does"})
    vision_layers: list[int] | None = field(default=None, metadata={"help": "vision layers to steer (default all)"})
    text_layers: list[int] | None = field(default=None, metadata={"help": "decoder layers to steer (default all)"})
    base: str = field(default="greedy", metadata={"help": "decoding method run under the hooks"})
    base_args: dict[str, Any] = field(default_factory=dict, metadata={"help": "arguments of the base method"})

    def __post_init__(self) -> None:
        if self.directions is None:
            self.fail("directions", "pass directions=PATH, made with `halluscope steer fit --model MODEL --out PATH`")
        if not isinstance(self.directions, Directions) and not Path(self.directions).is_file():
            self.fail("directions", "no such file; make it with `halluscope steer fit --model MODEL --out PATH`")
        for name in ("alpha", "beta"):
            if not math.isfinite(getattr(self, name)):
                self.fail(name, "use a finite strength (0 turns this side off; the paper uses 0.9)")
        if not (math.isfinite(self.scale) and self.scale > 0):
            self.fail("scale", "use a positive factor (the reference code uses 0.1)")
        if self.site not in SITES:
            self.fail("site", f"use one of {SITES}")
        if self.base == "vti":
            self.fail("base", "VTI cannot wrap itself; use a decoding method such as 'greedy', 'sample' or 'vcd'")
        if not isinstance(self.base_args, dict):
            self.fail("base_args", "use a dict of the base method's arguments, e.g. {'temperature': 1.0}")

    @classmethod
    def from_args(cls, **args: Any) -> VTIConfig:
        """The config from flat arguments: those that are not VTI's own go to the base method,
        so `generate(..., method="vti", directions=P, base="sample", temperature=0.7)` and
        `--method-args directions=P,base=sample,temperature=0.7` work. The base method's config
        checks them when VTI builds it."""
        own = {f.name for f in fields(cls)}
        base_args = dict(args.pop("base_args", None) or {})
        base_args.update({k: args.pop(k) for k in list(args) if k not in own})
        return cls(**args, base_args=base_args)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> Directions:
    return Directions.load(path)


def load_directions(directions: str | os.PathLike | Directions) -> Directions:
    """A Directions object; files are read once per (path, modification time)."""
    if isinstance(directions, Directions):
        return directions
    path = Path(directions).resolve()
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


class VTI(DecodingMethod):
    """The base decoding method with the VTI hooks installed for the duration of generation."""

    config_cls = VTIConfig

    def __init__(self, config: VTIConfig) -> None:
        super().__init__(config)
        self.directions = load_directions(config.directions)
        self.base = get_method(config.base, **config.base_args)

    @property
    def builds_own_inputs(self) -> bool:  # a wrapper takes the inputs its base method takes
        return self.base.builds_own_inputs

    def _hooks(self, adapter):
        c = self.config
        return vti(adapter, self.directions, c.alpha, c.beta, scale=c.scale, site=c.site,
                   vision_layer_ids=c.vision_layers, text_layer_ids=c.text_layers)

    def generate(self, adapter, inputs: dict[str, torch.Tensor], max_new_tokens: int,
                 min_new_tokens: int = 0) -> torch.Tensor:
        with self._hooks(adapter):
            return self.base.generate(adapter, inputs, max_new_tokens, min_new_tokens)

    def first_token_scores(self, adapter, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The base method's first-step scores under the hooks (POPE's score mode)."""
        with self._hooks(adapter):
            return self.base.first_token_scores(adapter, inputs)
