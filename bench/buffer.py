"""A FIFO buffer of denoising transitions (DPOK's official code keeps the last 1000)."""

from __future__ import annotations

import torch


class TransitionBuffer:
    """Stores per-transition tensors with a shared leading dimension; the oldest are dropped beyond ``capacity``."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.data: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def add(self, transitions: dict[str, torch.Tensor]) -> None:
        """Append a batch of transitions (all tensors with the same length), keeping the newest ``capacity``."""
        lengths = {len(v) for v in transitions.values()}
        if len(lengths) != 1:
            raise ValueError(f"transition tensors have different lengths: {sorted(lengths)}")
        if not self.data:
            self.data = {k: v.detach().cpu().clone() for k, v in transitions.items()}
        else:
            if set(transitions) != set(self.data):
                raise ValueError("transition keys changed between rounds")
            self.data = {k: torch.cat([self.data[k], transitions[k].detach().cpu()]) for k in self.data}
        if len(self) > self.capacity:
            self.data = {k: v[-self.capacity :].clone() for k, v in self.data.items()}

    def gather(self, indices: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The transitions at ``indices``, moved to ``device``."""
        return {k: v[indices].to(device) for k, v in self.data.items()}

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "data": self.data}

    def load_state_dict(self, state: dict) -> None:
        self.capacity, self.data = state["capacity"], state["data"]
