"""Probe: `recipe_seeds.py` with the captions listing classes in one fixed order (the world's class list:
fork, knife, cup, plate, car, ...) instead of the reading order of each class's first object.

The default model repeats a class phrase in about 3 of 10 detailed captions, which the grammar never does.
In reading order, what to name next depends on the whole image (a class already named at its first object
must be skipped when its second one comes up in the reading); in a fixed order it is the first class
present after the one just named, a chain of existence checks, which the model does well (POPE-random about
95 %). The library's grammar stays as it is; this script replaces `objects_by_class` (the grouping captions
and their corrections list classes in) for its own run only, so its models must go to their own --out folder.

    python studies/recipe_caption_order.py --out runs/i19/order --seeds 0

Takes every option of recipe_seeds.py; its results file records this script's command line.
"""

from __future__ import annotations

from halluscope.hallucinate import world as hallucinate_world
from halluscope.world import CLASSES, language


def main() -> None:
    reading_order = language.objects_by_class

    def class_order(scene):
        groups = reading_order(scene)
        return {cls: groups[cls] for cls in CLASSES if cls in groups}

    language.objects_by_class = hallucinate_world.objects_by_class = class_order
    import recipe_seeds  # a sibling: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main()


if __name__ == "__main__":
    main()
