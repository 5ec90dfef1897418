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


def test_eval_then_table_on_two_runs(capsys, tmp_path, tiny_sd):
    runs = []
    for beta in ("0.01", "0.5"):
        args = ["run", "--model", str(tiny_sd), "--steps", "1", "--results-dir", str(tmp_path), "--beta", beta,
                "--lr", "0.05", "--prompts", "a red circle|a blue square"] + TINY_DPOK  # fmt: skip
        code, out, err = run_cli(capsys, args)
        assert code == 0, err
        runs.append(Path(out.strip().splitlines()[-1].removeprefix("run folder: ")))
        code, out, err = run_cli(capsys, ["eval", str(runs[-1]), "--samples", "3", "--scorers", "compressibility"])
        assert code == 0, err
    csv_path = tmp_path / "table.csv"
    code, out, err = run_cli(capsys, ["table", *map(str, runs), "--format", "csv", "--out", str(csv_path)])
    assert code == 0, err
    table = pd.read_csv(csv_path)
    df = pd.concat([pd.read_parquet(r / "eval.parquet") for r in runs])
    label_col = table.columns[0]
    means = {row[label_col]: row for _, row in table.iterrows()}
    mean_col = next(c for c in table.columns if "mean" in c)
    for run, beta in zip(runs, ("0.01", "0.5"), strict=True):
        expected = df[(df.run == run.name) & (df.step == 1)].value.mean()
        assert means[f"dpok (beta={beta})"][mean_col] == pytest.approx(expected, abs=1e-9)
    base = df[(df.run == runs[0].name) & (df.step == 0)].value.mean()
    assert means["pretrained"][mean_col] == pytest.approx(base, abs=1e-9)
    code, out, err = run_cli(capsys, ["table", *map(str, runs)])
    assert code == 0 and out.startswith("| method |")
