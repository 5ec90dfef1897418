"""`bench sweep` engines: the local pool (threads split, a killed sweep run again does only what is missing),
submitit (its local executor runs a grid; the sbatch script it would submit), and Ray on a local instance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from bench.sweep import cells, load_grid, local_plan, run_folder, run_grid, state
from tests.integration.cli_helpers import TINY_DPOK, run_cli


def _grid(tmp_path, tiny_sd, seeds=(0, 1), steps=2, **extra):
    """Two tiny cells that train only (``eval`` omitted: done when trained), to keep the engines' tests short."""
    options = dict(zip([a.lstrip("-").replace("-", "_") for a in TINY_DPOK[2::2]], TINY_DPOK[3::2], strict=True))
    grid = {
        "name": "tiny",
        "root": str(tmp_path / "study"),
        "run": {"method": "dpok", "model": str(tiny_sd), "reward": "compressibility", "prompts": "a red circle",
                "steps": steps, "checkpoint_every": 1, "set": TINY_DPOK[1:2], **options},
        "axes": {"seed": list(seeds)},
        **extra,
    }  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def _threads(run) -> int:
    return json.loads((run / "env.json").read_text())["torch_threads"]


def test_local_plan_never_oversubscribes(tmp_path, monkeypatch):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "axes": {"seed": [0]}}))
    grid = load_grid(path)
    monkeypatch.setattr("bench.sweep.machine_cores", lambda: 16)
    assert local_plan(grid, None) == (8, 2)  # one cell per two cores by default
    assert local_plan(grid, 3) == (3, 5)
    assert local_plan(grid, 32) == (32, 1)  # more jobs than cores: one thread each, never zero
    grid.resources["cpus"] = 4
    assert local_plan(grid, None) == (4, 4)
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="at least 1"):
        local_plan(grid, 0)


