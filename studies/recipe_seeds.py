"""Is the built-in model's hallucination profile a property of the recipe, or of a lucky seed?
Trains the default recipe (every stage, from scratch) with several training seeds and runs the
demo's checks on each model, at the demo's benchmark sizes.

    python studies/recipe_seeds.py --out runs/recipe [--seeds 0,1,2 --train key=value,...]

`--train` overrides TrainConfig fields (e.g. steps=1000,batch_size=32) to try another recipe,
`--tiny` TinyConfig fields, `--knobs` the world's knobs (training and test).
Models go to OUT/s<seed>/ (each stage resumes), evaluations to OUT/eval/s<seed>/, and a table of
the four checks per seed, with the final loss, the seconds `train_log.json` records (instruction
tuning; stage 0 too when the recipe has no stage 1), to OUT/recipe_seeds.md, and the results with
their provenance (command, commit, versions, CPU, model hashes) to
studies/results/recipe_seeds/<date>_<git sha>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """`argv`: the options (a probe passes what it did not take itself); the results file records sys.argv."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/recipe")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train", default=None, help="TrainConfig overrides, e.g. steps=1000,batch_size=32")
    ap.add_argument("--tiny", default=None, help="TinyConfig overrides, e.g. tie_embeddings=True")
    ap.add_argument("--knobs", default=None, help="world knobs, e.g. scene_strength=0.9")
    ap.add_argument("--qa-mix", default=None, help="TrainConfig.qa_mix as type:share,..., e.g. "
                                                   "existence:0.5,attribute:0.1,attribute_yes_no:0.1,...")
    ap.add_argument("--task-mix", default=None, help="TrainConfig.task_mix as task:share,..., e.g. "
                                                     "detailed:0.35,short:0.05,qa:0.6")
    ap.add_argument("--train-only", action="store_true", help="train the listed seeds and stop")
    ap.add_argument("--pope-images", type=int, default=500)
    ap.add_argument("--chair-images", type=int, default=1000)
    ap.add_argument("--qa-images", type=int, default=500, help="world-qa images per kind (0: the four checks only)")
    ap.add_argument("--model", default=None, help="evaluate this trained model folder as the first seed's "
                                                  "instead of training it (e.g. the demo's cached model)")
    args = ap.parse_args(argv)

    import _arms
    from _provenance import model_hash, parse_kv, write_result

    from halluscope import World, load_model
    from halluscope.zoo.tiny import train_tiny
    from halluscope.models.tiny import TinyConfig
    from halluscope.training.sft import TrainConfig

    out, world = Path(args.out), World(**parse_kv(args.knobs, "--knobs"))
    overrides = parse_kv(args.train, "--train")
    for name in ("qa_mix", "task_mix"):
        if getattr(args, name):
            overrides[name] = {k: float(v) for k, v in (p.split(":") for p in getattr(args, name).split(","))}
    tiny = TinyConfig(**parse_kv(args.tiny, "--tiny"))
    rows = []
    for seed in map(int, args.seeds.split(",")):
        cfg = TrainConfig(**{**overrides, "seed": seed})
        folder = out / f"s{seed}"
        if args.model and seed == int(args.seeds.split(",")[0]):
            folder = Path(args.model)  # trained with this recipe and seed elsewhere (the hash is recorded)
        t = time.time()
        train_tiny(world, cfg, tiny, out=folder)
        print(f"seed {seed}: trained in {time.time() - t:.0f} s (0 if it was already there)", flush=True)
        if args.train_only:
            continue
        checks, chair = _arms.profile_checks(load_model(str(folder)), world, out / "eval" / f"s{seed}",
                                             args.pope_images, args.chair_images, args.qa_images)
        log = json.loads((folder / "train_log.json").read_text())
        rows.append({"seed": seed, "folder": str(folder), "checks": checks, "train_log_seconds": round(log["seconds"]),
                     "final_loss": log["loss"][-1][1], "chair_i": chair["chair_i"], "recall": chair["recall"],
                     "kinds": chair.get("kinds")})
    if args.train_only:
        return
    meta = {"seeds": args.seeds, "knobs": world.config.to_dict(), "train": TrainConfig(**overrides).to_dict(),
            "tiny": tiny.to_dict()}
    path = write_result("recipe_seeds", meta | {"rows": rows},
                        model_hash={f"s{r['seed']}": model_hash(r["folder"]) for r in rows})
    lines = ["| seed | " + " | ".join(c["check"] for c in rows[0]["checks"]) + " | CHAIR_i % | recall % | "
             "final loss | train_log seconds |", "|---" * (len(rows[0]["checks"]) + 5) + "|"]
    for r in rows:
        cells = [("met: " if c["holds"] else "missed: ") + c["value"] for c in r["checks"]]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + f" | {100 * r['chair_i']:.1f} | "
                     f"{100 * r['recall']:.1f} | {r['final_loss']:.3f} | {r['train_log_seconds']} |")
    met = sum(all(c["holds"] for c in r["checks"]) for r in rows)
    lines.append(f"\nAll {len(rows[0]['checks'])} checks met on {met} of {len(rows)} seeds.")
    table = "\n".join(lines) + "\n"
    (out / "recipe_seeds.md").write_text(table)
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
