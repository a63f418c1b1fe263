"""`key=value,...` text for config dataclasses: the command line's `--train-args`, `--method-args`,
`--world-args` ..., and the study scripts' options.

    parse("steps=200,lr=2e-5,task_mix={'qa': 1}")  -> {"steps": "200", "lr": "2e-5", "task_mix": "{'qa': 1}"}
    config_kwargs(TrainConfig, parse(...), "--train-args") -> {"steps": 200, "lr": 2e-05, "task_mix": {"qa": 1}}

Values are read against the field's annotated type, so `steps=abc` fails naming the key and the type
it wants, and an unknown key fails listing the valid ones. Every error is a one-line `ValueError`
that starts with `what` (the option's name) where one is given.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any

_NONE = ("none", "null")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _prefix(what: str) -> str:
    return f"{what}: " if what else ""


def parse(text: str | None, what: str = "") -> dict[str, str]:
    """'a=1,b=[1,2],c=x' -> {'a': '1', 'b': '[1,2]', 'c': 'x'}: commas inside brackets or quotes do not
    split, so a list or dict value needs no escaping."""
    out: dict[str, str] = {}
    for part in _split(text or ""):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{_prefix(what)}{part!r} is not key=value (example: alpha=1,beta=0.1)")
        if key in out:
            raise ValueError(f"{_prefix(what)}{key!r} is given twice")
        out[key] = value.strip()
    return out


def literal(value: str) -> Any:
    """A Python literal if `value` is one (1, 0.5, True, None, [1, 2], {'a': 1}), else the text itself."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def parse_kv(text: str | None, what: str = "") -> dict[str, Any]:
    """'alpha=1,beta=0.1,name=x' -> {'alpha': 1, 'beta': 0.1, 'name': 'x'}: each value read as a Python
    literal where it is one (untyped; `config_kwargs` reads values against a config's fields)."""
    return {k: literal(v) for k, v in parse(text, what).items()}


def config_kwargs(cls: type, raw: dict[str, str], what: str = "", *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments for dataclass `cls` from `parse`'s raw text, each value read as its field's type.

    `exclude` names fields that another option sets (e.g. `seed` beside `--seed`)."""
    allowed = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in exclude]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ValueError(f"{_prefix(what)}unknown key(s) {', '.join(unknown)}; "
                         f"{cls.__name__} takes {', '.join(allowed)}")
    hints = _hints(cls)
    return {k: read(v, hints.get(k, Any), k, what) for k, v in raw.items()}


def read(text: str, tp: Any, key: str = "value", what: str = "") -> Any:
    """`text` as a value of type `tp` (int, float, bool, str, None, unions, list/tuple/dict, Any)."""
    value = _read(text, tp)
    if value is _FAIL:
        raise ValueError(f"{_prefix(what)}{key}={text!r} is not {_describe(tp)}")
    return value


_FAIL = object()


def _read(text: str, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, typing.TypeVar):
        return literal(text)
    if origin in (typing.Union, types.UnionType):
        # None first: "None" is also a valid str.
        members = sorted(args, key=lambda a: a is not type(None))
        for member in members:
            value = _read(text, member)
            if value is not _FAIL:
                return value
        return _FAIL
    if tp is type(None):
        return None if text.lower() in _NONE else _FAIL
    if tp is bool:
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else _FAIL
    if tp is int:
        value = literal(text)
        return value if isinstance(value, int) and not isinstance(value, bool) else _FAIL
    if tp is float:
        try:
            return float(text)
        except ValueError:
            return _FAIL
    if tp is str:
        value = literal(text)
        return value if isinstance(value, str) else text
    if origin in (list, tuple) or tp in (list, tuple):
        value = literal(text)
        if isinstance(value, str):  # bare words: [q_proj,v_proj] or q_proj
            inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
            value = [literal(w.strip()) for w in _split(inner)]
        if not isinstance(value, list | tuple):
            value = [value]
        return tuple(value) if (origin or tp) is tuple else list(value)
    if origin is dict or tp is dict:
        value = literal(text)
        return value if isinstance(value, dict) else _FAIL
    # Paths and other classes: the text, for the config to check.
    return literal(text)


def _describe(tp: Any) -> str:
    names = {int: "an int", float: "a number", bool: "true or false", str: "text", type(None): "None"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is dict or tp is dict:
        return "a dict, e.g. {'a': 1}"
    return f"a {getattr(tp, '__name__', tp)}"


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: read those values as literals
        return {}


def _split(text: str) -> list[str]:
    """Split on commas outside brackets and quotes; drop empty parts."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


__all__ = ["config_kwargs", "literal", "parse", "parse_kv", "read"]
