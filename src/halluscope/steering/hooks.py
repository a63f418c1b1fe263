"""Where VTI acts and how: the layer lists of the vision encoder and the language model, the
norm-preserving shift, and removable forward hooks that apply it (`vti`) or record layer outputs
(`record`, used to fit the directions).

The shift of one hidden state h (one token at one layer) towards a unit direction d is

    h <- ||h|| * normalize(normalize(h) + lambda * scale * d)

so every token keeps its norm and only turns; lambda = alpha in the vision encoder and beta in the
language model. The reference code applies the same formula with scale = 0.1 (VTILayer in
shengliu66/VTI vti_utils/llm_layers.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..models.parts import get_path

if TYPE_CHECKING:
    from .directions import Directions

SITES = ("layer", "mlp")
_EPS = 1e-12
# Where the encoder blocks of a vision tower live, by family; the first that exists wins.
# Mllama's tower is a local encoder (`transformer`) then a global one: VTI steers the local one, which sees the patches.
_VISION_LAYER_PATHS = ("vision_model.encoder.layers", "encoder.layers", "blocks", "layers", "vision_model.layers",
                       "transformer.layers")


def _longest_module_list(root: nn.Module) -> nn.ModuleList | None:
    lists = [m for m in root.modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=len) if lists else None


def vision_layers(adapter) -> nn.ModuleList:
    """The vision encoder's blocks, in order (CLIP/SigLIP: encoder.layers; Qwen2-VL: blocks)."""
    tower = adapter.vision_tower
    if tower is None:
        raise ValueError(f"{adapter.name}: no vision tower found; VTI needs one (set alpha=0 to steer text only)")
    for path in _VISION_LAYER_PATHS:
        layers = get_path(tower, path)
        if isinstance(layers, nn.ModuleList) and len(layers):
            return layers
    layers = _longest_module_list(tower)
    if layers is None:
        raise ValueError(f"{adapter.name}: no list of encoder blocks in {type(tower).__name__}")
    return layers


def text_layers(adapter) -> nn.ModuleList:
    """The language model's decoder layers, in order."""
    return adapter.decoder_layers


def _site(layer: nn.Module, site: str) -> nn.Module:
    if site == "layer":
        return layer
    mlp = getattr(layer, "mlp", None)
    if mlp is None:
        raise ValueError(f"{type(layer).__name__} has no `mlp` submodule; use site='layer'")
    return mlp


def steer(h: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """||h|| * normalize(normalize(h) + shift), per token (last axis), computed in float32.

    `shift` is lambda * scale * d with d a unit direction, broadcast against h: (D,) for one
    direction for all tokens, or (T, D) for one per position."""
    x = h.float()
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    # normalize(h / n + s) * n = (h + s n) * n / ||h + s n||: no division by n, and a zero h stays 0.
    # In-place steps on the new tensors: this runs at every layer of every decoding step.
    turned = torch.addcmul(x, shift, norm)
    turned.mul_(norm.div_(torch.linalg.vector_norm(turned, dim=-1, keepdim=True).clamp_min_(_EPS)))
    return turned.to(h.dtype)


def _steering_hook(shift: torch.Tensor, where: str):
    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        if shift.dim() == 2 and (h.dim() < 3 or h.shape[-2] != shift.shape[0]):
            raise ValueError(
                f"{where}: the vision directions were fitted per position for {shift.shape[0]} tokens, but this "
                f"input has hidden states of shape {tuple(h.shape)}; refit them with vision_tokens='mean' "
                "(`halluscope steer fit --vision-tokens mean`)")
        out = steer(h, shift)
        return (out, *output[1:]) if isinstance(output, tuple) else out

    return hook


def _unit(direction: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(direction.float(), dim=-1, eps=_EPS)


def _check(layers: nn.ModuleList, directions: torch.Tensor, which: str, hidden: int | None) -> None:
    if directions.shape[0] != len(layers):
        raise ValueError(f"the {which} directions cover {directions.shape[0]} layers but the model has {len(layers)}; "
                         "they were fitted on another model: fit them on this one (`halluscope steer fit`)")
    if hidden is not None and directions.shape[-1] != hidden:
        raise ValueError(f"the {which} directions have width {directions.shape[-1]} but the model's hidden size is "
                         f"{hidden}; fit them on this model (`halluscope steer fit`)")


def _hidden_size(config, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _select(n: int, chosen: Sequence[int] | None, which: str) -> list[int]:
    if chosen is None:
        return list(range(n))
    out = set()
    for i in chosen:
        if not -n <= i < n:
            raise ValueError(f"{which} layer {i} does not exist; the model has {n} "
                             f"(use 0..{n - 1} or negative indices)")
        out.add(i % n)
    return sorted(out)


@contextmanager
def vti(adapter, directions: Directions | str, alpha: float = 0.9, beta: float = 0.9, *, scale: float = 0.1,
        site: str = "layer", vision_layer_ids: Sequence[int] | None = None,
        text_layer_ids: Sequence[int] | None = None) -> Iterator[None]:
    """Steer `adapter`'s vision encoder (strength alpha) and language model (strength beta) while
    the block runs; every decoding method called inside is steered, with or without KV cache, at
    any batch size. A strength of 0 installs no hook at all, so alpha = beta = 0 is exactly the
    base model. The hooks are removed on exit, also when the block raises.

        with vti(adapter, "directions.safetensors", alpha=0.9, beta=0.9):
            adapter.generate(images, prompts, method="greedy")

    `site="layer"` shifts each layer's output (the residual stream the directions were fitted on);
    `site="mlp"` shifts each MLP's output instead, as the reference code does.
    `vision_layer_ids` / `text_layer_ids` restrict steering to some layers (default: all).
    """
    from .directions import Directions

    if isinstance(directions, (str, bytes)) or hasattr(directions, "__fspath__"):
        directions = Directions.load(directions)
    if site not in SITES:
        raise ValueError(f"site={site!r} is not one of {SITES}")
    plan = []
    if alpha:
        if directions.vision is None:
            raise ValueError("these directions have no vision part; set alpha=0 or fit them with vision")
        layers = vision_layers(adapter)
        vcfg = getattr(adapter.model.config, "vision_config", None)
        _check(layers, directions.vision, "vision", _hidden_size(vcfg, "embed_dim", "hidden_size"))
        plan += [(layers, i, alpha * scale * _unit(directions.vision[i]), f"vision layer {i}")
                 for i in _select(len(layers), vision_layer_ids, "vision")]
    if beta:
        if directions.text is None:
            raise ValueError("these directions have no text part; set beta=0 or fit them with text")
        layers = text_layers(adapter)
        tcfg = getattr(adapter.model.config, "text_config", adapter.model.config)
        _check(layers, directions.text, "text", _hidden_size(tcfg, "hidden_size"))
        plan += [(layers, i, beta * scale * _unit(directions.text[i]), f"text layer {i}")
                 for i in _select(len(layers), text_layer_ids, "text")]
    handles = []
    try:
        for layers, i, shift, where in plan:
            module = _site(layers[i], site)
            device = next(layers[i].parameters()).device
            handles.append(module.register_forward_hook(_steering_hook(shift.to(device), where)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record(modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Record each module's latest output (the first element of a tuple output) while the block
    runs: `outputs[i]` is module i's output of the last forward pass."""
    outputs: list[torch.Tensor | None] = [None] * len(modules)

    def make(i: int):
        def hook(module, args, output):
            outputs[i] = (output[0] if isinstance(output, tuple) else output).detach()

        return hook

    handles = [m.register_forward_hook(make(i)) for i, m in enumerate(modules)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
