"""Turn CLI options, a YAML file and --set overrides into one validated RunConfig, before anything is written.

Precedence, lowest first: dataclass defaults (the method's Config), the world's settings files (``world.yaml``,
then ``<method>.yaml``; bench/world.py), the ``--config`` file, the common CLI options (--model, --steps, ...),
``--set section.key=value``, then method options such as ``--beta 0.01``. Method options are checked against the
method's Config dataclass (unknown names suggest the closest), and a preset's pinned values cannot be changed.
The world is ``--world`` (or ``world:`` in the config file), else ``DEFAULT_WORLD``.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from bench.config import RunConfig, build, parse_set, read_yaml, set_dotted, stored_values
from bench.errors import BenchError
from bench.registry import METHODS


def parse_method_options(args: list[str]) -> list[tuple[str, str]]:
    """``["--beta", "0.01", "--lr=1e-5"]`` -> ``[("beta", "0.01"), ("lr", "1e-5")]``."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise BenchError(f"unexpected argument {arg!r}; method options look like --beta 0.01")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
            value = args[i + 1]
            i += 2
        else:
            raise BenchError(f"option --{key} needs a value")
        out.append((key.replace("-", "_"), value))
    return out


DEFAULT_WORLD = "shapes"  # the world a run gets when none is named: offline, two CPU cores


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def world_name(name: str | None) -> str:
    """The world a run or command uses: ``name``, else the default world."""
    return str(name or DEFAULT_WORLD)


def world_settings(world, method_cls: type) -> tuple[dict, dict, list[Path]]:
    """The world's run settings and method hparams for ``method_cls`` (merged in file order), and the files."""
    run, hparams = {}, {}
    files = world.settings_files(method_cls)
    for path in files:
        data = read_yaml(path)
        hp = data.pop("hparams", None) or {}
        if not isinstance(hp, dict):
            raise BenchError(f"{path}: hparams must be a mapping of the method's settings")
        run, hparams = _merge(run, data), _merge(hparams, hp)
    return run, {k: v for k, v in hparams.items() if k not in method_cls.fixed}, files


def resolve_model_path(world: str | None, model: str, allow_download: bool = False) -> str:
    """A local pipeline folder (or hub id when downloads are allowed) for ``model`` in ``world``: a name the
    world owns (the shapes world's ``shapes``), else a folder, the local Hugging Face cache, or the hub."""
    from bench.models import resolve_model
    from bench.world import get_world

    return get_world(world_name(world)).model_path(model) or resolve_model(model, allow_download)


def resolve_run_config(
    config_file: str | None, common: dict, sets: list[str], method_args: list[str]
) -> tuple[RunConfig, type]:
    """Build the run's config; return it with the method class (imported on demand) and the settings files applied
    (the world's, then the --config file), lowest precedence first."""
    from bench.world import get_world

    tree = read_yaml(config_file) if config_file else {}
    for key, value in common.items():
        if value is not None:
            tree[key] = value
    for key, value in parse_set(sets):
        set_dotted(tree, key, value)
    hp_values = tree.pop("hparams", None) or {}
    if not isinstance(hp_values, dict):
        raise BenchError("hparams: expected a mapping of the method's settings")
    method_name = str(tree.get("method", RunConfig.method))
    method_cls = METHODS.get(method_name)
    tree["world"] = world_name(tree.get("world"))
    world_run, world_hp, files = world_settings(get_world(tree["world"]), method_cls)
    tree = _merge(world_run, tree)
    hp_values = _merge(world_hp, hp_values)
    known = [f.name for f in dataclasses.fields(method_cls.Config)]
    for key, value in parse_method_options(method_args):
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f"; did you mean --{close[0].replace('_', '-')}?" if close else ""
            opts = ", ".join("--" + k.replace("_", "-") for k in known)
            raise BenchError(f"unknown option --{key.replace('_', '-')} for method {method_name}; known: {opts}{hint}")
        hp_values[key] = value
    hparams = build(method_cls.Config, hp_values)
    for key, pinned in method_cls.fixed.items():
        if getattr(hparams, key) != pinned:
            raise BenchError(f"{key} is fixed at {pinned} by the {method_name} preset (got {getattr(hparams, key)})")
    config = dataclasses.replace(build(RunConfig, tree), hparams=hparams)
    if method_cls.needs_log_prob and config.sampling.eta <= 0:
        raise BenchError(
            f"sampling.eta must be > 0 for {method_name}: with eta = 0 DDIM steps are deterministic and have no "
            f"log-probability (got {config.sampling.eta})"
        )
    return config, method_cls, [*map(str, files), *([config_file] if config_file else [])]


def find_run(resume: str, results_dir: str | None) -> Path:
    """--resume takes a run folder or a run id under the results folder."""

    candidates = [Path(resume), Path(results_dir or RunConfig.results_dir) / resume]
    for path in candidates:
        if (path / "config.yaml").is_file():
            return path
    raise BenchError(f"--resume {resume}: no run folder with a config.yaml at {' or '.join(map(str, candidates))}")


def config_from_run(run_dir) -> tuple[RunConfig, type, str]:
    """The run's own config (config.yaml, as resolved when it started), its method class and model path."""
    from bench.checkpoint import read_meta

    tree = read_yaml(run_dir / "config.yaml")
    model_path = tree.pop("model_path", None)
    hp_values = tree.pop("hparams", None) or {}
    if not model_path or not isinstance(hp_values, dict):
        raise BenchError(f"{run_dir / 'config.yaml'} is not a run config written by bench run")
    method_cls = METHODS.get(str(tree.get("method")))
    hparams = build(method_cls.Config, stored_values(method_cls.Config, hp_values))  # as the run was made
    config = dataclasses.replace(build(RunConfig, tree), hparams=hparams)
    from bench.models import resolve_model

    model_path = resolve_model(model_path)  # the folder the run started from
    if not (run_dir / "checkpoint").exists():  # killed before its first checkpoint: it restarts from round 1
        return config, method_cls, model_path
    meta = read_meta(run_dir / "checkpoint")
    if meta["round"] >= config.steps:
        raise BenchError(f"run {run_dir} already finished all {config.steps} rounds; nothing to resume")
    return config, method_cls, model_path
