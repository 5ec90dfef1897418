"""A regular (non-editable) install finds everything the project ships: the shapes model, the shapes-reward weights,
the prompt files. In the source tree ``evaluations/`` sits beside ``bench/``; installed, it is ``bench/evaluations``,
so a path written relative to the source layout breaks only there (the proxy reward once did)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import torch
import bench
from bench.evaluations.bias import TRAPS_FILE
from bench.shapes.proxy import DEFAULT_DIR, ShapesReward
from bench.shapes.paths import MODEL as SHAPES_MODEL
from bench.prompts import load_prompts

assert Path(bench.__file__).is_relative_to(TARGET), bench.__file__
for path in (SHAPES_MODEL / "model_index.json", DEFAULT_DIR / "config.json", TRAPS_FILE):
    assert path.is_file() and path.is_relative_to(TARGET), path
assert len(load_prompts("shapes-demo")) == 4 and len(load_prompts("dpok-single")) == 4
from bench.resolve import resolve_run_config
cfg, _, files = resolve_run_config(None, {}, [], [])  # the default world's settings files, from the install
assert cfg.world == "shapes" and len(files) == 2 and all(Path(f).is_relative_to(TARGET) for f in files), files
scores = ShapesReward(device="cpu")(torch.zeros(2, 3, 32, 32), ["a red circle", "four squares"])
assert scores.shape == (2,) and torch.isfinite(scores).all()
print("ok")
"""


def test_installed_package_finds_its_shipped_files(tmp_path):
    source = tmp_path / "src"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "results", ".*cache*", "__pycache__", "tests")
    shutil.copytree(ROOT, source, ignore=skip)
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation"]
    subprocess.run(pip + ["--no-compile", "--target", str(target), str(source)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = f"from pathlib import Path\nTARGET = Path({str(target)!r})\n" + CHECK
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
