"""Probe: `recipe_seeds.py` with relation training questions whose "no" relation is drawn in proportion to
how often each relation is true in training scenes, as the existence questions draw their absent classes
(uniform negatives teach "a frequent value -> yes": left and right of are true 32 % of the time each, above
and below 18 %, so with uniform negatives "Is the A left of the B?" is "yes" 59 % of the time in training and
"Is the A above the B?" 40 %). The library's training questions stay as they are; this script replaces
`World.question`'s relation branch for its own run only, so its models must go to their own --out folder.

    python studies/recipe_balanced_relations.py --out runs/i19/posbal --seeds 0 --train position_targets=True

Takes every option of recipe_seeds.py; its results file records this script's command line.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from halluscope import World
from halluscope.world import QUESTION_TEMPLATES, RELATIONS
from halluscope.world import world as world_module


def relation_frequency(world: World, n_scenes: int = 4000) -> dict[str, float]:
    """How often each relation is the true one among the relation pairs of the first training scenes, to the
    hundredth (on the default world: 0.32 each side, 0.18 above and below)."""
    counts = Counter(rel for i in range(n_scenes) for _, rel, _ in world.scene("train", i).relations())
    return {r: round(counts[r] / sum(counts.values()), 2) for r in RELATIONS}


def main() -> None:
    original = world_module.World.question
    frequency: dict[str, float] = {}

    def question(self: World, scene, qtype: str, rng: np.random.Generator):
        if qtype != "relation":
            return original(self, scene, qtype, rng)
        rels = scene.relations()
        if not rels:
            return None
        a, rel, b = rels[rng.integers(len(rels))]
        answer = "yes"
        if rng.random() < 0.5:
            others = [r for r in RELATIONS if r != rel]
            p = np.array([frequency[r] for r in others])
            rel, answer = others[rng.choice(len(others), p=p / p.sum())], "no"
        return {"type": qtype, "question": QUESTION_TEMPLATES["relation"].format(a, rel, b), "answer": answer}

    frequency.update(relation_frequency(World()))
    print("relation frequencies:", frequency, flush=True)
    world_module.World.question = question
    import recipe_seeds  # a sibling: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main()


if __name__ == "__main__":
    main()
