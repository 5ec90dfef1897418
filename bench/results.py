"""Run folders: unique creation, atomic writes, environment capture.

Layout (docs/ARCHITECTURE.md, "Results"): ``config.yaml``, ``env.json``, ``train.jsonl``, ``eval.parquet``,
``samples/``, ``lora/``, ``checkpoint/``. Every file is written to a temporary name in the same folder and renamed
into place, so a reader never sees half a file and a crash leaves the previous version intact."""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import yaml


def create_run_dir(results_dir: str | Path, method: str) -> Path:
    """Make a new, unique run folder; two runs started at once never share one (mkdir is exclusive)."""
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while True:
        path = root / f"{stamp}-{method}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_yaml(path: str | Path, data: dict) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_json(path: str | Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Rewrite ``path`` with ``rows`` appended, atomically (train.jsonl stays small: one row per update)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    write_text(path, old + "".join(json.dumps(row) + "\n" for row in rows))


def replace_dir(target: str | Path, write: Callable[[Path], None]) -> None:
    """Write a folder under a temporary name, then swap it in for ``target``."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _git_hash() -> str | None:
    """The checkout's commit; for an installed copy outside any checkout (scripts/gpu_perf.sh), $DPOK_BENCH_COMMIT."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        out = None
    return (out.stdout.strip() if out else "") or os.environ.get("DPOK_BENCH_COMMIT") or None


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def env_info(device: str, num_processes: int) -> dict:
    """Versions, git hash and device, for env.json."""
    packages = {}
    for name in ("dpok-bench", "torch", "diffusers", "transformers", "peft", "accelerate", "numpy"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "git": _git_hash(),
        "device": device,
        "num_processes": num_processes,
        "torch_threads": _torch_threads(),
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
