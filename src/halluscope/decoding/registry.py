"""The registry of decoding methods: a name -> (config class, implementation, preset arguments).

This package registers its own methods below. A package above it registers its methods when it is
imported, as peft's tuners do (`halluscope.steering` calls `register_method("vti", VTIConfig, VTI)`).
So that `get_method("vti")` also works after importing only this package, such a method is listed in
`PLUGINS` by the name of the module that registers it, imported with importlib on first use: a table
of names, as transformers' auto classes map model types to module names, not an import of the layer
above (this package never imports steering).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from .icd import ICD, ICDConfig
from .m3id import M3ID, M3IDConfig
from .plain import HFGenerate
from .protocol import DecodingMethod, MethodConfig, SamplingConfig
from .vcd import VCD, VCDConfig
from .vdgd import VDGD, VDGDConfig

# Methods that other packages register: name -> the module whose import registers it.
PLUGINS = {"vti": "halluscope.steering"}


class MethodEntry(NamedTuple):
    config_cls: type[MethodConfig]
    impl: type[DecodingMethod]
    defaults: Mapping[str, Any]  # arguments preset by this name ("sample": sample=True)


class MethodRegistry(Mapping[str, MethodEntry]):
    """Every method that can be named: the registered ones, and the plugins, imported on first lookup."""

    def __init__(self, plugins: Mapping[str, str]) -> None:
        self._entries: dict[str, MethodEntry] = {}
        self._plugins = dict(plugins)

    def register(self, name: str, config_cls: type[MethodConfig], impl: type[DecodingMethod],
                 defaults: Mapping[str, Any] | None = None) -> None:
        if not (isinstance(impl, type) and issubclass(impl, DecodingMethod)):
            raise TypeError(f"method {name!r}: {impl!r} is not a halluscope.decoding.DecodingMethod subclass")
        if not issubclass(config_cls, impl.config_cls):
            raise TypeError(f"method {name!r}: {impl.__name__} takes a {impl.config_cls.__name__}, "
                            f"not a {config_cls.__name__}")
        self._entries[name] = MethodEntry(config_cls, impl, MappingProxyType(dict(defaults or {})))

    def __getitem__(self, name: str) -> MethodEntry:
        if name not in self._entries and name in self._plugins:
            importlib.import_module(self._plugins[name])
            if name not in self._entries:
                raise LookupError(f"importing {self._plugins[name]} registered no method {name!r}")
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._entries), **dict.fromkeys(self._plugins)})

    def __len__(self) -> int:
        return len(set(self._entries) | set(self._plugins))


METHODS = MethodRegistry(PLUGINS)


def register_method(name: str, config_cls: type[MethodConfig], impl: type[DecodingMethod],
                    defaults: Mapping[str, Any] | None = None) -> None:
    """Make `name` usable in `adapter.generate(..., method=name)`, `get_method` and `--method`.
    `defaults` preset some config arguments under this name (the caller's arguments win)."""
    METHODS.register(name, config_cls, impl, defaults)


def _entry(name: str) -> MethodEntry:
    if name not in METHODS:
        raise ValueError(f"unknown decoding method {name!r}; registered methods: {sorted(METHODS)}")
    return METHODS[name]


def get_method(name: str, **args: Any) -> DecodingMethod:
    """The decoder for method `name`, configured by `args` (checked by its config's `from_args`)."""
    entry = _entry(name)
    return entry.impl(entry.config_cls.from_args(**{**entry.defaults, **args}))


def method_help(name: str) -> dict[str, dict[str, Any]]:
    """{argument: {"default": ..., "help": ...}} of a method, from its config, and under "_paper" the
    paper its defaults come from ({"title", "authors", "venue", "url"}; empty for greedy and sample)."""
    entry = _entry(name)
    arguments = {arg: {**info, "default": entry.defaults.get(arg, info["default"])}
                 for arg, info in entry.config_cls.help().items()}
    return {**arguments, "_paper": entry.config_cls.paper()}


register_method("greedy", SamplingConfig, HFGenerate)
register_method("sample", SamplingConfig, HFGenerate, defaults={"sample": True})
register_method("vcd", VCDConfig, VCD)
register_method("icd", ICDConfig, ICD)
register_method("m3id", M3IDConfig, M3ID)
register_method("vdgd", VDGDConfig, VDGD)

__all__ = ["METHODS", "PLUGINS", "MethodEntry", "MethodRegistry", "get_method", "method_help", "register_method"]
