"""The Markdown summary of a `bench perf` report: each figure with the goal it is held to, pass or miss."""

from __future__ import annotations

#: (section, key, goal, description): a ratio must be at most its goal
GOALS = (
    ("baseline", "this_vs_baseline", 0.75, "DPOK round vs the baseline install, same workload"),
    ("round", "round_vs_floor", 1.10, "DPOK round vs its floor (policy pass + reference pass + backward)"),
    ("sampling", "rollout_vs_pipeline", 1.10, "rollout without the reference vs the pipeline's own call"),
    ("round", "update_vs_bare_fwdbwd", 1.25, "recomputing update vs bare UNet forward+backward"),
    ("round", "graph_update_vs_bare_backward", 1.25, "on-policy update (graph kept) vs bare UNet backward"),
    ("trl", "trl_vs_ddpo", None, "TRL DDPOTrainer seconds per sample / the suite's ddpo (goal >= 1.35)"),
)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(rows: list[tuple], header: tuple) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def markdown(report: dict) -> str:
    s = report["sections"]
    env = report["env"]
    m = report.get("workload", {}).get("method", {"samples_per_round": 16, "batch_size": 32})
    full = report.get("recipe", m)  # the 60c05b5 recipe; a quick run measured with its own (halved) workload
    quick = ""  # a report from before "recipe" was kept says nothing here rather than the same figures twice
    if report["quick"] and "recipe" in report:
        quick = f"; --quick: {m['samples_per_round']} samples a round, micro-batch {m['batch_size']}"
    lines = [
        f"# bench perf{' (quick)' if report['quick'] else ''}",
        "",
        f"Device {env.get('device')}, torch {env.get('packages', {}).get('torch', '?')}, "
        f"{report['wall_seconds']:.0f} s in all. Workload: the shapes demo recipe of 60c05b5 (4 prompts, "
        f"{full['samples_per_round']} samples a round, 20 DDIM steps, guidance 5, eta 1, LoRA r4, one step over "
        f"{full['samples_per_round'] * 20} transitions, micro-batch {full['batch_size']}){quick}. "
        "Times are medians; every ratio compares two figures from this one run.",
        "",
        "## Goals",
        "",
    ]
    if report["quick"]:
        lines += ["Quick: half the samples, one timed repeat or round per figure, no processes section. Its ratios",
                  "are noisy (quick runs on 2026-12-07 differed by up to 0.2), so goals are judged on the full run",
                  "(`bench perf`).", ""]  # fmt: skip
    rows = []
    for section, key, goal, what in GOALS:
        value = s.get(section, {}).get(key)
        if value is None:
            rows.append((what, "not measured", goal if goal else ">= 1.35", ""))
            continue
        ok = value <= goal if goal is not None else value >= 1.35
        rows.append((what, value, goal if goal is not None else ">= 1.35", "meets" if ok else "misses"))
    lines += _table(rows, ("figure", "ratio", "goal", ""))
    if "round" in s:
        r = s["round"]
        lines += ["", "## One round, by phase (seconds)", ""]
        keys = sorted(set(r["phases_on_policy_graph"]) | set(r["phases_recompute"]))
        keys = [k for k in keys if k not in ("collect",)]
        lines += _table(
            [(k, r["phases_on_policy_graph"].get(k, 0.0), r["phases_recompute"].get(k, 0.0)) for k in keys],
            ("phase", "on-policy graph (default)", "recompute (on_policy_graph=off)"),
        )
        f = r["floor"]
        lines += [
            "",
            f"Floor {f['total']:.3f} s = policy sampling {f['policy_sampling']:.3f} + reference sampling "
            f"{f['reference_sampling']:.3f} + backward of {r['transitions']} transitions {f['backward']:.3f}. "
            f"Bare guided UNet on them (micro-batch 32): no-grad forward {r['bare_unet']['nograd']:.3f}, forward "
            f"with grad {r['bare_unet']['grad']:.3f}, forward+backward {r['bare_unet']['fwdbwd']:.3f}.",
        ]
    if "sampling" in s:
        lines += ["", "## Sampling (seconds)", ""]
        lines += _table(sorted(s["sampling"]["seconds"].items()), ("variant", "seconds"))
    if "memory" in s:
        lines += ["", "## Peak memory (MB)", ""]
        lines += _table(
            [
                (k, v["peak_rss_mb"], v["rss_growth_mb"], v.get("device_max_allocated_mb", ""))
                for k, v in s["memory"].items()
                if isinstance(v, dict)
            ],  # fmt: skip
            ("phase", "peak resident", "growth during phase", "device max allocated"),
        )
    if "scaling" in s:
        sc = s["scaling"]
        lines += ["", "## Scaling (rollout with the reference)", ""]
        lines += _table([(n, t, sc["per_sample_seconds_by_batch"][n]) for n, t in
                         sc["rollout_seconds_by_batch"].items()], ("batch", "seconds", "per sample"))  # fmt: skip
        lines += [""]
        lines += _table([(k, t, sc["per_step_seconds_by_steps"][k]) for k, t in
                         sc["rollout_seconds_by_steps"].items()], ("steps", "seconds", "per step"))  # fmt: skip
    if "options" in s:
        o = s["options"]
        lines += ["", "## Speed options: guided UNet at micro-batch 32, time relative to the default", ""]
        names = sorted(set(o["vs_default"]["forward"]) | set(o["vs_default"]["fwdbwd"]))
        lines += _table([(n, o["vs_default"]["forward"].get(n, ""), o["vs_default"]["fwdbwd"].get(n, "")) for n in
                         names], ("option", "no-grad forward", "forward+backward"))  # fmt: skip
        if "compile" in o:
            c = o["compile"]
            lines += ["", f"torch.compile: {c['compile_seconds_forward']:.0f} s to compile the forward; then "
                      f"{c['forward']:.3f} s vs {c['default_forward']:.3f} s eager."]  # fmt: skip
    if "processes" in s:
        p = s["processes"]
        lines += [
            "",
            f"## Processes: 2 (gloo, 1 thread each) vs 1 ({p['threads']['one']} threads) at "
            f"{p['total_samples_per_round']} samples a round",
            "",
            f"Round: 1 process {p['one_process_round_s']:.3f} s, 2 processes {p['two_processes_round_s']:.3f} s: "
            f"ratio {p['two_vs_one']:.3f}.",
        ]
    if "trl" in s:
        t = s["trl"]
        lines += ["", f"## ddpo vs TRL {t['trl_version']} DDPOTrainer (scripts/perf_vs_trl.sh, one row per run)", "",
                  "Seconds per sample at identical work, alternating blocks; the goal line above takes the lowest "
                  "ratio.", ""]  # fmt: skip
        rows = [(r["file"], r["trl_seconds_per_sample"], r["suite_ddpo_seconds_per_sample"], r["trl_vs_ddpo"],
                 f"{r['rounds_measured']['trl']} / {r['rounds_measured']['suite']}") for r in t["runs"]]  # fmt: skip
        lines += _table(rows, ("run", "TRL", "suite ddpo", "ratio", "rounds counted (TRL / suite)"))
    if "baseline" in s:
        bl = s["baseline"]
        lines += [
            "",
            "## Against the baseline install",
            "",
            f"{bl['baseline_package']}: {bl['baseline_round_s']:.3f} s a round; this install "
            f"{bl['this_round_s']:.3f} s ({bl['rounds_measured']['this']} rounds each, interleaved runs)."
            + (
                f" Ratio per pair of runs: {', '.join(f'{r:.3f}' for r in bl['pair_ratios'])}."
                if "pair_ratios" in bl
                else ""
            ),
        ]
    return "\n".join(lines) + "\n"
