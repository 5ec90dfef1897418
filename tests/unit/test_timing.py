"""Phase timers: no-op without a recording, additive with one; the perf summary states each goal's verdict."""

import json
import time

import pytest

from bench.perf_report import markdown
from bench.timing import PeakMemory, phase, record


def test_phase_is_a_no_op_without_a_recording_and_adds_up_with_one():
    with phase("x"):
        pass
    with record() as rec:
        for _ in range(3):
            with phase("sleep"):
                time.sleep(0.01)
        with phase("other"):
            pass
    assert rec["calls"] == {"sleep": 3, "other": 1}
    assert 0.03 <= rec["seconds"]["sleep"] < 0.5
    with phase("after"):  # the recording is closed
        pass
    assert "after" not in rec["seconds"]


def test_peak_memory_sees_a_large_allocation():
    import torch

    with PeakMemory() as peak:
        x = torch.ones(64, 2**20)  # 256 MiB, touched
        time.sleep(0.05)
        del x
    assert peak.peak_rss - peak.rss_start > 200 * 2**20


def test_the_summary_marks_each_goal():
    report = {
        "quick": True,
        "wall_seconds": 12.0,
        "env": {"device": "cpu", "packages": {"torch": "2.13.0"}},
        "sections": {
            "sampling": {"rollout_vs_pipeline": 1.05, "seconds": {"pipeline": 1.0, "rollout": 1.05}},
            "baseline": {
                "this_vs_baseline": 0.8,
                "baseline_package": "/old",
                "baseline_round_s": 7.0,
                "this_round_s": 5.6,
                "pair_ratios": [0.79, 0.81],
                "rounds_measured": {"this": 3, "baseline": 3},
            },  # fmt: skip
        },
    }
    text = markdown(report)
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "meets" in lines["rollout without the reference vs the pipeline's own call"]
    assert "misses" in lines["DPOK round vs the baseline install, same workload"]
    assert "not measured" in lines["DPOK round vs its floor (policy pass + reference pass + backward)"]
    assert "5.600 s" in text and "# bench perf (quick)" in text and "goals are judged on the full run" in text
    assert "Ratio per pair of runs: 0.790, 0.810." in text


def test_every_trl_run_is_listed_and_the_lowest_ratio_is_the_goal_figure(tmp_path):
    from bench.perf import trl_section

    for name, trl_s in (("trl-cpu-2core-2026-12-07.json", 0.336), ("trl-cpu-2core-2026-12-07-2.json", 0.375)):
        run = {"trl_version": "0.23.1", "trl_seconds_per_sample": trl_s, "suite_ddpo_seconds_per_sample": 0.24,
               "trl_vs_ddpo": trl_s / 0.24, "rounds_measured": {"trl": 10, "suite": 10}}  # fmt: skip
        (tmp_path / name).write_text(json.dumps(run))
    (tmp_path / "trl-other-device-2026-12-07.json").write_text("{}")  # another machine's run is not read
    section = trl_section(tmp_path, "cpu-2core")
    assert [r["file"] for r in section["runs"]] == ["trl-cpu-2core-2026-12-07-2.json", "trl-cpu-2core-2026-12-07.json"]
    assert section["trl_vs_ddpo"] == pytest.approx(0.336 / 0.24)
    report = {"quick": False, "wall_seconds": 1.0, "env": {}, "sections": {"trl": section}}
    text = markdown(report)
    assert "| trl-cpu-2core-2026-12-07-2.json | 0.375 | 0.240 | 1.562 | 10 / 10 |" in text
    goal = next(line for line in text.splitlines() if line.startswith("| TRL DDPOTrainer"))
    assert "| 1.400 |" in goal and "meets" in goal
    assert trl_section(tmp_path / "none", "cpu-2core") is None
