"""A learned value baseline V(x_t, t, z) for policy-gradient methods (DPOK App. A.5).

It predicts the final reward of a trajectory from an intermediate latent, the timestep and the prompt, and is fit
by mean squared error to the rewards of transitions in the buffer. The official DPOK network (``ValueMulti`` in
``dpok/reward_model.py``) concatenates the flattened latent with a CLIP text embedding and runs three 256-unit
layers whose outputs are scaled by a learned per-timestep gain; here the timestep enters as a sinusoidal
embedding concatenated to the input instead (works for any number of sampling steps).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ValueNetwork(nn.Module):
    """MLP on [flatten(x_t), pooled text embedding, timestep embedding] -> predicted final reward."""

    def __init__(self, latent_numel: int, text_dim: int, hidden: int = 256, time_dim: int = 64):
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(
            nn.Linear(latent_numel + text_dim + time_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x_t: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        features = [x_t.flatten(1).float(), text.float(), timestep_embedding(timestep, self.time_dim)]
        return self.net(torch.cat(features, dim=1)).squeeze(1)
