"""Where do the built-in model's relation answers go wrong, and do its visual tokens know where they are?

For each trained model folder (with its world-qa relation answers from `recipe_seeds.py`, in
OUT/eval/s<seed>/world-qa_relation.jsonl beside it, or evaluated here into OUT/relation_geometry/):

- relation yes/no accuracy on bias-conforming items, split by whether the pair has a spatial prior
  and by the axis of its true relation (left/right: horizontal; above/below: vertical), and on pairs
  without a prior by (|column difference|, |row difference|);
- a linear probe (logistic regression, two thirds of the objects train it, the rest test it) of each
  object's row and column from its visual token, the projector's output the language model reads, on
  `--probe-images` training images (chance: 25 %);
- where the answer position looks: for the first `--attention-questions` relation questions, each decoder
  layer's and head's share of its attention over the image tokens that falls on the asked object's token (A)
  and on the other's (B). A head that takes both at once sums their positions, which says nothing of which
  is where;
- with `--captions`, the detailed captions (world-chair.jsonl in that folder) that name a class in two
  phrases, by what the scene holds of that class, and how often the second phrase is the caption's last.

    python studies/relation_geometry.py --models default=tiny,positions=runs/i19/pos/s0 \\
        --answers positions=runs/i19/pos/eval/s0

Writes studies/results/relation_geometry/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def geometry(records: list[dict], world) -> dict:
    """Accuracy on bias-conforming relation questions by (prior pair or not, axis) and, on pairs without a
    prior, by (|dcol|, |drow|)."""
    from halluscope.world.scene import relation

    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r["breaks"]:
            continue
        scene = world.scene("test", int(r["image_id"].split("-")[1]))
        a = next(o for o in scene.objects if o.cls == r["object"])
        b = next(o for o in scene.objects if o.cls == r["other"])
        axis = "horizontal" if relation(a, b) in ("left of", "right of") else "vertical"
        pair = "prior pair" if r["prior"] is not None else "no prior"
        keys = [f"{pair}, {axis}", f"{pair}, {axis}, label {r['label']}"]
        if r["prior"] is None:
            keys.append(f"no prior, |dcol| {abs(a.col - b.col)}, |drow| {abs(a.row - b.row)}")
        for k in keys:
            groups[k][0] += r["prediction"] == r["label"]
            groups[k][1] += 1
    return {k: {"n": n, "accuracy": round(100 * c / n, 1)} for k, (c, n) in sorted(groups.items())}


def position_probe(adapter, world, n_images: int) -> dict:
    """Held-out accuracy of linear probes of an object's row and column from its visual token."""
    import numpy as np
    import torch

    from halluscope.diagnose.vision import probe_accuracy
    from halluscope.models.parts import visual_tokens
    from halluscope.training.sft import pixel_values
    from halluscope.world import GRID

    scenes = [world.scene("train", i) for i in range(n_images)]
    tokens = []
    with torch.no_grad():
        for i in range(0, n_images, 500):
            px = pixel_values(np.stack([world.render_array(s) for s in scenes[i:i + 500]]))
            tokens.append(torch.stack(visual_tokens(adapter.model, pixel_values=px)).reshape(len(px), GRID * GRID, -1))
    tokens = torch.cat(tokens)
    objects = [(tok[o.row * GRID + o.col], o.row, o.col) for s, tok in zip(scenes, tokens) for o in s.objects]
    x = torch.stack([t for t, _, _ in objects])
    out = {"objects": len(objects)}
    for axis, name in ((1, "row"), (2, "column")):
        y = torch.tensor([o[axis] for o in objects])
        out[f"{name}_probe_accuracy"] = round(100 * probe_accuracy(x, y), 1)
    return out


def attention_to_pair(adapter, world, records: list[dict], n_questions: int) -> dict:
    """Mean share of each layer's and head's image attention, from the last prompt token (where the answer is
    read), on the visual token of the relation's first object (A) and of its second (B)."""
    import torch

    from halluscope.world import GRID

    image_token = adapter.processor.tokenizer.convert_tokens_to_ids(adapter.processor.image_token)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in records[:n_questions]:
        scene = world.scene("test", int(r["image_id"].split("-")[1]))
        cells = [next(o.row * GRID + o.col for o in scene.objects if o.cls == c) for c in (r["object"], r["other"])]
        inputs = adapter.build_inputs([world.render(scene)], [r["text"]])
        with torch.no_grad():
            attentions = adapter.model(**inputs, output_attentions=True).attentions
        image = (inputs["input_ids"][0] == image_token).nonzero().flatten()
        for layer, att in enumerate(attentions):
            a = att[0, :, -1, image]  # heads x image tokens
            share = a / a.sum(-1, keepdim=True).clamp_min(1e-9)
            for head in range(len(a)):
                for k, cell in enumerate(cells):
                    sums[f"layer {layer} head {head}"][k] += share[head, cell].item()
    n = min(n_questions, len(records))
    return {k: {"A": round(a / n, 3), "B": round(b / n, 3)} for k, (a, b) in sums.items()}


