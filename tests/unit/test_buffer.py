import pytest
import torch

from bench.buffer import TransitionBuffer


def test_fifo_keeps_the_newest():
    buf = TransitionBuffer(capacity=5)
    buf.add({"x": torch.arange(3), "r": torch.zeros(3)})
    buf.add({"x": torch.arange(3, 7), "r": torch.ones(4)})
    assert len(buf) == 5
    assert buf.data["x"].tolist() == [2, 3, 4, 5, 6]
    assert buf.gather(torch.tensor([0, 4]))["r"].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="different lengths"):
        buf.add({"x": torch.arange(2), "r": torch.zeros(3)})
