"""`bench paper`: the paper's grids run through `bench sweep`, then every table and figure is rebuilt from the run
folders alone; `--tables-only` gives the same bytes, and a quick build says so in every output."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.integration.cli_helpers import run_cli

FAST = ["sampling.num_steps=2"]
DPOK = {"samples_per_round": 2, "batch_size": 2, "grad_accum": 2, "buffer_size": 4, "value_batch_size": 4}
SFT = {"num_samples": 2, "sample_batch_size": 2, "batch_size": 2, "updates_per_round": 1}
SCORERS = "shapes-reward,shapes-oracle,shapes-quality,oversaturation"


def _grids(folder: Path) -> str:
    """Small copies of configs/paper's three grids on the shipped shapes model, two denoising steps."""
    folder.mkdir()
    table1 = {
        "name": "paper-table1",
        "run": {"set": FAST, "checkpoint_every": 1},
        "axes": {"prompt": [{"name": "count", "prompts": "four circles"}],
                 "arm": [{"name": "sft-kl-d", "method": "sft", "steps": 1, "gamma": 1.0, **SFT},
                         {"name": "dpok", "method": "dpok", "steps": 1, "beta": 0.01, **DPOK}],
                 "seed": [0]},
        "eval": [{"samples": 2, "scorers": SCORERS},
                 {"prompts": "a circle|a circle in the sky", "split": "bias", "samples": 2,
                  "scorers": "shapes-colour,shapes-background,oversaturation"},
                 {"prompts": "a red circle on the moon", "split": "stereotype", "samples": 1,
                  "scorers": "shapes-stereotype,oversaturation"}],
        "quick": {"run": {"steps": 1}},
    }  # fmt: skip
    table2 = {
        "name": "paper-table2",
        "run": {"method": "dpok", "prompts": "four circles|a red square", "steps": 1, "set": FAST, **DPOK},
        "axes": {"seed": [0]},
        "eval": [{"prompts": "four circles|a red square", "split": "train", "samples": 1, "scorers": SCORERS},
                 {"prompts": "three squares", "split": "heldout", "samples": 1, "scorers": SCORERS}],
    }  # fmt: skip
    kl = {
        "name": "paper-kl",
        "run": {"method": "dpok", "prompts": "four circles", "steps": 2, "snapshot_every": 1, "set": FAST, **DPOK},
        "axes": {"beta": [0.0, 0.1], "seed": [0]},
        "eval": [{"samples": 2, "snapshots": True, "scorers": SCORERS}],
    }  # fmt: skip
    for name, grid in (("table1", table1), ("table2", table2), ("kl", kl)):
        (folder / f"shapes-{name}.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    return str(folder / "shapes-*.yaml")


def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ("tables" in p.parts or "plots" in p.parts)}  # fmt: skip


