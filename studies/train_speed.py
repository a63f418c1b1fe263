"""Where a training step of the built-in model spends its time, on this machine, now.

    python studies/train_speed.py [--batches 6 --reps 3]

Builds a freshly initialised built-in model and `--batches` real training batches, then reports:
the cost of building one batch (the DataLoader worker's job), the padding in a batch, and the
seconds per optimizer step (forward, backward, AdamW) with 1 and 2 torch threads, with the batches
prebuilt (compute only), with the vision tower as the default recipe has it (frozen) and the other way
(trained), with Muon in place of AdamW (`TrainConfig.optimizer="muon"`, 2 threads); the seconds per stage-0
step (vision tower and projector on `vision_batch_size` images, rendering included); and, for both stages,
a step with its batch built by a DataLoader worker alongside against one built in turn by the loop (which
`training.loop.prefetch` picks where the worker would have no core of its own). Variants are
interleaved pass by pass, so a noisy machine affects them alike; each figure is the median step
over `--reps` passes. Writes the figures as JSON with their provenance to
studies/results/train_speed/<date>_<git sha>.json (or `--out`).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None,
                    help="results file (default: studies/results/train_speed/<date>_<git sha>.json)")
    args = ap.parse_args()

    from dataclasses import replace

    import torch
    from _provenance import write_result

    from halluscope import World
    from halluscope.models.tiny import build_model, build_processor
    from halluscope.training.optimizers import MuonAdamW, split_for_muon
    from halluscope.training.loop import prefetch
    from halluscope.training.sft import (Batcher, TrainConfig, WordTargets, batch_for_step, pretrain_vision,
                                        stage0_batch)

    torch.set_flush_denormal(True)
    world, cfg = World(), TrainConfig()
    processor = build_processor(world)
    batcher = Batcher(processor)
    t = time.perf_counter()
    batches = [batch_for_step(world, batcher, cfg, step) for step in range(args.batches)]
    build_s = (time.perf_counter() - t) / args.batches
    lengths = [int(b["attention_mask"].sum(1).float().mean()) for b in batches]
    widths = [b["input_ids"].shape[1] for b in batches]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padding = 1 - real / sum(b["attention_mask"].numel() for b in batches)

    model = build_model(processor, seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    tower_trains = cfg.vision_lr_scale > 0
    other = "frozen" if tower_trains else "trained"

    # TrainConfig.optimizer="muon": the same step with Muon on the weight matrices (AdamW on the rest)
    muon = MuonAdamW(split_for_muon(model, [{"params": list(model.parameters())}]), lr=1e-4,
                     weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas))

    def step(batch, tower: bool = tower_trains, optimizer=opt) -> float:
        model.model.vision_tower.requires_grad_(tower)
        t = time.perf_counter()
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t

    targets = WordTargets(model, processor, cfg.position_targets)
    stage0_opt = torch.optim.AdamW(targets.trained(), lr=1e-4)

    def stage0_step(batch) -> float:
        model.model.vision_tower.requires_grad_(True)
        t = time.perf_counter()
        loss = targets(**batch)
        stage0_opt.zero_grad(set_to_none=True)
        loss.backward()
        stage0_opt.step()
        return time.perf_counter() - t

    step(batches[0])  # warm-up
    times: dict[str, list[float]] = {}
    stamps: list[float] = []  # stage 0's progress callback records the end of each step
    for _ in range(args.reps):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            times.setdefault(f"prebuilt, {threads} thread(s)", []).extend(step(b) for b in batches)
        torch.set_num_threads(2)
        times.setdefault("prebuilt, 2 threads, Muon", []).extend(step(b, optimizer=muon) for b in batches)
        times.setdefault(f"prebuilt, 2 threads, vision tower {other}", []).extend(
            step(b, not tower_trains) for b in batches)
        model.model.vision_tower.requires_grad_(True)
        stamps[:] = [time.perf_counter()]
        pretrain_vision(model, processor, world, replace(cfg, vision_pretrain_steps=args.batches),
                        progress=lambda i, loss: stamps.append(time.perf_counter()))
        times.setdefault("stage 0, 2 threads", []).extend(b - a for a, b in itertools.pairwise(stamps))
        # Where the batches are built: by a DataLoader worker alongside, or by the loop in turn with the steps (each
        # figure a step's compute, plus the batch's building when in turn), for instruction tuning and stage 0.
        fresh = list(range(100, 101 + args.batches))
        for name, make, run in (("", functools.partial(batch_for_step, world, batcher, cfg), step),
                                ("stage 0, ", functools.partial(stage0_batch, world, cfg), stage0_step)):
            loader = prefetch(make, fresh, torch.device("cpu"), worker=True)
            timed = [run(b) for b in loader][1:]  # the first waits for the worker to start
            times.setdefault(f"{name}DataLoader worker alongside, 2 threads", []).extend(timed)
            in_turn = []
            for k in fresh[1:]:
                t = time.perf_counter()
                batch = make(k)
                in_turn.append(time.perf_counter() - t + run(batch))
            times.setdefault(f"{name}batch built in turn, 2 threads", []).extend(in_turn)
    result = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "batch_build_s": round(build_s, 3),
        "mean_tokens_per_sample": round(statistics.mean(lengths), 1),
        "mean_batch_width": round(statistics.mean(widths), 1),
        "padding_share": round(padding, 3),
        "batch_size": cfg.batch_size, "vision_batch_size": cfg.vision_batch_size,
        "vision_tower_in_instruction_tuning": "trained" if tower_trains else "frozen",
        "seconds_per_step": {k: round(statistics.median(v), 3) for k, v in times.items()},
    }
    print(json.dumps(result, indent=1))
    print(f"wrote {write_result('train_speed', result, path=args.out)}")


if __name__ == "__main__":
    main()
