"""Probe: the default recipe with Muon for the matrices of instruction tuning. Does a better optimizer buy,
in the same 1,400 steps, what the sections of docs/studies/tiny-recipe.md found only twice or four times the
training buys (colour and count checked, relations on the prior pairs)?

Muon (Jordan et al. 2024, github.com/KellerJordan/Muon; at scale: Liu et al. 2025, arXiv:2502.16982) updates
each hidden weight matrix by its momentum orthogonalised with a Newton-Schulz iteration; embeddings, norms and
biases keep AdamW, as in the reference `MuonWithAuxAdam`. The Muon step is scaled to AdamW's update RMS (0.2 *
sqrt(max(rows, columns)), Liu et al.), so both halves take the recipe's learning rate, schedule and weight decay.
Stage 0 keeps AdamW. The probe patches `InstructionTrainer` for its own run only, so its models must go to their
own --out folder.

    python studies/recipe_muon.py --out runs/i19/muon --seeds 0

Takes every option of recipe_seeds.py; its results file records this script's command line. `--caption-order
interleaved` adds the caption order of `recipe_caption_order.py` to the same run.

    python studies/recipe_muon.py --step-time [--reps 5 --threads 2]

times an instruction-tuning step (forward, backward, optimizer) of a fresh built-in model with AdamW and with
Muon, on the same prebuilt batches, interleaved pass by pass so that a noisy host affects both alike, and
writes the medians and their ratio to studies/results/recipe_muon/<date>_<sha>.json.
"""

from __future__ import annotations

import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the reference's quintic, as torch.optim.Muon's default


def orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """About U V^T of g = U S V^T, by the reference's Newton-Schulz iteration (in float32: CPUs without bf16)."""
    a, b, c = NS_COEFFICIENTS
    x = g / (g.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        m = x @ x.T
        x = a * x + (b * m + c * m @ m) @ x
    return x.T if tall else x


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer over groups flagged "muon" (2-D matrices: Muon) or not (AdamW), with decoupled weight decay."""

    def __init__(self, groups, lr: float, weight_decay: float, betas: tuple[float, float],
                 momentum: float = 0.95, ns_steps: int = 5, eps: float = 1e-8) -> None:
        super().__init__(groups, dict(lr=lr, weight_decay=weight_decay, betas=betas, momentum=momentum,
                                      ns_steps=ns_steps, eps=eps, muon=False))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                p.mul_(1 - g["lr"] * g["weight_decay"])
                if g["muon"]:
                    buf = state.setdefault("momentum", torch.zeros_like(p))
                    buf.lerp_(p.grad, 1 - g["momentum"])
                    update = orthogonalise(p.grad.lerp(buf, g["momentum"]), g["ns_steps"])  # Nesterov
                    p.add_(update, alpha=-g["lr"] * 0.2 * math.sqrt(max(p.shape)))
                    continue
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                (b1, b2), state["step"] = g["betas"], state["step"] + 1
                state["m"].lerp_(p.grad, 1 - b1)
                state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat = state["m"] / (1 - b1 ** state["step"])
                v_hat = state["v"] / (1 - b2 ** state["step"])
                p.addcdiv_(m_hat, v_hat.sqrt().add_(g["eps"]), value=-g["lr"])


def use_muon() -> None:
    from halluscope.training.sft import InstructionTrainer

    groups = InstructionTrainer.param_groups

    def param_groups(self, model):
        out = []
        for group in groups(self, model):
            ids = {id(p) for p in group["params"]}
            named = [(n, p) for n, p in model.named_parameters() if id(p) in ids]
            matrix = [p for n, p in named if p.ndim == 2 and "embed" not in n and "lm_head" not in n]
            rest = [p for n, p in named if not any(p is q for q in matrix)]
            out += [group | {"params": matrix, "muon": True}, group | {"params": rest, "muon": False}]
        return [g for g in out if g["params"]]

    def make_optimizer(self, groups):
        cfg = self.config
        return MuonAdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas))

    InstructionTrainer.param_groups = param_groups
    InstructionTrainer.make_optimizer = make_optimizer


def step_time(reps: int, threads: int, n_batches: int = 4) -> None:
    import statistics
    import time

    from _provenance import write_result  # siblings: `python studies/X.py` puts studies/ on sys.path

    from halluscope import World
    from halluscope.models.tiny import build_model, build_processor
    from halluscope.training.sft import Batcher, InstructionTrainer, TrainConfig, batch_for_step

    torch.set_num_threads(threads)
    world, cfg = World(), TrainConfig()
    processor = build_processor(world)
    batches = [batch_for_step(world, Batcher(processor), cfg, step) for step in range(n_batches)]
    trainers, models = {}, {}
    for name in ("adamw", "muon"):
        models[name] = model = build_model(processor, seed=0)
        for p in model.model.vision_tower.parameters():  # frozen in instruction tuning, as the recipe has it
            p.requires_grad_(False)
        me = type("Trainer", (), {"tower": model.model.vision_tower, "config": cfg})()
        groups = InstructionTrainer.param_groups(me, model)  # the patched split, as in training
        trainers[name] = (torch.optim.AdamW([{"params": [p for g in groups for p in g["params"]]}], lr=cfg.lr,
                                            weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas))
                          if name == "adamw" else InstructionTrainer.make_optimizer(me, groups))
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for rep in range(reps + 1):  # the first pass warms up
        for name, opt in trainers.items():
            for batch in batches:
                t = time.perf_counter()
                models[name](**batch).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if rep:
                    seconds[name].append(time.perf_counter() - t)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    result = {"threads": threads, "reps": reps, "batches": n_batches, "batch_size": cfg.batch_size,
              "median_step_seconds": {k: round(v, 4) for k, v in median.items()},
              "muon_over_adamw": round(median["muon"] / median["adamw"], 3)}
    print(result)
    print(f"wrote {write_result('recipe_muon', result)}")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--step-time", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--caption-order", default=None, help="also list caption classes in this order (the "
                    "probe recipe_caption_order.py's --order)")
    args, rest = ap.parse_known_args()
    use_muon()
    if args.caption_order:
        from recipe_caption_order import use_caption_order

        use_caption_order(args.caption_order)
    if args.step_time:
        return step_time(args.reps, args.threads)
    import recipe_seeds  # siblings: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main(rest)


if __name__ == "__main__":
    main()
