"""Typed, frozen run configuration: defaults, YAML, CLI overrides and validation in one place.

A config is built once, validated field by field (type and range, with an error that names the field), and never
mutated afterwards. Every field carries help text (and units) in its metadata; ``bench run --help`` and the
method docs are generated from it. Derived values (run id, paths) live in the trainer's run context instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError


def param(default: Any, help: str, *, ge=None, gt=None, le=None, lt=None, choices=None, before=None) -> Any:
    """A dataclass field with help text and an allowed range, checked by :func:`validate`. ``before``: for a
    setting added after runs were made without it, the value that reproduces them; a stored run config that lacks
    the setting (``bench run --resume``) gets it instead of the default (:func:`stored_values`)."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "before": before}
    return field(default=default, metadata=meta)


def stored_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` of a config written by an earlier version, completed with each missing setting's ``before``."""
    missing = {f.name: f.metadata["before"] for f in dataclasses.fields(cls)
               if f.name not in values and f.metadata.get("before") is not None}  # fmt: skip
    return {**values, **missing}


@dataclass(frozen=True)
class SamplingConfig:
    """How rollouts are drawn (DDIM with eta > 0 makes every step a Gaussian policy)."""

    num_steps: int = param(50, "DDIM denoising steps per image (DPOK: 50)", ge=1, le=1000)
    guidance_scale: float = param(7.5, "classifier-free guidance scale (DPOK: 7.5); 1 disables guidance", ge=1.0)
    eta: float = param(1.0, "DDIM eta: 0 is deterministic, 1 is DDPM-like noise (DPOK: 1)", ge=0.0, le=1.0)
    height: int | None = param(None, "image height in pixels; default: the model's own size", ge=8)
    width: int | None = param(None, "image width in pixels; default: the model's own size", ge=8)
    parallel_reference: str = param(
        "auto",
        "run the reference's prediction in a second thread beside the policy's, each with half the CPU threads "
        "(auto: on CPU with >= 2 torch threads and no autocast; off: one after the other)",
        choices=("auto", "off"),
    )


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters on the UNet attention projections (DPOK's official code: rank 4 on every attention)."""

    rank: int = param(4, "LoRA rank r", ge=1, le=1024)
    alpha: float = param(4.0, "LoRA alpha; the update is scaled by alpha / rank", gt=0.0)
    targets: tuple[str, ...] = param(
        ("to_q", "to_k", "to_v", "to_out.0"), "UNet module names that get adapters (comma-separated)"
    )


LR_SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser settings every method shares; a method's Config extends this."""

    lr: float = param(1e-5, "AdamW learning rate of the LoRA weights (DPOK: 1e-5)", gt=0.0)
    weight_decay: float = param(0.0, "AdamW weight decay (DPOK's code: 0)", ge=0.0)
    grad_clip: float = param(0.1, "clip the global gradient norm to this value (DPOK: 0.1)", gt=0.0)
    batch_size: int = param(4, "micro-batch size per process (transitions or images)", ge=1)
    grad_accum: int = param(12, "micro-batches accumulated per optimiser step", ge=1)
    updates_per_round: int = param(5, "optimiser steps after each collection round (DPOK p_step: 5)", ge=1)
    lr_schedule: str = param(
        "constant",
        "lr over the rounds: constant (DPOK), or cosine / linear decay from lr towards 0 at the last round",
        choices=LR_SCHEDULES,
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs besides the method's own hyperparameters (``hparams``)."""

    method: str = param("dpok", "method name, see `bench ls methods`")
    world: str = param("", "world name, see `bench ls worlds` (empty: the default world)")
    model: str = param("", "pipeline folder, hub id, or a model name of the world (default: the world's)")
    prompts: str = param("", "prompt set name, a .txt/.jsonl file, or prompts separated by '|' (default: the world's)")
    reward: str = param("", "reward scorer name, see `bench ls scorers` (default: the world's)")
    eval_scorers: tuple[str, ...] = param((), "scorers `bench eval` uses besides the reward (comma-separated)")
    steps: int = param(10, "training rounds (one round = collect, then the method's updates)", ge=1)
    seed: int = param(0, "seed for sampling, data order and initialisation", ge=0)
    results_dir: str = param("results/runs", "where run folders go, relative to the current directory")
    mixed_precision: str = param("no", "accelerate mixed precision", choices=("no", "fp16", "bf16"))
    allow_download: bool = param(False, "allow hub downloads of --model (off: offline is the default)")
    checkpoint_every: int = param(0, "write checkpoint/ every N rounds (0: only at the end)", ge=0)
    snapshot_every: int = param(
        0, "also keep the LoRA of every N-th round in snapshots/update-K/ (0: none); `bench eval --snapshots`", ge=0
    )
    parallel_backward: str = param(
        "auto",
        "on-policy steps: back-propagate groups of denoising steps in 2 threads, each with half the CPU threads "
        "(auto: on CPU with >= 2 torch threads and no mixed precision; off: one backward)",
        choices=("auto", "off"),
    )
    gradient_checkpointing: bool = param(
        False, "recompute UNet activations in the backward pass instead of keeping them (less memory, more time)"
    )
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "rollout sampler"})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA adapters"})
    hparams: OptimConfig | None = field(default=None, metadata={"help": "the method's own Config dataclass"})


def fields_help(cls: type) -> list[tuple[str, str, Any]]:
    """(name, help, default) for each field of a config dataclass, for help screens."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append((f.name, f.metadata.get("help", ""), default))
    return out


def _closest(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML or CLI value to the field's declared type, or fail naming the field."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, typing.get_args(tp)[0], where) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise BenchError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(float(value)) if tp is int else tp(value)
        except (TypeError, ValueError):
            raise BenchError(f"{where}: expected {'an integer' if tp is int else 'a number'}, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str | int | float):
            raise BenchError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _check_range(value: Any, meta: dict, where: str) -> None:
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise BenchError(f"{where} must be one of {', '.join(map(str, meta['choices']))} (got {value!r})")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if value != value or value in (float("inf"), float("-inf")):
        raise BenchError(f"{where} must be a finite number (got {value})")
    for key, op, ok in (
        ("ge", ">=", lambda v, b: v >= b),
        ("gt", ">", lambda v, b: v > b),
        ("le", "<=", lambda v, b: v <= b),
        ("lt", "<", lambda v, b: v < b),
    ):
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise BenchError(f"{where} must be {op} {bound} (got {value})")


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build and validate a frozen config dataclass from a (possibly nested) dict of raw values."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in known:
            raise BenchError(f"unknown setting {prefix}{key}; known: {', '.join(known)}{_closest(key, known)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values or f.name == "hparams":
            continue
        where = f"{prefix}{f.name}"
        tp = hints[f.name]
        raw = values[f.name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(raw, dict):
                raise BenchError(f"{where}: expected a mapping of settings, got {raw!r}")
            kwargs[f.name] = build(tp, raw, prefix=f"{where}.")
            continue
        value = _coerce(raw, tp, where)
        _check_range(value, f.metadata, where)
        kwargs[f.name] = value
    for f in dataclasses.fields(cls):  # defaults are checked too: a preset could set an invalid one
        if f.name not in kwargs and f.default is not dataclasses.MISSING and f.name != "hparams":
            _check_range(f.default, f.metadata, f"{prefix}{f.name}")
    return cls(**kwargs)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Put ``value`` at ``a.b.c`` in a nested dict, creating sections as needed."""
    *sections, leaf = dotted.split(".")
    node = tree
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise BenchError(f"--set {dotted}: {section} is not a section")
    node[leaf] = value


def parse_set(items: list[str]) -> list[tuple[str, str]]:
    """Parse ``--set section.key=value`` items."""
    out = []
    for item in items:
        if "=" not in item:
            raise BenchError(f"--set expects section.key=value, got {item!r}")
        key, value = item.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out


def read_yaml(path: str | Path) -> dict:
    """Read a YAML config file into a dict, with one-line errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BenchError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise BenchError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def to_dict(config: Any) -> dict:
    """A plain nested dict of a config (tuples as lists), for config.yaml."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return plain(config)
