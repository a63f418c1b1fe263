"""The base of every config dataclass (methods, training, world): one way to fail, to check a range,
to serialise, and to cite the paper whose defaults it carries (trl's `_paper`)."""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, fields
from typing import Any, ClassVar


@dataclass
class Config:
    """Subclasses are dataclasses whose fields carry `metadata={"help": ...}`; `_paper` names the
    paper the defaults come from ({"title", "authors", "venue", "url"}), empty where there is none."""

    _paper: ClassVar[dict[str, str]] = {}

    def fail(self, name: str, fix: str) -> None:
        """Raise the one-line error of an invalid field: which config, which field, its value, the fix."""
        raise ValueError(f"{type(self).__name__}.{name}={getattr(self, name)!r} is invalid: {fix}")

    def check_at_least(self, lo: int, *names: str, why: str = "") -> None:
        """Fail on the first of `names` whose value is below `lo` ("use a value >= lo", then `why`)."""
        for name in names:
            if getattr(self, name) < lo:
                self.fail(name, f"use a value >= {lo}" + (f" {why}" if why else ""))

    def check_range(self, name: str, lo: float, hi: float, fix: str = "") -> None:
        value = getattr(self, name)
        if not lo <= value <= hi:
            self.fail(name, f"must be in [{lo}, {hi}]" + (f"; {fix}" if fix else ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recipe(self) -> dict[str, Any]:
        """`to_dict()` for naming a cached model by a hash of its recipe: a field whose metadata sets
        `recipe_omits_default` (one added after models were cached) is left out while it holds its default, so that
        those models keep their names and are not trained again."""
        out = self.to_dict()
        for f in fields(self):
            if f.metadata.get("recipe_omits_default") and out[f.name] == _default(f):
                del out[f.name]
        return out

    @classmethod
    def help(cls) -> dict[str, dict[str, Any]]:
        """{field: {"default": ..., "help": ...}}, for the CLI and the docs."""
        return {f.name: {"default": _default(f), "help": f.metadata.get("help", "")} for f in fields(cls)}

    @classmethod
    def paper(cls) -> dict[str, str]:
        return dict(cls._paper)


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


__all__ = ["Config"]
