"""The linear MLP head shared by the LAION aesthetic predictor and ImageReward.

Source: https://github.com/christophschuhmann/improved-aesthetic-predictor (``simple_inference.py``, class
``MLP``), copied by ImageReward (https://github.com/THUDM/ImageReward, ``ImageReward.py``, class ``MLP``). The
ReLUs are commented out in both originals, so the head is a composition of linear maps; we keep that (it is
what the released weights were trained with). Parameterised indices of ``layers`` are 0, 2, 4, 6 and 7, as in
both checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class RewardMLP(nn.Module):
    """Linear(in, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2), Linear(128, 64), Dropout(0.1),
    Linear(64, 16), Linear(16, 1); no activations."""

    def __init__(self, input_size: int = 768):
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map (N, input_size) features to (N,) raw scores."""
        return self.layers(features).squeeze(-1)