def test_paper_runs_the_grids_writes_every_table_and_rebuilds_them_byte_for_byte(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pattern = _grids(tmp_path / "grids")
    out = tmp_path / "paper"
    code, stdout, err = run_cli(capsys, ["paper", "--grids", pattern, "--out", str(out), "--status"])
    assert code == 0 and f"== kl ({out / 'kl'}): 2 cells, 2 missing" in stdout.splitlines(), stdout + err
    code, stdout, err = run_cli(capsys, ["paper", "--grids", pattern, "--out", str(out), "--jobs", "2"])
    assert code == 0, stdout + err
    made = _outputs(out)
    expected = {f"tables/{stem}.{ext}" for stem in ("table1-count", "bias", "table2", "kl", "kl-steps")
                for ext in ("md", "csv", "tex")}  # fmt: skip
    expected |= {"tables/kl-final.md", "tables/kl-final.csv", "tables/runs.md", "plots/kl-curves.png",
                 "plots/kl-gold-vs-proxy.png"}  # fmt: skip
    assert set(made) == expected, sorted(made)
    table1 = made["tables/table1-count.md"].decode()
    rows = [line.split(" | ")[0].strip("| ") for line in table1.splitlines() if line.startswith("| ")]
    assert rows == ["method", "pretrained", "dpok", "sft-kl-d"], table1  # arms by their grid names
    assert "shapes-oracle (train)" in table1 and "oversaturation (train)" in table1
    table2 = made["tables/table2.md"].decode()
    assert "shapes-oracle (heldout)" in table2 and "shapes-oracle (train)" in table2
    bias = made["tables/bias.md"].decode()  # every eval call after the first: one column per scorer and split
    assert "shapes-colour tv-bias (bias)" in bias and "oversaturation (bias)" in bias
    header, *rows = [line.strip("|").split(" | ") for line in bias.splitlines() if line.startswith("| ")]
    stereotype = [row[header.index("shapes-stereotype (stereotype)")] for row in rows]
    assert len(stereotype) == 3 and all(cell[0].isdigit() for cell in stereotype), bias  # a rate, never "-"
    kl = made["tables/kl-final.md"].decode()
    assert "| beta=0 | 1 |" in kl and "| beta=0.1 | 1 |" in kl
    steps = made["tables/kl-steps.md"].decode()  # every evaluated point of training: the snapshot and the final
    rows = [line.split(" | ")[0].strip("| ") for line in steps.splitlines() if line.startswith("| ")]
    assert rows == ["method", "pretrained", "beta=0, round 1", "beta=0, round 2", "beta=0.1, round 1",
                    "beta=0.1, round 2"], steps  # fmt: skip
    final = [line for line in made["tables/kl.md"].decode().splitlines() if line.startswith("| beta=0 |")]
    assert final and final[0].replace("| beta=0 |", "") in steps  # the last point is the final LoRA of kl.md
    runs = made["tables/runs.md"].decode()
    assert "| table1 | dpok | 0 | 1 |" in runs and "Training wall time of every run above" in runs
    # From the run folders alone: a copy of the summaries (no weights) rebuilds the same bytes.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("lora", "checkpoint", "snapshots", "sweep.*", "tables",
                                                             "plots"))  # fmt: skip
    code, stdout, err = run_cli(capsys, ["paper", "--grids", pattern, "--out", str(copy), "--tables-only"])
    assert code == 0, stdout + err
    assert _outputs(copy) == made
    # Where `bench paper` put the cells, the summaries alone count as done: for `bench paper --status`, and for
    # `bench sweep --status --root` (the grid file's own root is elsewhere).
    code, stdout, err = run_cli(capsys, ["paper", "--grids", pattern, "--out", str(copy), "--status"])
    assert code == 0 and f"== table1 ({copy / 'table1'}): 2 cells, 2 done" in stdout.splitlines(), stdout + err
    code, stdout, err = run_cli(capsys, ["sweep", str(tmp_path / "grids" / "shapes-kl.yaml"), "--status", "--root",
                                         str(copy / "kl")])  # fmt: skip
    assert code == 0 and stdout.split()[0::2] == ["done", "done"], stdout + err
    # --quick says so in every table. The KL grid has the most kinds of output and no quick section, so its quick
    # cells are the cells above: their run folders are copied and only the tables are built.
    quick, grids = tmp_path / "quick", tmp_path / "quick-grids"
    grids.mkdir()
    shutil.copy(tmp_path / "grids" / "shapes-kl.yaml", grids / "shapes-kl.yaml")
    shutil.copytree(copy / "kl", quick / "kl")
    code, stdout, err = run_cli(
        capsys, ["paper", "--grids", str(grids / "*.yaml"), "--out", str(quick), "--quick", "--tables-only"]
    )
    assert code == 0, stdout + err
    outputs = _outputs(quick)
    assert {"tables/kl.md", "tables/kl.csv", "tables/kl.tex", "tables/kl-final.csv", "tables/runs.md",
            "plots/kl-curves.png"} <= set(outputs)  # fmt: skip
    for name, text in outputs.items():
        if name.endswith((".md", ".csv", ".tex")):
            assert "Quick check" in text.decode().splitlines()[0], name


# Committed paper results and the grid files they were run from (results/paper-model2/grids: the grids as they were
# when the second shapes model was shipped; configs/paper moved to other prompts with the third).
COMMITTED = {
    "results/paper": "configs/paper/shapes-*.yaml",
    "results/paper-model2": "results/paper-model2/grids/*.yaml",
}


def test_committed_paper_tables_rebuild_byte_for_byte_from_their_run_summaries(tmp_path, monkeypatch):
    from bench.paper import build_outputs, done_cells, load_grids

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    for out, pattern in COMMITTED.items():
        grids = load_grids(pattern, Path(out), quick=False)
        if not (Path(out) / "tables").is_dir():  # nothing committed yet, and then no finished cell either
            assert not any(done_cells(g) for g in grids), f"{out}: finished cells but no committed tables"
            continue
        build_outputs(grids, tmp_path / out, quick=False)
        committed, rebuilt = _outputs(Path(out)), _outputs(tmp_path / out)
        tables = {k: v for k, v in committed.items() if not k.endswith(".png")}
        assert tables, out
        assert {k: v for k, v in rebuilt.items() if not k.endswith(".png")} == tables, out
        assert sorted(rebuilt) == sorted(committed), out  # the same figures too
