"""Training-based mitigation on the built-in model, several seeds per arm, in one run: SFT on the
corrections (control) vs DPO vs DDPO from the same model, with the same pairs budget and steps,
then world POPE x3 (score mode) and CHAIR for every aligned model, plus the starting model.
Reports each arm's mean over seeds, a 95 % bootstrap CI over images pooled across seeds, and the
paired difference to the starting model.

    python studies/align_world.py --model tiny --out runs/align [--seeds 0,1,2 --steps 200 --lr 2e-5]

Everything resumes: aligned models in OUT/<arm>-s<seed>/, their evaluations in OUT/eval/...,
the table in OUT/align.md, and the results with their provenance in
studies/results/align_world/<date>_<git sha>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", default="runs/align")
    ap.add_argument("--arms", default="sft,dpo,ddpo")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--n-pairs", type=int, default=512)
    ap.add_argument("--pope-images", type=int, default=300)
    ap.add_argument("--chair-images", type=int, default=500)
    args = ap.parse_args()

    import _arms
    from _provenance import write_result

    from halluscope import World, load_model
    from halluscope.training.align import AlignConfig, align

    out, world = Path(args.out), World()
    base = load_model(args.model).name
    models = {"start": [base]}
    for arm in args.arms.split(","):
        for seed in map(int, args.seeds.split(",")):
            cfg = AlignConfig(steps=args.steps, lr=args.lr, n_pairs=args.n_pairs, seed=seed,
                              pair_start=150_000 + 10_000 * seed)
            path = align(load_model(base), method=arm, config=cfg, output_dir=out / f"{arm}-s{seed}")
            models.setdefault(arm, []).append(str(path))
    rows = _arms.evaluate_arms(models, out, _arms.world_benches(world, args.pope_images, args.chair_images),
                               reference="start")
    meta = {"model": base, "steps": args.steps, "lr": args.lr, "n_pairs": args.n_pairs, "seeds": args.seeds}
    print(_arms.write_table(out, "align", rows, reference="start"))
    path = write_result("align_world", meta | {"reference": "start", "rows": rows},
                        model_hash=_arms.model_hashes(models))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
