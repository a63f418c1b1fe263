"""What the adversarial gap rests on: reads the world-pope records of evaluated runs (the JSONL lines `halluscope
eval` and `recipe_seeds.py` write) and splits each split's absent-object questions by what the asked class is to
the image:

- partner: the co-occurrence partner of a class in the image (`WorldConfig.cooccurrence_pairs`: a knife asked of
  an image with a fork and no knife);
- same scene: another member of the image's scene type (a plate in a kitchen);
- other: a class of another scene.

For each: how many questions and the share answered "yes" (false positives). POPE's adversarial split asks about
the classes that co-occur most with those present; in a world of four classes per scene, images with the three
classes POPE needs hold most of their scene already, so most of its negatives come from other scenes.

    python studies/pope_negatives.py runs/i19/combo/eval/s1 runs/i19/cand32/eval/s1 ...

The images are the default world's test split (the runs must have been evaluated on it), or that of the world
`recipe_relation_places.py --merged-scenes` / `--all-paired` trains in, with the same flag. Writes
studies/results/pope_negatives/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

KINDS = ("partner", "same scene", "other")


def negatives(path: Path, world) -> dict:
    partner = world.config.partners()
    scene_of = {c: s for s, members in world.config.scenes.items() for c in members}
    asked, yes = Counter(), Counter()
    for line in path.open():
        r = json.loads(line)
        if r["label"] != "no":
            continue
        scene = world.scene("test", int(r["image_id"].rsplit("-", 1)[1]))
        present, cls = set(scene.classes), r["object"]
        kind = ("partner" if any(partner.get(c) == cls for c in present)
                else "same scene" if scene_of[cls] == scene.scene_type else "other")
        asked[kind] += 1
        yes[kind] += r["prediction"] == "yes"
    n = sum(asked.values())
    return {"negatives": n, "false positives": sum(yes.values()),
            **{k: {"questions": asked[k], "false positive %": round(100 * yes[k] / asked[k], 1) if asked[k] else None}
               for k in KINDS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="folders holding world-pope_random.jsonl and world-pope_adversarial.jsonl")
    ap.add_argument("--merged-scenes", action="store_true", help="the runs' world has the two merged scene types")
    ap.add_argument("--all-paired", action="store_true", help="the runs' world pairs every class")
    args = ap.parse_args()
    from _provenance import write_result
    from halluscope import World

    if args.merged_scenes:
        from recipe_relation_places import merge_scenes

        merge_scenes()
    if args.all_paired:
        from recipe_relation_places import pair_all

        pair_all()
    world = World()
    result = {run: {split: negatives(Path(run) / f"world-pope_{split}.jsonl", world)
                    for split in ("random", "adversarial")} for run in args.runs}
    for run, splits in result.items():
        print(run, json.dumps(splits))
    write_result("pope_negatives", {"runs": result})


if __name__ == "__main__":
    main()
