"""`bench perf` on the shipped shapes model: the sampling section writes its ratios; bad sections are refused."""

import json

from cli_helpers import run_cli


def test_perf_sampling_section_writes_json_and_markdown(capsys, tmp_path, monkeypatch):
    from bench import perf

    monkeypatch.setitem(perf.WORKLOAD["method"], "samples_per_round", 2)  # the report's shape, not its figures
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
    assert report["quick"] is True and path.stem.endswith("-quick") and sampling["batch"] == 2
    assert sampling["steps"] == 4
    text = path.with_suffix(".md").read_text()
    assert "rollout without the reference vs the pipeline's own call" in text


def test_perf_refuses_unknown_sections(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["perf", "--sections", "sampling,warp", "--out", str(tmp_path)])
    assert code == 2 and "--sections: unknown warp; known: sampling, round" in err
    assert not list(tmp_path.iterdir())
