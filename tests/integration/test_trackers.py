"""`bench run --log-with tensorboard`: the rows of train.jsonl also go, live, to accelerate's tensorboard tracker
(off by default); an unknown or missing tracker is an error before anything is written."""

from __future__ import annotations

import json
import struct

import pytest

from tests.integration.cli_helpers import TINY_DPOK, run_cli


def _scalars(events_file) -> dict[str, dict[int, float]]:
    """Every scalar of a tfevents file, {tag: {step: value}} (the TFRecord framing read by hand)."""
    from tensorboardX.proto import event_pb2

    data, out, at = events_file.read_bytes(), {}, 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4  # length, its crc, the record, its crc
        for value in event.summary.value:
            out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def test_tensorboard_gets_every_training_row(capsys, tmp_path, tiny_sd, monkeypatch):
    pytest.importorskip("tensorboardX")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["run", "--model", str(tiny_sd), "--reward", "compressibility", "--prompts", "a red circle", "--steps",
            "2", "--results-dir", str(tmp_path / "runs"), "--log-with", "tensorboard", *TINY_DPOK]  # fmt: skip
    code, out, err = run_cli(capsys, args)
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    logged = {}  # the tracker writes the config (hparams) to a file of its own beside the scalars
    for events in (run / "tracking").rglob("events.out.tfevents.*"):
        logged |= _scalars(events)
    assert sorted(logged["reward"]) == [r["update"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("reward", "loss", "kl", "grad_norm"):
            assert logged[key][row["update"]] == pytest.approx(row[key], rel=1e-6)


@pytest.mark.parametrize(("name", "message"), [("tensorbored", "unknown tensorbored"), ("wandb", "pip install wandb")])
def test_a_bad_or_missing_tracker_is_an_error_before_any_run_folder(capsys, tmp_path, tiny_sd, name, message):
    import importlib.util

    if name == "wandb" and importlib.util.find_spec("wandb"):
        pytest.skip("wandb is installed here")
    args = ["run", "--model", str(tiny_sd), "--reward", "compressibility", "--prompts", "a red circle", "--steps",
            "1", "--results-dir", str(tmp_path / "runs"), "--log-with", name, *TINY_DPOK]  # fmt: skip
    code, out, err = run_cli(capsys, args)
    assert code == 2 and message in err
    assert not (tmp_path / "runs").exists()


def test_wandb_and_mlflow_stay_offline_in_the_run_folder(tmp_path, monkeypatch):
    from bench.trainer import offline_trackers

    for name in ("WANDB_MODE", "WANDB_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    offline_trackers(("wandb", "mlflow"), tmp_path / "run")
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    assert os.environ["WANDB_DIR"] == str((tmp_path / "run" / "tracking").resolve())
    assert os.environ["MLFLOW_TRACKING_URI"] == (tmp_path / "run" / "tracking" / "mlruns").resolve().as_uri()
    monkeypatch.setenv("WANDB_MODE", "online")  # the user's own setting wins
    offline_trackers(("wandb",), tmp_path / "other")
    assert os.environ["WANDB_MODE"] == "online"