def caption_repeats(records: list[dict], world) -> dict:
    """Classes named in two phrases of one caption, by what the scene holds: once ("present once"), several
    of different colours named one by one with the right total ("split, right count"), several with the wrong
    total, or none ("absent"); and how many of them are named again in the caption's last phrase."""
    from halluscope.world.language import parse_world_caption

    kinds: dict[str, int] = defaultdict(int)
    last = captions = 0
    for r in records:
        if not r["repeats_phrase"]:
            continue
        parsed = parse_world_caption(r["caption"])
        if parsed is None:
            kinds["unparsed caption"] += 1
            continue
        captions += 1
        phrases = parsed[0].phrases
        counts = world.scene("test", int(r["id"].split("-")[1])).counts()
        for cls in dict.fromkeys(p.cls for p in phrases):
            at = [i for i, p in enumerate(phrases) if p.cls == cls]
            if len(at) < 2:
                continue
            have, named = counts.get(cls, 0), sum(phrases[i].n for i in at)
            kinds["absent" if not have else "present once" if have == 1 else
                  "split, right count" if named == have else "several, wrong count"] += 1
            last += at[-1] == len(phrases) - 1
    return {"captions": len(records), "captions_repeating": captions, "classes": dict(kinds),
            "repeat_is_last_phrase": last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="name=folder,...; 'tiny' is the default built-in model")
    ap.add_argument("--answers", default=None, help="name=folder,... holding world-qa_relation.jsonl already "
                                                    "(else the relation questions are answered here)")
    ap.add_argument("--qa-images", type=int, default=500)
    ap.add_argument("--probe-images", type=int, default=3000)
    ap.add_argument("--attention-questions", type=int, default=300)
    ap.add_argument("--captions", default=None, help="name=folder,... holding world-chair.jsonl")
    ap.add_argument("--out", default="runs/relation_geometry")
    args = ap.parse_args()

    from _provenance import model_hash, parse_kv, write_result

    from halluscope import World, load_model
    from halluscope.runner import read_jsonl, run_benchmark
    from halluscope.tasks.world import WorldQA
    from halluscope.zoo.tiny import tiny_path, tiny_recipe

    world = World()
    models, answers = parse_kv(args.models, "--models"), parse_kv(args.answers, "--answers")
    models = {k: tiny_path(tiny_recipe(world)) if v == "tiny" else Path(v) for k, v in models.items()}
    rows = {}
    for name, folder in models.items():
        adapter = load_model(str(folder))
        where = Path(answers[name]) if name in answers else Path(args.out) / name
        if name not in answers:
            run_benchmark(WorldQA(world, "relation", n_images=args.qa_images), adapter, where, batch_size=64,
                          progress=False)
        records = read_jsonl(where / "world-qa_relation.jsonl")
        rows[name] = {"folder": str(folder), "answers": str(where), "geometry": geometry(records, world),
                      "positions": position_probe(adapter, world, args.probe_images),
                      "attention_from_answer": attention_to_pair(adapter, world, records, args.attention_questions)}
        print(name, json.dumps(rows[name]["positions"]), flush=True)
        heads = rows[name]["attention_from_answer"]
        top = sorted(heads.items(), key=lambda kv: -(kv[1]["A"] + kv[1]["B"]))[:2]
        print("  answer position's image attention on A / B, top heads:", top)
        for k, v in rows[name]["geometry"].items():
            if "|" not in k:
                print(f"  {k}: {v['accuracy']} % of {v['n']}")
    for name, folder in parse_kv(args.captions, "--captions").items():
        rows.setdefault(name, {})["caption_repeats"] = caption_repeats(
            read_jsonl(Path(folder) / "world-chair.jsonl"), world)
        print(name, "captions:", json.dumps(rows[name]["caption_repeats"]), flush=True)
    path = write_result("relation_geometry", {"rows": rows},
                        model_hash={name: model_hash(folder) for name, folder in models.items()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
