"""`bench perf` on the shipped shapes model: the sampling section writes its ratios; bad sections are refused."""

import json

from cli_helpers import run_cli


def test_perf_sampling_section_writes_json_and_markdown(capsys, tmp_path, monkeypatch):
    from bench import perf

    monkeypatch.setitem(perf.WORKLOAD["method"], "samples_per_round", 4)  # the report's shape, not its figures
    monkeypatch.setitem(perf.SAMPLING, "num_steps", 4)
    code, out, err = run_cli(capsys, ["perf", "--quick", "--sections", "sampling", "--out", str(tmp_path)])
    assert code == 0, err
    (path,) = tmp_path.glob("*.json")
    report = json.loads(path.read_text())
    sampling = report["sections"]["sampling"]
    assert set(sampling["seconds"]) == {"pipeline", "pipeline_reference", "rollout", "rollout_reference",
                                        "rollout_graph"}  # fmt: skip
    assert all(v > 0 for v in sampling["seconds"].values())
    assert sampling["rollout_vs_pipeline"] == sampling["seconds"]["rollout"] / sampling["seconds"]["pipeline"]
    assert report["quick"] is True and path.stem.endswith("-quick") and sampling["batch"] == 2  # quick: half
    assert report["workload"]["method"]["samples_per_round"] == 2 and report["workload"]["method"]["batch_size"] == 16
    assert sampling["steps"] == 4
    text = path.with_suffix(".md").read_text()
    assert "rollout without the reference vs the pipeline's own call" in text
    # the header names the recipe (4 samples here, patched) and what the quick run measured with (half of it)
    assert "(4 prompts, 4 samples a round," in text and "--quick: 2 samples a round, micro-batch 16." in text


def test_perf_refuses_unknown_sections(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["perf", "--sections", "sampling,warp", "--out", str(tmp_path)])
    assert code == 2 and "--sections: unknown warp; known: sampling, round" in err
    for args in (["--budget-s", "60"], ["--sd15", "--budget-s", "0"], ["--sd15", "--budget-s", "nan"]):
        code, _, err = run_cli(capsys, ["perf", *args, "--out", str(tmp_path)])
        assert code == 2 and "--budget-s: a positive number of seconds, with --sd15" in err
    assert not list(tmp_path.iterdir())


def test_the_accelerator_grid_of_perf_sd15_runs_its_cells_code_path_on_cpu(tmp_path, tiny_sd, monkeypatch):
    """What `bench perf --sd15 --device cuda` runs, checked here without a GPU: its grid, bf16 and fp16 cells
    without gradient checkpointing through the real trainer (a tiny SD; accelerate autocasts both on CPU), and the
    report with a cell that ran out of memory."""
    import torch

    from bench import perf_sd

    grid = perf_sd.sd15_cells("cuda", quick=False)
    assert len(grid) == 12 and {c["steps"] for c in grid} == {50}
    assert {(c["batch"], c["precision"], c["checkpointing"]) for c in grid} == {
        (b, p, g) for b in (1, 4, 8) for p in ("fp16", "bf16") for g in (True, False)
    }
    assert len(perf_sd.sd15_cells("cuda", quick=True)) == 8 and len(perf_sd.sd15_cells("cpu", False)) == 1
    from accelerate import Accelerator

    Accelerator(cpu=True)  # a state at fp32 already in this process, as after the grid's first cells
    for precision in ("bf16", "fp16", "no"):  # one process, three precisions: accelerate alone refuses a second
        cell = perf_sd.dpok_round(str(tiny_sd), batch=2, steps=3, checkpointing=False, precision=precision, rounds=2)
        assert cell["images_per_s"] > 0 and cell["phases_s"]["update"] > 0 and cell["precision"] == precision
    Accelerator(cpu=True)  # and the state is left clean for what runs next

    def out_of_memory(model_path, **cell):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")

    monkeypatch.setattr(perf_sd, "dpok_round", out_of_memory)
    path = perf_sd.run_sd15(tmp_path, "cpu", quick=True, echo=lambda m: None, model_path=str(tiny_sd))
    report = json.loads(path.read_text())
    assert report["cells"] == [{"batch": 1, "steps": 2, "checkpointing": True, "precision": "no",
                                "error": "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"}]  # fmt: skip
    assert "| 1 | 2 | True | no | out of memory: CUDA out of memory." in path.with_suffix(".md").read_text()


