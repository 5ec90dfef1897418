"""A local cache of the pretrained model's evaluation (step 0 of ``bench eval``).

Every run of a grid scores the pretrained model again on the same prompts and evaluation seeds: in the paper's
Table 1 on the shapes world, 18 runs share each prompt and all 72 share the bias prompts. Sampling is deterministic
on one machine, so those scores are the same every time; the cache keeps them once.

An entry is the whole step-0 evaluation of one call: its score rows and its sample grids. Its key holds everything
the images and scores depend on: the model's weight files (by content), the sampler settings, the prompt list, the
number of seeds, the sampling batch, each scorer's name and version, and the machine (torch version, device, CPU
model, torch threads), because another CPU's float arithmetic draws other images (results/shapes-demo/REPORT.md).
A hit therefore returns what sampling would have returned on this machine; the cached rows are the values the
first run computed, byte for byte.

Where: ``$BENCH_EVAL_CACHE``, else ``$XDG_CACHE_HOME/dpok-bench/eval`` (``~/.cache/...``). ``BENCH_EVAL_CACHE=off``
turns it off; ``bench eval --no-cache`` skips it for one call. Entries are small (a parquet file of scores and the
grids' PNGs); delete the folder to clear it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from bench.models import model_fingerprint

OFF = ("0", "off", "false", "no")


def cache_root() -> Path | None:
    """The cache folder, or None when ``BENCH_EVAL_CACHE`` turns it off."""
    env = os.environ.get("BENCH_EVAL_CACHE", "")
    if env.lower() in OFF:
        return None
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "dpok-bench" / "eval"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def scorer_fingerprint(scorer) -> list[str]:
    """Name, version and a SHA-256 of the weights of every module the scorer holds (a retrained proxy reward keeps
    its name and version but is another scorer)."""
    digest = hashlib.sha256()
    for attr, value in sorted(vars(scorer).items()):
        if isinstance(value, torch.nn.Module):
            for name, tensor in value.state_dict().items():
                digest.update(f"{attr}.{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return [scorer.name, str(scorer.version), digest.hexdigest()]


def machine() -> dict:
    device = "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0)
    return {"torch": torch.__version__, "device": device, "cpu": _cpu_model(), "threads": torch.get_num_threads()}


def entry_key(model_path, sampling: dict, prompts: list[str], samples: int, batch_size: int, scorers) -> dict | None:
    """Everything the pretrained model's step-0 rows and grids depend on (``scorers``: Scorer instances); None
    when the model cannot be fingerprinted."""
    model = model_fingerprint(model_path)
    if model is None:
        return None
    return {
        "model": model,
        "sampling": sampling,
        "prompts": list(prompts),
        "samples": samples,
        "batch_size": batch_size,
        "scorers": [scorer_fingerprint(s) for s in scorers],
        "machine": machine(),
    }


def _folder(root: Path, key: dict) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return root / name


def load(key: dict) -> tuple[pd.DataFrame, Path] | None:
    """The cached rows (prompt, seed, scorer, scorer_version, value) and the folder of its grids, or None."""
    root = cache_root()
    if root is None:
        return None
    folder = _folder(root, key)
    try:
        if json.loads((folder / "key.json").read_text()) != key:
            return None
        return pd.read_parquet(folder / "rows.parquet"), folder / "grids"
    except (OSError, ValueError):
        return None


def store(key: dict, rows: pd.DataFrame, grids: list[Path]) -> None:
    """Write an entry (the rows, and the grid files as grids/0.png, 1.png, ... in prompt order) atomically, as a
    temporary folder renamed into place; a failure to cache is not an error."""
    root = cache_root()
    if root is None:
        return
    folder = _folder(root, key)
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".entry-", dir=root))
        rows.to_parquet(tmp / "rows.parquet", index=False)
        (tmp / "grids").mkdir()
        for i, grid in enumerate(grids):
            shutil.copyfile(grid, tmp / "grids" / f"{i}.png")
        (tmp / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
