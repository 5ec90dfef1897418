"""The Method contract: a frozen Config, a pure loss, and optionally its own data collection.

A method never writes a training loop. Each round the trainer calls ``collect(ctx)`` (online methods roll out the
current policy through ``ctx.policy``; offline ones build their dataset once), then ``auxiliary(ctx)`` (the steps of
an auxiliary model such as a value baseline), then asks ``updates(ctx)`` for the round's optimiser steps, each a
list of micro-batches, and for every micro-batch calls ``loss(batch, ctx)``. Everything random a loss needs
(transition indices, diffusion noise) is drawn in ``updates`` for the whole step at once, so batch 2 x accumulation
1 and batch 1 x accumulation 2 see the same samples.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from bench.config import LR_SCHEDULES, OptimConfig  # noqa: F401  (re-exported: methods extend it)


def lr_factor(schedule: str, round_: int, rounds: int) -> float:
    """The fraction of ``lr`` used in round ``round_`` (0-based) of ``rounds``: 1 in the first round, then constant
    or decaying towards 0 (reached one round after the last, so every round trains)."""
    progress = round_ / rounds
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    return 1.0


class Method:
    """Base class. Subclasses set ``name``, ``Config`` and implement ``collect``/``updates``/``loss``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = OptimConfig
    #: the method scores its own samples' log-probabilities, so sampling needs eta > 0
    needs_log_prob: ClassVar[bool] = False
    #: hyperparameters a preset pins; setting them to anything else is an error
    fixed: ClassVar[dict[str, Any]] = {}
    #: one line for `bench ls methods`
    summary: ClassVar[str] = ""
    #: attributes the trainer checkpoints and restores on --resume (buffers, statistics, auxiliary networks)
    checkpointed: ClassVar[tuple[str, ...]] = ()

    def __init__(self, hparams: Any):
        self.hp = hparams

    @classmethod
    def preset(cls, name: str, summary: str, **fixed: Any) -> type:
        """A named variant of this method with some hyperparameters pinned (no copy of the code)."""
        pinned = {**cls.fixed, **fixed}
        config = dataclasses.make_dataclass(
            f"{cls.Config.__name__}_{name.replace('-', '_')}",
            [
                (
                    f.name,
                    f.type,
                    dataclasses.field(default=pinned.get(f.name, f.default), metadata=f.metadata),
                )
                for f in dataclasses.fields(cls.Config)
            ],
            bases=(cls.Config,),
            frozen=True,
        )
        return type(
            cls.__name__ + "Preset",
            (cls,),
            {"name": name, "Config": config, "fixed": pinned, "summary": summary},
        )

    def setup(self, ctx) -> None:
        """Called once before the first round (build auxiliary networks here)."""

    def collect(self, ctx) -> dict[str, float]:
        """Gather this round's data; returns metrics for train.jsonl."""
        raise NotImplementedError

    def auxiliary(self, ctx) -> dict[str, float]:
        """Steps of the method's auxiliary models, after ``collect`` and before the policy steps (DPOK's value
        baseline, Algorithm 1); returns metrics for train.jsonl. Default: none."""
        return {}

    def updates(self, ctx) -> Iterator[list[dict[str, torch.Tensor]]]:
        """Yield, for each optimiser step of this round, the list of its micro-batches."""
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor], ctx) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss of one micro-batch, and metrics to log."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Method state the trainer checkpoints: each attribute named in ``checkpointed`` (an object with
        ``state_dict``, such as a buffer, a network or an optimiser, else the value itself); None is skipped."""
        out = {}
        for name in self.checkpointed:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.state_dict() if hasattr(value, "state_dict") else copy.copy(value)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, attribute by attribute."""
        for name in self.checkpointed:
            if name not in state:
                continue
            current = getattr(self, name)
            if current is not None and hasattr(current, "load_state_dict"):
                current.load_state_dict(state[name])
            else:
                setattr(self, name, state[name])
