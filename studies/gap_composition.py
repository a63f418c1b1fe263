"""How much of the adversarial gap the test split's make-up decides: the four object checks (POPE-random, the
adversarial gap, false positives on co-occurring objects, CHAIR_i on breaking images) of trained models, on the
test split as the world draws it and on the same world's test split with its bias-breaking images drawn as they
were before the spatial and count priors existed.

A bias-breaking test image (`test_breaking_fraction` of them) breaks one kind of bias, drawn uniformly among those
the world has priors for (`SceneSampler.breaking_kinds`): a lone pair member, an unusual colour, both, and since
issue 19 a spatial prior's pair off its sides and a class with a count prior alone. With five kinds instead of
three, two breaking images in five hold a lone pair member instead of two in three, and the lone member's absent
partner is what POPE's adversarial split finds the models imagine. The second make-up ("three kinds") draws among
lone, colour and both again; everything else about the scenes is drawn as before, so the models (trained on
training scenes, which never break a bias) are the same.

    python studies/gap_composition.py runs/i19/g3/s0 runs/i19/g3/s1 ... --out runs/i19/gap_composition

Each model is evaluated into OUT/<make-up>/<model folder name> (a rerun resumes). Writes
studies/results/gap_composition/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MAKEUPS = ("five kinds (as drawn)", "three kinds (before issue 19)")


def three_kind_world():
    """The default world whose test images break a bias among lone, colour and both only."""
    from halluscope import World
    from halluscope.world.scene import SceneSampler

    class ThreeKinds(SceneSampler):
        def breaking_kinds(self) -> list[str]:
            return [k for k in super().breaking_kinds() if k in ("lone", "color", "both")]

    world = World()
    world._sampler = ThreeKinds(world.config)
    return world


def pope_images_with_lone_member(world, n_images: int) -> int:
    """How many of POPE's images (the first `n_images` test images with three classes or more) hold a lone pair
    member by the world's breaking draw."""
    return sum(any(b.startswith("lone:") for b in s.breaks_bias) for s in world.pope_scenes(n_images))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="trained built-in model folders")
    ap.add_argument("--out", default="runs/gap_composition")
    ap.add_argument("--pope-images", type=int, default=500)
    ap.add_argument("--chair-images", type=int, default=1000)
    args = ap.parse_args()

    import _arms
    from _provenance import model_hash, write_result
    from pope_negatives import negatives

    from halluscope import World, load_model

    worlds = dict(zip(MAKEUPS, (World(), three_kind_world())))
    rows = []
    for model in args.models:
        adapter = load_model(model)
        for makeup, world in worlds.items():
            folder = Path(args.out) / makeup.split()[0] / Path(model).name
            checks, chair = _arms.profile_checks(adapter, world, folder, args.pope_images, args.chair_images)
            split = {s: negatives(folder / f"world-pope_{s}.jsonl", world) for s in ("random", "adversarial")}
            row = {"model": model, "makeup": makeup, "checks": checks, "chair_i": chair["chair_i"],
                   "pope_images_with_lone_member": pope_images_with_lone_member(world, args.pope_images),
                   "pope_negatives": split}
            rows.append(row)
            print(Path(model).name, makeup, " | ".join(f"{c['check']}: {c['value']}" for c in checks),
                  f"| partners asked (adversarial) {split['adversarial']['partner']['questions']}, "
                  f"answered yes {split['adversarial']['partner']['false positive %']} %", flush=True)
    path = write_result("gap_composition", {"pope_images": args.pope_images, "chair_images": args.chair_images,
                                            "rows": rows},
                        model_hash={Path(m).name: model_hash(m) for m in args.models})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
