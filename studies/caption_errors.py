"""Where in a caption the built-in model goes wrong: reads world-chair records (the JSONL lines `halluscope eval`
and `recipe_seeds.py` write, with every claim judged) and counts, per run folder,

- captions repeating a class phrase, and false object claims (absent classes) per object claim;
- where the false objects stand: the caption's last phrase or before it;
- how far each false object is, in a class list, from the class named just before it (+1: the next class of
  the list, which in a fixed-order grammar is the one the model should skip if absent). `--order` picks the
  list, as `recipe_caption_order.py` does: the world's class list (default) or one class of each scene in turn;
- captions with a false object that also leave out a class the image holds (the false class stands in for a real
  object) or not (an object added);
- repeated phrases by how many objects of the repeated class the image holds (2: the model listed two objects one
  by one instead of one plural phrase; 1: the second phrase stands for something else);
- relation sentences by what makes them right or wrong: an absent class, a class related to itself, a class the
  image holds more than once, or two single objects, split by whether the places written before the sentence
  are theirs and whether the relation said is the one those written places make (the default world's test split).

    python studies/caption_errors.py runs/i19/order/eval/s0 runs/recipe/eval/s0 ... [--order interleaved]

Writes studies/results/caption_errors/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

def placed_relations(caption: str, scene) -> Counter:
    """The relation sentences of `caption` that follow a place sentence, by what makes them right or wrong."""
    from halluscope.world.claims import parse_claims
    from halluscope.world.scene import Cell, relation

    objs: dict[str, list] = {}
    for o in scene.objects:
        objs.setdefault(o.cls, []).append(o)
    out = Counter()
    for claim in parse_claims(caption).claims:
        if claim.kind != "relation" or claim.places is None:
            continue
        (rel, b), a, at = claim.value, claim.cls, [Cell(*cell) for cell in claim.places]
        agrees = "relation agrees with the places written" if relation(*at) == rel else \
            "relation disagrees with the places written"
        if a not in objs or b not in objs:
            kind = "absent class"
        elif a == b:
            kind = "class related to itself"
        elif len(objs[a]) > 1 or len(objs[b]) > 1:
            kind = "class held more than once"
        else:
            oa, ob = objs[a][0], objs[b][0]
            right = "right" if relation(oa, ob) == rel else "wrong"
            placed = all((o.row, o.col) == (p.row, p.col) for o, p in ((oa, at[0]), (ob, at[1])))
            kind = f"{right}, places {'theirs' if placed else 'not theirs'}"
        out[f"{kind}; {agrees}"] += 1
    return out


def caption_errors(path: Path, order: list[str], world=None) -> dict:
    captions = repeats = objects = false = 0
    where, step, standing, repeated, relations = Counter(), Counter(), Counter(), Counter(), Counter()
    for line in path.open():
        record = json.loads(line)
        captions += 1
        repeats += bool(record["repeats_phrase"])
        named = [c for c in record["claims"] if c["kind"] == "object"]
        objects += len(named)
        if world is not None:
            scene = world.scene("test", int(record["id"].rsplit("-", 1)[1]))
            counts = scene.counts()
            listed = {c["class"] for c in named}
            if any(not c["true"] for c in named):
                standing["leaves out a class the image holds" if set(counts) - listed else "names every class"] += 1
            for c in record["claims"]:
                if c["kind"] == "count" and c.get("repeat"):
                    repeated[str(counts.get(c["class"], 0))] += 1
            relations += placed_relations(record["caption"], scene)
        for i, claim in enumerate(named):
            if claim["true"]:
                continue
            false += 1
            where["last phrase" if i == len(named) - 1 else "before the last"] += 1
            if i:
                step[str(order.index(claim["class"]) - order.index(named[i - 1]["class"]))] += 1
    steps = dict(sorted(step.items(), key=lambda kv: int(kv[0])))
    out = {"captions": captions, "repeating a class phrase": repeats, "object claims": objects,
           "false object claims": false, "false objects by place": dict(where),
           "false objects by class-list step from the class before": steps}
    if world is not None:
        out |= {"captions with a false object": dict(standing),
                "repeated phrases by the objects of their class in the image": dict(sorted(repeated.items())),
                "relation sentences after places": dict(relations.most_common())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="folders holding world-chair.jsonl")
    from recipe_caption_order import ORDERS, class_order

    ap.add_argument("--order", choices=ORDERS, default="class", help="the class list steps are counted in")
    ap.add_argument("--scenes", action="store_true", help="also read each caption against its scene (the default "
                                                          "world's test split): substitutions, repeats, relations")
    args = ap.parse_args()
    from _provenance import write_result

    from halluscope import World

    order = class_order(args.order)
    world = World() if args.scenes else None
    result = {run: caption_errors(Path(run) / "world-chair.jsonl", order, world) for run in args.runs}
    for run, counts in result.items():
        print(run, counts)
    write_result("caption_errors", {"order": order, "runs": result})


if __name__ == "__main__":
    main()
