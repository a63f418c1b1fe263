"""Muon for the hidden weight matrices, AdamW for the rest, as one optimizer for the loop.

Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/) updates each 2-D weight matrix by its
(Nesterov) momentum orthogonalised with a Newton-Schulz iteration; embeddings, norms, biases and convolutions keep
AdamW, as in the reference's `MuonWithAuxAdam`. The Muon step is scaled to AdamW's update RMS (0.2 *
sqrt(max(rows, columns)); Liu et al. 2025, "Muon is Scalable for LLM Training", arXiv:2502.16982), so that both
halves take the same learning rate, schedule and weight decay.

The Muon half is torch.optim.Muon's update (the same momentum, iteration, scaling and decoupled weight decay) with
the iteration in float32: torch's, like the reference (written for GPUs), runs it in bfloat16, which changes each
update by about 1 % (on the built-in model within seed noise: docs/studies/tiny-recipe.md, "Muon") and which CPUs
without bfloat16 units emulate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adamw", "muon")
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the reference's quintic, torch.optim.Muon's default


def orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """About U V^T of g = U S V^T (singular values pushed into about [0.7, 1.2]) by the reference's Newton-Schulz
    iteration, in float32."""
    a, b, c = NS_COEFFICIENTS
    x = g.float() / g.norm().clamp(min=1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """torch.optim.Muon's update, with `orthogonalise` in float32 and the update scaled to AdamW's RMS."""

    def __init__(self, groups: list[dict[str, Any]], lr: float, weight_decay: float, momentum: float = 0.95,
                 ns_steps: int = 5) -> None:
        super().__init__(groups, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                                  "ns_steps": ns_steps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:  # not setdefault: that would allocate zeros on every step
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = orthogonalise(p.grad.lerp(buf, group["momentum"]), group["ns_steps"])  # Nesterov
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"] * 0.2 * max(p.shape) ** 0.5)


def split_for_muon(model: nn.Module, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group in two, its 2-D weight matrices (flagged "muon") and the rest; word and position embeddings
    and the output head (tied to the input embeddings or not) stay with the rest."""
    names = {id(p): n for n, p in model.named_parameters()}

    def is_matrix(p: torch.Tensor) -> bool:
        return p.ndim == 2 and not any(k in names.get(id(p), "") for k in ("embed", "lm_head"))

    out = []
    for group in groups:
        out += [group | {"params": [p for p in group["params"] if is_matrix(p)], "muon": True},
                group | {"params": [p for p in group["params"] if not is_matrix(p)], "muon": False}]
    return [g for g in out if g["params"]]


class MuonAdamW(torch.optim.Optimizer):
    """`Muon` on the groups flagged "muon", torch's AdamW on the others, stepped and saved together. The groups
    are the inner optimizers' own, so a learning rate set on `param_groups` reaches them."""

    def __init__(self, groups: list[dict[str, Any]], lr: float, weight_decay: float,
                 betas: tuple[float, float], momentum: float = 0.95) -> None:
        matrices, rest = [g for g in groups if g.get("muon")], [g for g in groups if not g.get("muon")]
        self.parts = {}
        if matrices:
            self.parts["muon"] = Muon(matrices, lr=lr, weight_decay=weight_decay, momentum=momentum)
        if rest:
            self.parts["adamw"] = torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay, betas=betas)
        super().__init__([g for opt in self.parts.values() for g in opt.param_groups], {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for opt in self.parts.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.parts.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.parts.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, opt in self.parts.items():
            opt.load_state_dict(state_dict[name])
