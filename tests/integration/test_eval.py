"""`bench eval`: pretrained vs fine-tuned on shared evaluation seeds, rows in eval.parquet, grids in samples/."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import TINY_DPOK, run_cli


def test_eval_writes_rows_and_a_table_pandas_can_recompute(capsys, tmp_path, tiny_sd):
    args = ["run", "--model", str(tiny_sd), "--steps", "1", "--results-dir", str(tmp_path), "--lr", "0.05",
            "--prompts", "a red circle|a blue square"] + TINY_DPOK  # fmt: skip
    code, out, err = run_cli(capsys, args)
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].removeprefix("run folder: "))
    code, out, err = run_cli(
        capsys, ["eval", str(run_dir), "--samples", "3", "--scorers", "compressibility,oversaturation"]
    )
    assert code == 0, err
    df = pd.read_parquet(run_dir / "eval.parquet")
    assert list(df.columns) == ["run", "step", "split", "prompt", "seed", "scorer", "scorer_version", "value"]
    assert len(df) == 2 * 2 * 3 * 2  # steps (pretrained, final) x prompts x samples x scorers
    assert set(df.step) == {0, 1} and set(df.split) == {"train"}
    # the same seeds for both models, so differences are paired
    seeds = df.groupby("step").seed.apply(lambda s: sorted(set(s)))
    assert seeds[0] == seeds[1]
    line = next(row for row in out.splitlines() if row.startswith("compressibility"))
    part = df[df.scorer == "compressibility"]
    base, tuned = part[part.step == 0].value.mean(), part[part.step == 1].value.mean()
    printed = [
        float(x.strip("[],")) for x in line.split()[1:] if x.strip("[],").lstrip("+-").replace(".", "").isdigit()
    ]
    assert printed[0] == pytest.approx(base, abs=5e-4) and printed[3] == pytest.approx(tuned, abs=5e-4)
    assert printed[6] == pytest.approx(tuned - base, abs=5e-4)
    assert len(list((run_dir / "samples" / "step1").glob("*.png"))) == 2
    # re-running replaces what it re-measured and keeps the rest
    run_cli(capsys, ["eval", str(run_dir), "--samples", "3", "--scorers", "compressibility"])
    again = pd.read_parquet(run_dir / "eval.parquet")
    assert len(again) == len(df) and np.isclose(again.value.sum(), df.value.sum())
