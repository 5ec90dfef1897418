"""Registries of methods and scorers: lazy built-ins, entry points, and --plugin module:attr.

Built-ins are ``"module:attr"`` strings, imported only when their name is requested, so one broken plugin never
breaks another name. Third-party packages register through the entry-point groups ``bench.methods`` and
``bench.scorers``; built-ins win a name clash. An unknown name is an error listing the known ones and the closest.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from bench.errors import BenchError

BUILTIN_METHODS = {
    "dpok": "bench.methods.dpok:DPOK",
    "reward-only": "bench.methods.dpok:RewardOnly",
    "kl-only": "bench.methods.dpok:KLOnly",
    "sft": "bench.methods.sft:SFT",
    "ddpo": "bench.methods.ddpo:DDPO",
}

BUILTIN_SCORERS = {
    "compressibility": "bench.evaluations.compressibility:Compressibility",
    "shapes-oracle": "bench.evaluations.shapes_oracle:ShapesOracle",
    "shapes-quality": "bench.evaluations.shapes_quality:ShapesQuality",
    "imagereward": "bench.evaluations.imagereward:ImageRewardScorer",
    "aesthetic": "bench.evaluations.aesthetic:AestheticScorer",
    "oversaturation": "bench.evaluations.oversaturation:Oversaturation",
    "saturated-share": "bench.evaluations.oversaturation:SaturatedShare",
    "clipped-share": "bench.evaluations.oversaturation:ClippedShare",
    "shapes-reward": "bench.evaluations.shapes_reward:ShapesReward",
    "shapes-stereotype": "bench.evaluations.bias:StereotypeScorer",
    "shapes-colour": "bench.evaluations.bias:ShapesColourLabel",
    "shapes-background": "bench.evaluations.bias:ShapesBackgroundLabel",
    "clip-stereotype": "bench.evaluations.bias:ClipStereotypeScorer",
    "clip-attribute": "bench.evaluations.bias:ClipAttributeScorer",
}


def import_target(target: str, what: str) -> Any:
    """Import ``module:attr``; failures become one-line errors that name the target."""
    if ":" not in target:
        raise BenchError(f"{what} {target!r} must look like module:attr")
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken plugin must fail alone, with its own message
        raise BenchError(f"{what} {target!r} failed to import: {type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise BenchError(f"{what} {target!r}: module {module_name} has no attribute {attr!r}") from None


class Registry:
    """Name -> lazily imported class, for one kind of plugin."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind, self.group = kind, group
        self._targets: dict[str, tuple[str, str]] = {}  # name -> (target, source)
        for name, target in builtins.items():
            self._targets[name] = (target, "built-in")
        self._scanned = False
        self._loaded: dict[str, Any] = {}

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            if ep.name not in self._targets:  # built-ins win a clash
                dist = ep.dist.name if ep.dist else "unknown package"
                self._targets[ep.name] = (ep.value, f"entry point ({dist})")

    def add_plugin(self, target: str, obj: Any = None) -> str:
        """Register ``module:attr`` (imported now unless the caller already did) under its ``name``."""
        obj = obj if obj is not None else import_target(target, f"plugin {self.kind}")
        name = getattr(obj, "name", "") or ""
        if not name:
            raise BenchError(f"plugin {target!r} has no `name` attribute")
        self._scan_entry_points()
        if name in self._targets and self._targets[name][1] == "built-in":
            raise BenchError(f"plugin {target!r} uses the built-in {self.kind} name {name!r}; built-ins win")
        self._targets[name] = (target, "--plugin")
        self._loaded[name] = obj
        return name

    def clear_plugins(self) -> None:
        """Forget --plugin registrations (each CLI invocation starts from built-ins and entry points)."""
        for name in [n for n, (_, source) in self._targets.items() if source == "--plugin"]:
            del self._targets[name]
            self._loaded.pop(name, None)

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._targets)

    def source(self, name: str) -> str:
        self._scan_entry_points()
        return self._targets[name][1]

    def get(self, name: str) -> Any:
        """The class registered as ``name``, imported on first use."""
        if name in self._loaded:
            return self._loaded[name]
        self._scan_entry_points()
        if name not in self._targets:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BenchError(f"unknown {self.kind} {name!r}; known: {', '.join(known)}{hint}")
        obj = import_target(self._targets[name][0], self.kind)
        self._loaded[name] = obj
        return obj


METHODS = Registry("method", "bench.methods", BUILTIN_METHODS)
SCORERS = Registry("scorer", "bench.scorers", BUILTIN_SCORERS)
