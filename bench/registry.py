"""Registries of methods, scorers and worlds: entry points, world-provided scorers, and --plugin module:attr.

Every plugin, built-in or not, is a ``"module:attr"`` target in an entry-point group (``bench.methods``,
``bench.scorers``, ``bench.worlds``), imported only when its name is requested, so one broken plugin never breaks
another name. The suite's own are the entry points of its own distribution (pyproject.toml) and win a name clash.
A world also brings scorers (``World.scorers``); they are registered after the entry points of the same standing.
The core holds no plugin names: it reaches every plugin through these registries. An unknown name is an error
listing the known ones and the closest.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from bench.errors import BenchError


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

    def __init__(self, kind: str, group: str, extra: Callable[[bool], Iterable[tuple[str, str, str]]] | None = None):
        self.kind, self.group = kind, group
        self._extra = extra  # (built_in) -> (name, target, source) of plugins registered another way (world scorers)
        self._targets: dict[str, tuple[str, str]] = {}  # name -> (target, source)
        self._scanned = False
        self._loaded: dict[str, Any] = {}

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        found = [(ep, ep.dist.name if ep.dist else "unknown package") for ep in entry_points(group=self.group)]
        for built_in in (True, False):  # the suite's own first: they win a clash
            for ep, dist in found:
                if (dist == DISTRIBUTION) == built_in and ep.name not in self._targets:
                    self._targets[ep.name] = (ep.value, "built-in" if built_in else f"entry-point/{dist}")
            for name, target, source in self._extra(built_in) if self._extra else ():
                self._targets.setdefault(name, (target, source))

    def add_plugin(self, target: str, obj: Any = None) -> str:
        """Register ``module:attr`` (imported now unless the caller already did) under its ``name``."""
        obj = obj if obj is not None else import_target(target, f"plugin {self.kind}")
        name = getattr(obj, "name", "") or ""
        if not name:
            raise BenchError(f"plugin {target!r} has no `name` attribute")
        self._scan_entry_points()
        if name in self._targets and self._targets[name][1].startswith("built-in"):
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


def _world_scorers(built_in: bool) -> Iterable[tuple[str, str, str]]:
    """The scorers that the (built-in or other) registered worlds bring; a world that fails to import brings none
    (its own name reports the error)."""
    for world in WORLDS.names():
        if WORLDS.source(world).startswith("built-in") != built_in:
            continue
        try:
            scorers = getattr(WORLDS.get(world), "scorers", {}) or {}
        except BenchError:
            continue
        for name, target in scorers.items():
            yield name, target, f"{'built-in' if built_in else 'world'}/{world}"


DISTRIBUTION = "dpok-bench"  # entry points of this distribution are the built-ins
METHODS = Registry("method", "bench.methods")
SCORERS = Registry("scorer", "bench.scorers", extra=_world_scorers)
WORLDS = Registry("world", "bench.worlds")
