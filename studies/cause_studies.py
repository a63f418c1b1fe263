"""The lab's cause studies (docs/studies/causes.md): each cause at its levels, trained on several seeds with the
study recipe, through `halluscope.causes.run_study` (the same as `halluscope study CAUSE`), with the results
copied to studies/results/causes/<cause>.json with their provenance (command, commit, versions, CPU, the hash of
every arm's model).

    python studies/cause_studies.py --causes cooccurrence,yes-bias [--seeds 0,1,2 --out runs/causes]

Arms already finished in OUT/<cause>/ are read, not redone, so the command resumes a study that stopped.
`--check` instead evaluates the study recipe (each seed) and the built-in model with the demo's profile checks,
to show that the smaller recipe hallucinates the same way (studies/results/causes/study_recipe_checks.json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--causes", default=None, help="comma-separated causes (default: all)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/causes")
    ap.add_argument("--check", action="store_true", help="profile checks of the study recipe against the default")
    args = ap.parse_args()

    from _provenance import model_hash, write_result

    from halluscope.causes import CAUSES, StudyConfig, run_study

    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    if args.check:
        return check(seeds, out)
    for name in (args.causes.split(",") if args.causes else list(CAUSES)):
        t0 = time.time()
        result = run_study(name, None, seeds, out / name, StudyConfig())
        hashes = {f"{a['level']}/s{a['seed']}": model_hash(a["model"]) for a in result["arms"]}
        path = write_result("causes", result | {"wall_seconds_this_run": round(time.time() - t0)},
                            path=Path(__file__).parent / "results" / "causes" / f"{name}.json", model_hash=hashes)
        print(f"{name}: wrote {path}", flush=True)


def check(seeds: list[int], out: Path) -> None:
    """The demo's profile checks (POPE random and adversarial, co-occurrence false positives, CHAIR on
    bias-breaking images) of the study recipe on each seed and of the built-in model, at the study's sizes."""
    import _arms
    from _provenance import model_hash, write_result

    from halluscope import World, load_model
    from halluscope.causes import StudyConfig, study_recipe
    from halluscope.zoo.tiny import tiny_model_path, train_tiny

    cfg = StudyConfig()
    rows = []
    models = {"built-in model": str(tiny_model_path())}
    for seed in seeds:
        world, tiny, train = study_recipe(cfg, seed)
        models[f"study recipe s{seed}"] = str(train_tiny(world, train, tiny))
    for name, folder in models.items():
        checks, chair = _arms.profile_checks(load_model(folder), World(), out / "check" / Path(folder).name,
                                             cfg.pope_images, cfg.chair_images)
        rows.append({"model": name, "folder": folder, "checks": checks, "chair_i": chair["chair_i"]})
        print(name, [("met" if c["holds"] else "missed") + ": " + c["value"] for c in checks], flush=True)
    path = write_result("causes", {"config": cfg.to_dict(), "rows": rows},
                        path=Path(__file__).parent / "results" / "causes" / "study_recipe_checks.json",
                        model_hash={r["model"]: model_hash(r["folder"]) for r in rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
