"""Are the built-in model's repeated phrases a greedy-decoding accident? If the model's own sequence
probabilities preferred captions that follow the grammar, beam search, which looks for the likelier whole
caption, would repeat less than greedy decoding. This study captions the first N test images of the world in
the detailed style with 1, 3 and 5 beams (transformers' `generate`; halluscope's decoding methods are
single-beam) and reads every caption's claims as world-chair does:

- the share of captions that name a class in two phrases (the grammar never does), overall and split by whether
  the scene has a class more than once (which the grammar writes as one phrase, "two lamps");
- the share of relation claims that are false, and of object claims that are (CHAIR_i over claims).

    python studies/caption_beams.py --model ~/.cache/halluscope/tiny-<hash> --images 300

Writes studies/results/caption_beams/<date>_<sha>.json with its provenance.
"""

from __future__ import annotations

import argparse
import time


def false_share(claims: list, kind: str) -> float:
    """Percentage of the claims of `kind` that are false."""
    judged = [c for c in claims if c.kind == kind]
    return round(100 * sum(not c.true for c in judged) / max(1, len(judged)), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a trained built-in model folder (default: the demo's model)")
    ap.add_argument("--images", type=int, default=300, help="test images captioned")
    ap.add_argument("--beams", default="1,3,5")
    ap.add_argument("--max-new-tokens", type=int, default=90)
    args = ap.parse_args()

    import torch
    from _provenance import model_hash, write_result

    from halluscope import World, load_model
    from halluscope.world import CAPTION_PROMPTS
    from halluscope.world.claims import caption_claims, repeats_a_phrase
    from halluscope.zoo.tiny import tiny_model_path

    torch.set_num_threads(1)
    world = World()
    path = args.model or str(tiny_model_path(world))
    adapter = load_model(path)
    scenes = [world.scene("test", i) for i in range(args.images)]
    grouped = [max(s.counts().values()) > 1 for s in scenes]
    prompt = CAPTION_PROMPTS["detailed"]
    rows = []
    for beams in (int(b) for b in args.beams.split(",")):
        start, captions = time.time(), []
        for i in range(0, len(scenes), 25):
            chunk = scenes[i:i + 25]
            inputs = adapter.build_inputs([world.render(s) for s in chunk], [prompt] * len(chunk))
            with torch.no_grad():
                out = adapter.model.generate(**inputs, max_new_tokens=args.max_new_tokens, num_beams=beams,
                                             do_sample=False, pad_token_id=adapter.tokenizer.pad_token_id)
            captions += adapter.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        claims = [c for text, s in zip(captions, scenes) for c in caption_claims(text, s, world.config)]
        repeats = [repeats_a_phrase(c) for c in captions]
        row = {"beams": beams, "captions": len(captions),
               "repeat_captions_pct": round(100 * sum(repeats) / len(captions), 1),
               **{f"repeat_pct_{name}": round(100 * sum(r for r, g in zip(repeats, grouped) if g == want)
                                             / max(1, sum(g == want for g in grouped)), 1)
                  for name, want in (("scenes_with_a_class_twice", True), ("scenes_without", False))},
               "scenes_with_a_class_twice": sum(grouped),
               "false_relation_claims_pct": false_share(claims, "relation"),
               "relation_claims": sum(c.kind == "relation" for c in claims),
               "false_object_claims_pct": false_share(claims, "object"),
               "seconds": round(time.time() - start, 1), "examples": captions[:3]}
        print(row, flush=True)
        rows.append(row)
    write_result("caption_beams", {"model": path, "images": args.images, "rows": rows}, model_hash=model_hash(path))


if __name__ == "__main__":
    main()
