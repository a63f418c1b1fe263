"""Probe: `recipe_seeds.py` with the captions listing classes in another order than the library's
(`language.CAPTION_ORDER`: one class of each scene type in turn).

In reading order (each class at its first object, row by row; the library's order until grammar 2) the model
repeated a class phrase in about 3 of 10 detailed captions, which the grammar never does: what to name next
depends on the whole image (a class already named at its first object must be skipped when its second one
comes up in the reading). In a fixed order it is the first class present after the one just named, a chain of
existence checks, which the model does well (POPE-random about 95 %). `--order class` is the world's class list
(fork, knife, cup, plate, car, ...: scene groups, so that the next class is usually a co-occurring one);
`--order interleaved` (the library's) takes one class of each scene type in turn (fork, car, tree, book, knife,
bus, ...), so that the next class is usually not one the scene suggests. This script replaces `objects_by_class`
(the grouping captions and their corrections list classes in) for its own run only, so its models must go to
their own --out folder.

    python studies/recipe_caption_order.py --out runs/i19/order --seeds 0 [--order reading]

Takes every option of recipe_seeds.py; its results file records this script's command line.
"""

from __future__ import annotations

import argparse

from halluscope.hallucinate import world as hallucinate_world
from halluscope.world import CLASSES, language


ORDERS = ("reading", "class", "interleaved")


def class_order(name: str) -> list[str] | None:
    """The classes in the order `name`: None for reading order, the world's class list, or one class of each
    (default) scene type in turn (the library's `CAPTION_ORDER`)."""
    if name == "reading":
        return None
    if name == "class":
        return list(CLASSES)
    return list(language.CAPTION_ORDER)


def use_caption_order(name: str) -> None:
    """Captions (and their corrections) list classes in `class_order(name)`, for this process."""
    order = class_order(name)
    by_class = language.objects_by_class

    def in_order(scene):
        groups = by_class(scene)
        if order is None:  # each class at its first object, row by row
            return dict(sorted(groups.items(), key=lambda item: (item[1][0].row, item[1][0].col)))
        return {cls: groups[cls] for cls in order if cls in groups}

    print("caption class order:", order or "reading", flush=True)
    language.objects_by_class = hallucinate_world.objects_by_class = in_order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--order", choices=ORDERS, default="reading")
    args, rest = ap.parse_known_args()
    use_caption_order(args.order)
    import recipe_seeds  # a sibling: `python studies/X.py` puts studies/ on sys.path

    recipe_seeds.main(rest)


if __name__ == "__main__":
    main()
