"""Probe: `recipe_seeds.py` with relation training answers that say where both objects are before the verdict:
"Is the fork left of the cup?" -> "one three , two one , no" (row and column of each, one to four).

Continued training shows why (`verification_gap.py --kind relation_cot`): the model fetches one named object's
place well and compares two places it has written, but does not fetch two and compare them in one step.
Does the same hold when the model learns relations this way from the start? The library's questions stay as
they are; this script replaces the training relation answers (`verification_gap.reason_relations`) and makes
world-qa:relation generate its answers (10 tokens, read by POPE's parser, as for any free-text answer)
instead of scoring "yes" against "no", for its own run only, so its models must go to their own --out folder.

    python studies/recipe_relation_places.py --out runs/i19/places --seeds 0

Takes every option of recipe_seeds.py; its results file records this script's command line.
"""

from __future__ import annotations

from halluscope import World
from halluscope.tasks import world as tasks_world


def main() -> None:
    import verification_gap  # siblings: `python studies/X.py` puts studies/ on sys.path

    verification_gap.reason_relations(World)
    post_init = tasks_world.WorldQA.__post_init__

    def generate_relations(self) -> None:
        post_init(self)
        if self.kind == "relation":
            self.mode, self.max_new_tokens = "generate", 10

    tasks_world.WorldQA.__post_init__ = generate_relations
    import recipe_seeds

    recipe_seeds.main()


if __name__ == "__main__":
    main()
