"""Phase timers: no-op without a recording, additive with one; the perf summary states each goal's verdict."""

import time

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
    assert "5.600 s" in text and "# bench perf (quick)" in text
    assert "Ratio per pair of runs: 0.790, 0.810." in text
