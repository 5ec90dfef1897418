"""The README's method example is complete: extracted from README.md and run through `bench run --plugin`."""

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_is_at_most_150_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_the_method_example_runs_for_two_updates(tmp_path):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- method-example -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.splitlines()) <= 40
    (tmp_path / "my_method.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    args = ["run", "--plugin", "my_method:PlainPG", "--method", "plain-pg", "--steps", "2", "--updates-per-round",
            "1", "--samples", "2", "--set", "sampling.num_steps=4"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / done.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    rows = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2] and all(r["kl"] == r["kl"] for r in rows)


def test_the_demo_table_is_rebuilt_from_the_committed_runs():
    """The README's demo table is what its marker's `bench table` command prints over results/, byte for byte."""
    text = (ROOT / "README.md").read_text()
    command, table = re.search(r"<!-- demo-table: bench (.*?) -->\n(.*?\n)\n", text, re.S).groups()
    args = [arg for word in command.split() for arg in (sorted(glob.glob(word, root_dir=ROOT)) or [word])]
    assert any("results/" in arg for arg in args), "the command reads no committed run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == table
