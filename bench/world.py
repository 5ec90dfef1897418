"""The World contract: what a run needs from its world besides a method.

A world is where training happens and how it is judged: a model (or how to find one), scorers, prompt sets, the
settings its methods run with, and any commands of its own. The suite's own worlds are registered like a third
party's: through the entry-point group ``bench.worlds`` (pyproject.toml; `bench ls worlds`).
The core never imports a world: it asks the ``WORLDS`` registry by name (``--world``, or a run's config).

A world's settings are YAML files in its ``settings_dir``, applied over the method's Config defaults and under
``--config``, ``--set`` and method options: ``world.yaml`` (every method: model, reward, prompts, sampler, ...),
then ``<method>.yaml`` for the method, or for the nearest parent of a preset (``reward-only`` uses ``dpok.yaml``).
A method file holds run settings and, under ``hparams``, the method's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from bench.errors import BenchError

WORLD_SETTINGS = "world.yaml"


class World:
    """Base class of a world; subclasses set the class attributes and may override the methods.

    Attributes:
        name: registry name, selected with ``--world``.
        summary: one line for `bench ls worlds`.
        scorers: scorer name -> ``"module:attr"``: the scorers this world brings (registered with the others).
        prompt_dirs: folders of the world's shipped prompt sets (``<name>-v<N>.txt|jsonl``).
        settings_dir: folder of its settings files (``world.yaml``, ``<method>.yaml``), or None for none.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    scorers: ClassVar[dict[str, str]] = {}
    prompt_dirs: ClassVar[tuple[Path, ...]] = ()
    settings_dir: ClassVar[Path | None] = None

    def model_path(self, model: str) -> str | None:
        """A local pipeline folder for a model name this world owns (its shipped model), or None when ``model`` is a
        path or hub id for the general resolution. May raise BenchError (a name it owns but cannot provide)."""
        return None

    def settings_files(self, method_cls: type) -> list[Path]:
        """The settings files that apply to ``method_cls``, lowest precedence first."""
        if self.settings_dir is None:
            return []
        files = [Path(self.settings_dir) / WORLD_SETTINGS]
        for cls in method_cls.__mro__:  # a preset falls back to its parent's file
            name = getattr(cls, "name", None)
            if name and (Path(self.settings_dir) / f"{name}.yaml").is_file():
                files.append(Path(self.settings_dir) / f"{name}.yaml")
                break
        return [f for f in files if f.is_file()]

    def defaults(self) -> dict[str, Any]:
        """The run settings every method of this world starts from (``world.yaml``)."""
        from bench.config import read_yaml

        path = Path(self.settings_dir) / WORLD_SETTINGS if self.settings_dir else None
        return read_yaml(path) if path is not None and path.is_file() else {}

    def commands(self):
        """A ``typer.Typer`` of the world's own commands, mounted as ``bench <name> ...``; None for none."""
        return None


def get_world(name: str) -> World:
    """The registered world ``name``, instantiated."""
    from bench.registry import WORLDS

    cls = WORLDS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, World)):
        raise BenchError(f"world {name!r} ({WORLDS.source(name)}) is not a bench.world.World subclass")
    return cls()
