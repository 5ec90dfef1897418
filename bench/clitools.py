"""Helpers shared by the `bench` command line and the commands that worlds mount under it (``bench <world> ...``)."""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' progress bars and warnings (the suite reports its own progress)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def register_plugins(plugins: list[str]) -> None:
    """``--plugin module:attr``: a Method subclass goes to the methods, a World subclass to the worlds, anything
    else to the scorers."""
    from bench.method import Method
    from bench.registry import METHODS, SCORERS, WORLDS, import_target
    from bench.world import World

    for target in plugins:
        obj = import_target(target, "plugin")
        if isinstance(obj, type) and issubclass(obj, Method):
            METHODS.add_plugin(target, obj)
        elif isinstance(obj, type) and issubclass(obj, World):
            WORLDS.add_plugin(target, obj)
        else:
            SCORERS.add_plugin(target, obj)


def build_scorer(scorer_cls):
    """Construct a scorer on this process's device now, so missing weights fail before anything is written."""
    from bench.dist import process_state

    return scorer_cls(device=process_state().device)
