"""Which words do the visual tokens sit next to? For each object of the first `--images` test images, the
nearest word (cosine, against the model's input embeddings) to its cell's visual token, among the class words,
the colour words and, where the model has them, the place words of `verification_gap.PLACE_WORDS["own"]`.
Stage 0 puts each token next to its class and colour words (and place words, with `recipe_relation_places.py
--place-words own`); this says how much of that instruction tuning leaves.

    python studies/token_words.py runs/i19/placewords/s0 [--images 200]

Prints the share read right per word family (chance: 1 / the family's size); writes no file.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F
    from verification_gap import PLACE_WORDS  # siblings: `python studies/X.py` puts studies/ on sys.path

    from halluscope import World, load_model
    from halluscope.models.parts import visual_tokens
    from halluscope.training.sft import pixel_values
    from halluscope.world import CLASSES, COLORS, GRID

    adapter, world = load_model(args.model), World()
    tok, embed = adapter.processor.tokenizer, adapter.model.get_input_embeddings().weight.detach()
    families = {"class": (list(CLASSES), lambda o: o.cls), "colour": (list(COLORS), lambda o: o.color)}
    rows, cols = PLACE_WORDS["own"]
    if tok.convert_tokens_to_ids(rows[0]) != tok.unk_token_id:
        families |= {"row": (list(rows), lambda o: rows[o.row]), "column": (list(cols), lambda o: cols[o.col])}
    scenes = [world.scene("test", i) for i in range(args.images)]
    with torch.no_grad():
        tokens = visual_tokens(adapter.model, pixel_values=pixel_values(np.stack([world.render_array(s)
                                                                                   for s in scenes])))
    for name, (words, truth) in families.items():
        unit = F.normalize(embed[tok.convert_tokens_to_ids(words)], dim=-1)
        hits = [words[int((unit @ t[o.row * GRID + o.col]).argmax())] == truth(o)
                for s, t in zip(scenes, tokens) for o in s.objects]
        print(f"{name}: {100 * sum(hits) / len(hits):.1f} % of {len(hits)} objects (chance {100 / len(words):.1f} %)")


if __name__ == "__main__":
    main()