def test_perf_sd15_starts_no_cell_past_its_budget_and_writes_after_every_cell(tmp_path, monkeypatch):
    """The one-shot GPU run: a cell whose estimate (the last time at its batch, else the last cell's scaled by
    batch) would pass the budget is reported as not run, and the report on disk holds every finished cell while the
    next one runs."""
    from bench import perf, perf_sd

    clock = {"now": 0.0}
    monkeypatch.setattr(perf_sd, "_now", lambda: clock["now"])
    monkeypatch.setattr(perf, "device_name", lambda dev: "fake-gpu-80gb")  # the GPU grid, on no GPU
    seen = []

    def fake_round(model_path, **cell):
        written = sorted(tmp_path.glob("gpu-fake-gpu-80gb-sd15-*.json"))
        seen.append(len(json.loads(written[0].read_text())["cells"]) if written else 0)
        clock["now"] += {1: 40.0, 4: 100.0, 8: 200.0}[cell["batch"]]
        return {
            "batch": cell["batch"],
            "steps": cell["steps"],
            "gradient_checkpointing": cell["checkpointing"],
            "precision": cell["precision"],
            "phases_s": {"round": 1.0},
            "images_per_s": 1.0,
            "peak_rss_mb": 1.0,
        }

    monkeypatch.setattr(perf_sd, "dpok_round", fake_round)
    path = perf_sd.run_sd15(tmp_path, "cuda", quick=False, echo=lambda m: None, model_path="unused")  # 450 s default
    assert path.name.startswith("gpu-fake-gpu-80gb-sd15-")
    report = json.loads(path.read_text())
    cells = report["cells"]
    assert report["device"] == "fake-gpu-80gb" and report["budget_s"] == 450
    assert seen == [0, 1, 2, 3, 4]  # each cell found the ones before it on disk
    # estimates: a batch's own last time, else the last cell's scaled by batch (b4 after b1: 160 s; b8 after b4: 200)
    ran = [i for i, c in enumerate(cells) if "error" not in c]
    assert ran == [0, 1, 2, 3, 6] and [cells[i]["batch"] for i in ran] == [1, 4, 8, 1, 1]  # t = 40 ... 420 s
    assert len(cells) == 12 and all(
        cells[i]["error"] == "not run: over the 450 s budget" for i in set(range(12)) - set(ran)
    )
    assert "no cell started past 450 s" in path.with_suffix(".md").read_text()


def test_quick_leaves_out_the_processes_section_unless_asked_for(capsys, tmp_path, monkeypatch):
    from bench import perf

    chosen = []

    def fake_run_perf(quick, baseline, out_dir, device, sections, log):
        chosen.append((quick, sections))
        return out_dir / "report.json"

    monkeypatch.setattr(perf, "run_perf", fake_run_perf)
    for args in (["--quick"], [], ["--quick", "--sections", "processes"]):
        code, _, err = run_cli(capsys, ["perf", *args, "--out", str(tmp_path)])
        assert code == 0, err
    assert chosen == [(True, ("sampling", "round", "memory", "scaling", "options")),
                      (False, ("sampling", "round", "memory", "scaling", "options", "processes")),
                      (True, ("processes",))]  # fmt: skip


def test_an_installed_copy_outside_a_checkout_takes_its_commit_from_the_environment(monkeypatch):
    """scripts/gpu_perf.sh installs the project into a site folder, where git finds no checkout."""
    import subprocess

    from bench import results

    def no_repo(*args, **kwargs):
        return subprocess.CompletedProcess(args, 128, stdout="", stderr="fatal: not a git repository")

    monkeypatch.setattr(results.subprocess, "run", no_repo)
    monkeypatch.setenv("DPOK_BENCH_COMMIT", "0123abc")
    assert results.env_info("cuda", 1)["git"] == "0123abc"
    monkeypatch.delenv("DPOK_BENCH_COMMIT")
    assert results.env_info("cuda", 1)["git"] is None


def test_gpu_perf_script_says_what_it_needs(tmp_path):
    """The one-shot GPU script refuses a wrong verb and a run without its wheels, before installing anything."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_perf.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: scripts/gpu_perf.sh fetch" in usage.stderr
    env = {"PATH": "/usr/bin:/bin", "WHL": str(tmp_path / "none"), "SITE": str(tmp_path / "site")}
    missing = subprocess.run(["bash", str(script), "run"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "no wheels in" in missing.stderr and not (tmp_path / "site").exists()
