"""One variant of the built-in model's training recipe on one seed, then the demo's four checks: how
the frozen-tower recipe was found (2026-11-30, `studies/results/recipe_probes/recipe_probes.json`).

    # fresh stages 0 and 1, then instruction tuning with TrainConfig overrides
    python studies/recipe_probe.py --out runs/probe/cand3 --seed 2 --stage0-steps 900 --stage1-steps 300 \\
        --train steps=1000,batch_size=32,vision_lr_scale=0
    # or start from the stages a `hacl_world.py` run stored (OUT/no-hacl-s2/stage1.safetensors)
    python studies/recipe_probe.py --out runs/probe/b32 --seed 2 --start runs/hacl/no-hacl-s2/stage1.safetensors \\
        --train steps=1400,batch_size=32,vision_lr_scale=1

Unlike `recipe_seeds.py` it does not go through `train_tiny`, so any stage can be varied or reused;
the stages themselves are the same functions. Writes OUT/model/, OUT/eval/ and the summary
(arguments, stage times and losses, the checks) with its provenance to
studies/results/recipe_probes/<date>_<git sha>.json. The probes of 2026-11-30 ran two at a time
with one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--start", default=None, help="a stored stage-0 or stage-1 state dict (safetensors) to start from")
    ap.add_argument("--stage0-steps", type=int, default=900)
    ap.add_argument("--vision-batch", type=int, default=128)
    ap.add_argument("--stage1-steps", type=int, default=300)
    ap.add_argument("--train", default=None, help="TrainConfig overrides for instruction tuning, e.g. steps=1000")
    ap.add_argument("--pope-images", type=int, default=500)
    ap.add_argument("--chair-images", type=int, default=1000)
    args = ap.parse_args()

    import _arms
    from _provenance import model_hash, parse_kv, write_result
    from safetensors.torch import load_file

    from halluscope import World, load_model
    from halluscope.models import MARKER
    from halluscope.models.tiny import build_model, build_processor
    from halluscope.training.hacl import HACLConfig, hacl_align
    from halluscope.training.sft import TrainConfig, pretrain_vision, train

    out, world = Path(args.out), World()
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(world)
    model = build_model(processor, seed=args.seed)
    summary: dict = {"args": vars(args)}
    if args.start:
        model.load_state_dict(load_file(args.start))
    else:
        t = time.time()
        cfg0 = replace(TrainConfig(seed=args.seed), vision_pretrain_steps=args.stage0_steps,
                       vision_batch_size=args.vision_batch)
        summary["stage0_loss"] = pretrain_vision(model, processor, world, cfg0)[49::50]
        summary["stage0_seconds"] = time.time() - t
        t = time.time()
        if args.stage1_steps:
            hacl_align(model, processor, world, HACLConfig(steps=args.stage1_steps, seed=args.seed,
                                                           contrastive_weight=0.0), out / "connector", progress=False)
        summary["stage1_seconds"] = time.time() - t
    cfg = TrainConfig(**{**parse_kv(args.train, "--train"), "seed": args.seed, "vision_pretrain_steps": 0})
    t = time.time()
    log = train(model, processor, world, cfg, out / "train", progress=False)
    summary |= {"train": cfg.to_dict(), "instruction_seconds": time.time() - t, "loss": log["loss"]}
    model.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    (out / "model" / MARKER).write_text(json.dumps({"kind": "tiny", "recipe": {"probe": vars(args)}}))
    checks, chair = _arms.profile_checks(load_model(str(out / "model")), world, out / "eval", args.pope_images,
                                         args.chair_images)
    summary |= {"checks": checks, "chair_i": chair["chair_i"]}
    path = write_result("recipe_probes", summary, model_hash=model_hash(out / "model"))
    print(f"wrote {path}")
    if log["loss"]:
        print(f"final loss {log['loss'][-1][1]:.3f}")
    for c in summary["checks"]:
        print("met   " if c["holds"] else "missed", c["check"], c["value"])


if __name__ == "__main__":
    main()
