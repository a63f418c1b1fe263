"""Probe: `recipe_seeds.py` with relation training questions whose "no" relation is drawn in proportion to
how often each relation is true in training scenes, as the existence questions draw their absent classes
(uniform negatives teach "a frequent value -> yes": left and right of are true 32 % of the time each, above
and below 18 %, so with uniform negatives "Is the A left of the B?" is "yes" 59 % of the time in training and
"Is the A above the B?" 40 %). The library's training questions stay as they are; this script replaces
`World.wrong_relation` (the draw of the "no" relation) for its own run only, so its models must go to their
own --out folder.

    python studies/recipe_balanced_relations.py --out runs/i19/posbal --seeds 0 --train position_targets=True

Takes every option of recipe_seeds.py; its results file records this script's command line.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from halluscope import World
from halluscope.world import RELATIONS


def relation_frequency(world: World, n_scenes: int = 4000) -> dict[str, float]:
    """How often each relation is the true one among the relation pairs of the first training scenes, to the
    hundredth (on the default world: 0.32 each side, 0.18 above and below)."""
    counts = Counter(rel for i in range(n_scenes) for _, rel, _ in world.scene("train", i).relations())
    return {r: round(counts[r] / sum(counts.values()), 2) for r in RELATIONS}


def main() -> None:
    frequency = relation_frequency(World())

    def wrong_relation(self: World, true: str, rng: np.random.Generator) -> str:
        others = [r for r in RELATIONS if r != true]
        p = np.array([frequency[r] for r in others])
        return others[rng.choice(len(others), p=p / p.sum())]

    print("relation frequencies:", frequency, flush=True)
    World.wrong_relation = wrong_relation
    import recipe_seeds  # a sibling: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main()


if __name__ == "__main__":
    main()