def test_local_pool_runs_cells_side_by_side_with_split_threads(capsys, tmp_path, tiny_sd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("bench.sweep.machine_cores", lambda: 2)
    path = _grid(tmp_path, tiny_sd)
    code, out, err = run_cli(capsys, ["sweep", str(path), "--jobs", "2"])
    assert code == 0, err
    assert "local: 2 at a time, 1 torch threads each (2 cores)" in out
    grid = load_grid(path)
    assert [state(c, grid) for c in cells(grid)] == ["done", "done"]
    assert [_threads(run_folder(c)) for c in cells(grid)] == [1, 1]


def test_a_killed_sweep_run_again_runs_only_what_is_missing(tmp_path, tiny_sd):
    """SIGKILL the whole sweep (its `bench run` child too) while the second cell trains; the next sweep leaves the
    first cell alone and resumes the second from its checkpoint."""
    path = _grid(tmp_path, tiny_sd, steps=12)
    grid = load_grid(path)
    first, second = cells(grid)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # a tiny model: one thread is enough
    sweep = [sys.executable, "-m", "bench.cli", "sweep", str(path), "--jobs", "1"]
    proc = subprocess.Popen(sweep, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None:
            run = run_folder(second) if second.folder.is_dir() else None
            if run is not None and (run / "checkpoint").is_dir() and (run / "train.jsonl").is_file():
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert state(first, grid) == "done"
    assert state(second, grid) == "partial"
    kept = (run_folder(first) / "train.jsonl").read_bytes(), (run_folder(first) / "lora").stat().st_mtime_ns
    done_before = json.loads((run_folder(second) / "train.jsonl").read_text().splitlines()[-1])["round"]
    again = subprocess.run(sweep, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 of 2 cells done; running 1 (1 resumed from their checkpoint or evaluation)" in again.stdout
    assert f"--resume {run_folder(second)}" in again.stdout and "--results-dir" not in again.stdout
    after = (run_folder(first) / "train.jsonl").read_bytes(), (run_folder(first) / "lora").stat().st_mtime_ns
    assert after == kept
    rows = [json.loads(r) for r in (run_folder(second) / "train.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, 13)) and done_before < 12
    assert [state(c, grid) for c in cells(grid)] == ["done", "done"]


def test_sigterm_stops_the_sweep_cleanly_and_starts_nothing_new(tmp_path, tiny_sd):
    """SIGTERM to the sweep alone: its running `bench run` checkpoints and exits, no queued cell starts, and the
    cell is left resumable (partial), its claim released."""
    path = _grid(tmp_path, tiny_sd, seeds=(0, 1, 2), steps=400)
    grid = load_grid(path)
    first = cells(grid)[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(path), "--jobs", "2"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # until both running cells have checkpointed once
        runs = [run_folder(c) if c.folder.is_dir() else None for c in cells(grid)[:2]]
        if all(run is not None and (run / "checkpoint").is_dir() for run in runs):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    assert not cells(grid)[2].folder.exists(), out  # queued behind the two running cells: never started
    for cell in cells(grid)[:2]:
        assert not (cell.folder / "sweep.running").exists()
        assert state(cell, grid) in ("partial", "failed"), state(cell, grid)
        rows = (run_folder(cell) / "train.jsonl").read_text().splitlines()
        assert len(rows) < 400 and (run_folder(cell) / "checkpoint").is_dir()
    done = len((run_folder(first) / "train.jsonl").read_text().splitlines())
    time.sleep(1.5)
    assert len((run_folder(first) / "train.jsonl").read_text().splitlines()) == done  # no orphan goes on training


def test_a_claim_from_another_host_counts_as_running_until_its_time_limit(tmp_path):
    import socket

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "root": str(tmp_path / "s"), "axes": {"seed": [0]},
                                    "resources": {"timeout_min": 1}}))  # fmt: skip
    grid = load_grid(path)
    (cell,) = cells(grid)
    cell.folder.mkdir(parents=True)
    claim = cell.folder / "sweep.running"
    claim.write_text(f"not-{socket.gethostname()} 1\n")
    assert state(cell, grid) == "running"
    old = time.time() - 120
    os.utime(claim, (old, old))
    assert state(cell, grid) == "missing"
    claim.write_text(f"{socket.gethostname()} 999999999\n")  # this host, no such process: stale
    assert state(cell, grid) == "missing"
    claim.write_text(f"{os.getppid()}\n")  # an older sweep's claim, a pid alone: a live process on this host
    assert state(cell, grid) == "running"


def test_submitit_local_executor_runs_a_two_cell_grid(tmp_path, tiny_sd, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    path = _grid(tmp_path, tiny_sd, resources={"cpus": 1, "timeout_min": 20})
    grid = load_grid(path)
    lines = []
    run_grid(grid, echo=lines.append, executor="slurm", cluster="local")
    assert [state(c, grid) for c in cells(grid)] == ["done", "done"], lines
    assert any(line.startswith("local: submitted 2 cells as job") for line in lines)
    assert [_threads(run_folder(c)) for c in cells(grid)] == [1, 1]  # resources.cpus reached the runs


def test_sbatch_script_of_a_grid(capsys, tmp_path, tiny_sd, monkeypatch):
    pytest.importorskip("submitit")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for srun before it renders anything
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    resources = {"cpus": 8, "gpus": 1, "mem_gb": 32, "timeout_min": 240, "slurm": {"partition": "gpu"}}
    path = _grid(tmp_path, tiny_sd, seeds=(0, 1, 2), resources=resources)
    code, out, err = run_cli(capsys, ["sweep", str(path), "--executor", "slurm", "--jobs", "2", "--dry-run"])
    assert code == 0, err
    script = out.split("would run")[0]
    expected = ["--array=0-2%2", "--cpus-per-task=8", "--gpus-per-node=1", "--mem=32GB", "--partition=gpu",
                "--time=240", "--job-name=bench-tiny"]  # fmt: skip
    for line in expected:
        assert f"#SBATCH {line}" in script.splitlines(), script
    assert script.startswith("#!/bin/bash") and "-m submitit.core._submit" in script
    assert out.count("would run") == 3
    assert not (tmp_path / "study").exists() or not any((tmp_path / "study").glob("*/sweep.log"))  # nothing ran


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_runs_a_two_cell_grid_on_a_local_instance(capsys, tmp_path, tiny_sd, monkeypatch):
    pytest.importorskip("ray")
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    assert ray_bin, "the ray command is missing"
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
             "--include-dashboard", "false", "--disable-usage-stats"]  # fmt: skip
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        path = _grid(tmp_path, tiny_sd, resources={"cpus": 1})
        code, out, err = run_cli(capsys, ["sweep", str(path), "--executor", "ray", "--ray-address",
                                          f"127.0.0.1:{port}"])  # fmt: skip
        assert code == 0, out + err
        assert "ray: submitted 2 cells, 1 CPUs and 0 GPUs each" in out
        grid = load_grid(path)
        assert [state(c, grid) for c in cells(grid)] == ["done", "done"]
        assert [_threads(run_folder(c)) for c in cells(grid)] == [1, 1]
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
