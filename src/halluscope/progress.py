"""One progress bar for every long loop (evaluation, training, fitting), so they all look alike.

    with progress("loss") as bar:
        task = bar.add_task("train", total=steps, loss="-")
        ...
        bar.update(task, advance=1, loss=f"{loss:.3f}")
"""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress(*fields: str, transient: bool = False) -> Progress:
    """A rich `Progress`: description, bar, done/total, then `name value` for each of `fields` (set them
    with `add_task(..., name=...)` and `update(..., name=...)`), elapsed and remaining time."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, transient=transient)


__all__ = ["progress"]
