"""HACL vs no HACL on the built-in model, several seeds per arm: both arms train the whole recipe
from scratch with the same steps and data (stage 0, a connector-alignment stage on the same
batches, then the same instruction tuning); the alignment stage of `hacl` adds HACL's contrastive
loss (L_gen + (L_i2t + L_t2i) / 2, hallucinated captions as extra negatives), the one of `no-hacl`
trains on L_gen alone (the built-in model's default recipe until 2026-11-30; the default now has no
connector-alignment stage: stage 0's word targets do its job). Then world POPE x3 (score
mode) and CHAIR for every model, each arm's mean over seeds with a 95 % bootstrap CI over images
pooled across seeds, and HACL's paired difference to no-HACL.

    python studies/hacl_world.py --out runs/hacl [--seeds 0,1,2]

Models go to OUT/<arm>-s<seed>/ (each stage resumes; the two arms of a seed share one stage 0,
copied from whichever trained it first, so both start from the same vision tower), evaluations to
OUT/eval/<arm>-s<seed>/, the table to OUT/hacl.md and the results with their provenance to
studies/results/hacl_world/<date>_<git sha>.json. `--train-only` trains the listed arms and seeds and
stops, so that the work can be split between runs.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ARMS = {"no-hacl": 0.0, "hacl": 1.0}  # arm: contrastive weight


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/hacl")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--hacl-steps", type=int, default=None,
                    help="alignment steps of both arms (default: HACLConfig.steps)")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--pope-images", type=int, default=300)
    ap.add_argument("--chair-images", type=int, default=500)
    args = ap.parse_args()

    import _arms
    from _provenance import write_result

    from halluscope import World
    from halluscope.models.tiny import TinyConfig
    from halluscope.training.hacl import HACLConfig, train_tiny_hacl
    from halluscope.training.sft import TrainConfig

    out, world = Path(args.out), World()
    steps = args.hacl_steps or HACLConfig().steps
    models: dict[str, list[str]] = {}
    for seed in map(int, args.seeds.split(",")):
        for arm in args.arms.split(","):
            folder = out / f"{arm}-s{seed}"
            for other in ARMS:  # both arms of a seed start from one stage 0 (not bitwise reproducible across runs)
                done = out / f"{other}-s{seed}" / "stage0.safetensors"
                if other != arm and done.exists() and not (folder / "stage0.safetensors").exists():
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copy(done, folder / "stage0.safetensors")
            hacl = HACLConfig(steps=steps, seed=seed, contrastive_weight=ARMS[arm])
            models.setdefault(arm, []).append(str(train_tiny_hacl(world, TrainConfig(seed=seed), hacl_config=hacl,
                                                                  out=folder)))
    if args.train_only:
        return
    rows = _arms.evaluate_arms(models, out, _arms.world_benches(world, args.pope_images, args.chair_images),
                               reference="no-hacl")
    meta = {"seeds": args.seeds, "hacl_steps": steps, "knobs": world.config.to_dict(), "train": TrainConfig().to_dict(),
            "tiny": TinyConfig().to_dict()}
    print(_arms.write_table(out, "hacl", rows, reference="no-hacl"))
    path = write_result("hacl_world", meta | {"reference": "no-hacl", "rows": rows},
                        model_hash=_arms.model_hashes(models))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
