"""Probe: `recipe_seeds.py` with training captions whose list sometimes names an object that is not there, with
no loss on it, and whose relation sentences still relate objects that are.

A quarter of the default model's relation sentences relate an object its caption's list imagined
(`caption_errors.py --scenes`): in training the list is always right, so a relation sentence can copy its two
classes from the list and never has to look. Here a share of the training captions (`--recover-prob`, 0.3) name
one more class, the one the world's priors suggest (the absent co-occurrence partner of a class in the image,
else an absent class of the image's scene type), at its place in the list's class order, in the prior's colour;
its tokens carry no loss, so the model is not taught to say it, only to go on after it: the relation sentences
after it relate the objects that are there, as before. It is the exposure-bias remedy of training on inputs with
the model's own kind of error (scheduled sampling), applied to the one error that breaks the relations after it.

    python studies/recipe_recover.py --out runs/i19/recover --seeds 0 [--recover-prob 0.3]

The imagined phrase and its own comma are spliced into the true caption, so that every token with a loss is the
true caption's; `--leaky-mask` renders it as one of the list's phrases instead, as the first runs did (1745f9e,
27906ad), where the comma or "and" before it, trained, says that another object follows. Results:
docs/studies/tiny-recipe.md, "Probes on grammar 3".

Its models must go to their own --out folder. Takes every option of recipe_seeds.py; its results file records
this script's command line.
"""

from __future__ import annotations

import argparse

import numpy as np


class MaskedText(str):
    """An answer with character spans that carry no loss."""

    masked: tuple[tuple[int, int], ...] = ()


def imagined_class(scene, config, rng: np.random.Generator) -> str | None:
    """The class a prior-driven model would add: an absent partner of a class in the image, else an absent class
    of the scene type; None when there is neither."""
    present = set(scene.classes)
    partners = config.partners()
    for pool in ([partners[c] for c in scene.classes if c in partners and partners[c] not in present],
                 [c for c in config.scenes[scene.scene_type] if c not in present]):
        if pool:
            return pool[int(rng.integers(len(pool)))]
    return None


def recovering_captions(prob: float, leak: bool = False) -> None:
    """Training detailed captions (train split only) name an imagined class with probability `prob`, masked.
    `leak`: the list rendered with the imagined phrase as one of its own (the first runs), so that the comma or
    "and" before it, which says that another object follows, carries loss."""
    from halluscope import World
    from halluscope.world import language
    from halluscope.world.config import WorldConfig
    from halluscope.world.glyphs import COLORS

    config, caption = WorldConfig(), World.caption
    rank = {c: i for i, c in enumerate(language.CAPTION_ORDER)}

    def patched(scene, style: str = "detailed") -> str:
        text = caption(scene, style)
        if scene.split != "train" or style != "detailed":
            return text
        rng = np.random.default_rng([scene.index, 7])  # the scene's own draw: the same caption every time
        cls = imagined_class(scene, config, rng) if rng.random() < prob else None
        if cls is None:
            return text
        color = config.usual_color(cls) or list(COLORS)[int(rng.integers(len(COLORS)))]
        phrase = language.Phrase(cls, 1, color=color)
        added = phrase.render()
        parts = language.caption_parts(scene, style)
        if leak:
            parts.phrases = sorted([*parts.phrases, phrase], key=lambda p: rank[p.cls])
            out = MaskedText(parts.render(style))
            start = out.index(added)
            out.masked = ((start, start + len(added)),)
            return out
        # The true caption's tokens, each trained as before, with the imagined phrase and one comma spliced in
        # after the phrase before it in the class order (before the first phrase when none is).
        before = [p for p in parts.phrases if rank[p.cls] < rank[cls]]
        at = len(language.DETAILED_SENTENCE.split("{}")[0])
        for p in before:
            at = text.index(p.render(), at) + len(p.render())
        insert = f", {added}" if before else f"{added}, "
        out = MaskedText(text[:at] + insert + text[at:])
        out.masked = ((at, at + len(insert)),)
        return out

    World.caption = staticmethod(patched)


def masked_batches() -> None:
    """The Batcher gives no loss to the tokens of an answer's masked spans."""
    from halluscope.training import sft

    call = sft.Batcher.__call__

    def patched(self, examples):
        batch = call(self, examples)
        for row, (_, turns) in enumerate(examples):
            if not any(getattr(answer, "masked", ()) for _, answer in turns):
                continue  # most rows: nothing to mask, so no second tokenization
            at = 0
            for i, (prompt, answer) in enumerate(turns):
                at += len(self.turn_ids(prompt, first=i == 0))
                enc = self.tok(answer, add_special_tokens=False, return_offsets_mapping=True)
                for k, (s, e) in enumerate(enc["offset_mapping"]):
                    if any(s < me and e > ms for ms, me in getattr(answer, "masked", ())):
                        batch["labels"][row, at + k] = -100
                at += len(enc["input_ids"]) + 1  # and EOS
        return batch

    sft.Batcher.__call__ = patched


def main() -> None:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--recover-prob", type=float, default=0.3)
    ap.add_argument("--leaky-mask", action="store_true", help="the first runs' masking (see recovering_captions)")
    args, rest = ap.parse_known_args()
    recovering_captions(args.recover_prob, leak=args.leaky_mask)
    masked_batches()
    import recipe_seeds  # a sibling: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main(rest)


if __name__ == "__main__":
    main()
