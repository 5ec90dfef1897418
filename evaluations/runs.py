"""Read finished run folders for tables, plots and the report: configs, row labels, eval and training rows.

Everything here is a pure function of the folders on disk. Files are read whole with pandas/yaml/json; the
project writes them atomically (temp file + rename), so a reader sees either the old or the new file, never half.

What a scorer is (a gold measure, a category label, an image-quality or saturation measure) is read from its class
attributes (``bench.scoring.Scorer``), and which scorer is the proxy from the runs' own configs: this module, like
every report, names no scorer.

Row labels name a method and its *distinguishing* settings: a setting is shown when runs that have it disagree on
its value (``dpok (beta=0.01)`` next to ``dpok (beta=0.1)``). Seeds never distinguish runs: runs that differ only
by seed get the same label and are pooled; tables bootstrap such a row in two stages (runs, then images), so its
interval covers the run-to-run spread as well as the sampling noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import yaml

from bench.errors import BenchError

PRETRAINED = "pretrained"
# Top-level config keys that never tell two methods apart: bookkeeping, or pooled over (seed).
IGNORED_KEYS = {"seed", "results_dir", "model_path", "eval_scorers", "checkpoint_every", "snapshot_every",
                "allow_download", "method", "world"}  # fmt: skip
EVAL_COLUMNS = ["run", "step", "split", "prompt", "seed", "scorer", "scorer_version", "value"]


def sorted_runs(run_dirs: Iterable[str | Path]) -> list[Path]:
    """Unique run folders sorted by path, so the caller's argument order never changes an output."""
    return sorted({Path(d).resolve() for d in run_dirs})


def read_config(run_dir: Path) -> dict:
    """The resolved ``config.yaml`` of a run.

    Raises:
        BenchError: the folder has no readable config.yaml.
    """
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise BenchError(f"{run_dir} is not a run folder (no config.yaml)")
    return yaml.safe_load(path.read_text()) or {}


def recorded_fingerprint(run: Path) -> str | None:
    """The weights fingerprint env.json records (None for runs written before it did)."""
    import json

    path = run / "env.json"
    return json.loads(path.read_text()).get("model_fingerprint") if path.is_file() else None


def read_configs(runs: Sequence[Path]) -> dict[str, dict]:
    """Run folder name -> config.yaml, with ``weights`` (the first 8 characters of the weights fingerprint in its
    env.json, or ``unrecorded``) added where the runs trained different weights: a re-pretrained model keeps its name,
    so without it two models' runs would share a row label, and their pretrained rows one row."""
    configs = {d.name: read_config(d) for d in runs}
    weights = {d.name: recorded_fingerprint(d) for d in runs}
    if len(set(weights.values())) > 1:
        for name, fingerprint in weights.items():
            configs[name] = {**configs[name], "weights": fingerprint[:8] if fingerprint else "unrecorded"}
    return configs


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict to dotted keys; lists become tuples so values can be compared and hashed."""
    out: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _short(key: str) -> str:
    # hparams are the method's own knobs, named as in the paper (beta, alpha): show them bare.
    return key.removeprefix("hparams.")


def run_labels(configs: dict[str, dict]) -> dict[str, str]:
    """Row label per run name: ``method (k=v, ...)`` with the settings on which runs disagree.

    Args:
        configs: run name -> parsed config.yaml.
    """
    flat = {name: {k: v for k, v in flatten(cfg).items() if k.split(".")[0] not in IGNORED_KEYS}
            for name, cfg in configs.items()}  # fmt: skip
    keys = sorted({k for f in flat.values() for k in f})
    varying = [k for k in keys if len({repr(f[k]) for f in flat.values() if k in f}) > 1]
    labels = {}
    for name, cfg in configs.items():
        parts = [f"{_short(k)}={_fmt(flat[name][k])}" for k in varying if k in flat[name]]
        method = str(cfg.get("method", "?"))
        labels[name] = f"{method} ({', '.join(parts)})" if parts else method
    return labels


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def pretrained_labels(configs: dict[str, dict], evaluated: dict[tuple[str, str], frozenset]) -> dict:
    """Row label of each run's pretrained rows per split, ``(run, split) -> label``: ``pretrained``, with
    ``model=`` where the runs use several base models and ``prompts=`` (the run's training prompts) where, in that
    split, the runs were evaluated on different prompts. So each arm sits beside the pretrained model on its own
    prompts, never beside an average over other arms' prompts, and a split that every run scored on the same
    prompts (a shared held-out or bias set) keeps one pretrained row.

    Args:
        configs: run name -> parsed config.yaml.
        evaluated: (run, split) -> the prompts its pretrained rows in that split cover.
    """
    models = {name: str(cfg.get("model", "?")) for name, cfg in configs.items()}
    weights = {name: cfg.get("weights") for name, cfg in configs.items()}  # set by read_configs where runs differ
    splits: dict[str, set] = {}
    for (_, split), prompts in evaluated.items():
        splits.setdefault(split, set()).add(prompts)
    labels = {}
    for run, split in evaluated:
        parts = [f"model={models[run]}"] if len(set(models.values())) > 1 else []
        if len(set(weights.values())) > 1:
            parts.append(f"weights={weights[run]}")
        if len(splits[split]) > 1:
            parts.append(f"prompts={configs[run].get('prompts', '?')}")
        labels[(run, split)] = PRETRAINED + (f" ({', '.join(parts)})" if parts else "")
    return labels


def load_eval(run_dirs: Sequence[str | Path], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """All eval rows of the runs, with ``label`` (row label) and ``model`` columns added.

    Step 0 rows (the pretrained model) are labelled by :func:`pretrained_labels` and de-duplicated: every run
    re-scores the same pretrained model on the same seeds, and counting those images once per run would shrink the
    interval for no reason. Other rows keep only each run's last step (its final LoRA). ``labels`` (run folder
    name -> label) names the tuned rows instead of the labels made from the configs.

    Raises:
        BenchError: a folder has no config.yaml or no eval.parquet.
    """
    runs = sorted_runs(run_dirs)
    configs = read_configs(runs)
    labels = run_labels(configs) | (labels or {})
    models = {name: str(cfg.get("model", "?")) for name, cfg in configs.items()}
    frames = []
    for d in runs:
        path = d / "eval.parquet"
        if not path.is_file():
            raise BenchError(f"{d} has no eval.parquet; run `bench eval {d}` first")
        df = pd.read_parquet(path, columns=EVAL_COLUMNS)
        df["run"] = d.name  # the folder name wins over a stored name, in case a folder was renamed
        frames.append(df[(df.step == 0) | (df.step == df.step.max())])
    df = pd.concat(frames, ignore_index=True)
    df["model"] = df.run.map(models)
    base = df.step == 0
    df["label"] = df.run.map(labels)
    evaluated = {key: frozenset(part.prompt) for key, part in df[base].groupby(["run", "split"])}
    named = pretrained_labels(configs, evaluated)
    df.loc[base, "label"] = [named[key] for key in zip(df.run[base], df.split[base], strict=True)]
    keys = ["label", "split", "prompt", "seed", "scorer", "scorer_version"]
    df = pd.concat([df[base].drop_duplicates(keys), df[~base]], ignore_index=True)
    return df.sort_values(["label", "run", "step", "split", "scorer", "prompt", "seed"], kind="stable")


def paired_steps(part: pd.DataFrame, final: int | None = None) -> pd.DataFrame:
    """One scorer's rows of one run: columns ``base`` (step 0) and ``tuned`` (step ``final``, default the last),
    matched on (prompt, seed); images missing from either step (or NaN) are dropped."""
    final = part.step.max() if final is None else final
    base = part[part.step == 0].set_index(["prompt", "seed"]).value
    tuned = part[part.step == final].set_index(["prompt", "seed"]).value
    return pd.concat([base.rename("base"), tuned.rename("tuned")], axis=1).dropna()


def run_clusters(frames: Sequence[pd.DataFrame], value: str = "value", draw: Sequence[str] = ("prompt", "seed")):
    """Per run's frame: its values and the evaluation draw (the ``draw`` columns) of each, the clusters and keys
    ``bench.stats.cluster_bootstrap_ci`` takes (runs scored on the same draws are crossed)."""
    values = [f[value].to_numpy() for f in frames]
    keys = [list(zip(*(f[c] for c in draw), strict=True)) for f in frames]
    return values, keys


def load_training(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """All train.jsonl rows with ``run`` and ``label``; ``reward`` falls back to ``data_reward`` (offline methods)."""
    runs = sorted_runs(run_dirs)
    labels = run_labels({d.name: read_config(d) for d in runs})
    frames = []
    for d in runs:
        path = d / "train.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        rows = [json.loads(line) for line in lines if line.strip()]
        if rows:
            frame = pd.DataFrame(rows)
            frame["run"], frame["label"] = d.name, labels[d.name]
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "label", "update", "reward", "kl"])
    df = pd.concat(frames, ignore_index=True)
    if "data_reward" in df:
        df["reward"] = df["reward"].fillna(df["data_reward"]) if "reward" in df else df["data_reward"]
    return df


def update_rounds(run_dir: str | Path) -> dict[int, int]:
    """A run's update number -> its training round (from train.jsonl); empty when the rows carry no round."""
    rows = load_training([run_dir])
    return dict(zip(rows["update"], rows["round"], strict=True)) if "round" in rows else {}


def scorer_attr(name: str, attr: str, default=None):
    """An attribute of the registered scorer ``name`` (``gold``, ``kind``, ``role``...); ``default`` when the name is
    not registered here (a plugin that is not installed): its rows are then shown as plain scores."""
    from bench.registry import SCORERS

    try:
        return getattr(SCORERS.get(name), attr, default)
    except BenchError:
        return default


def label_scorers(names: Iterable[str]) -> set[str]:
    """The scorers among ``names`` whose value is a category index (``kind == "label"``): no mean of them."""
    return {n for n in names if scorer_attr(n, "kind", "score") == "label"}


def gold_scorers(names: Iterable[str]) -> list[str]:
    """The scorers among ``names`` that are a world's ground truth (``gold``), sorted."""
    return sorted(n for n in set(names) if scorer_attr(n, "gold", False))


def role_scorers(names: Iterable[str], role: str) -> list[str]:
    """The scorers among ``names`` with ``role`` (``"quality"``, ``"saturation"``), sorted."""
    return sorted(n for n in set(names) if scorer_attr(n, "role", "") == role)


def proxy_scorer(configs: Iterable[dict], names: Iterable[str]) -> str | None:
    """The reward the runs trained on (the most common, ties by name), when it is not a gold measure and was
    scored; for runs trained on the gold measure itself, their world's default reward (the proxy they are compared
    with). None when no such scorer was scored."""
    from collections import Counter

    from bench.resolve import world_name
    from bench.world import get_world

    names, counts = set(names), Counter()
    for cfg in configs:
        reward = str(cfg.get("reward", ""))
        if reward and not scorer_attr(reward, "gold", False):
            counts[reward] += 1
            continue
        try:
            counts[str(get_world(world_name(cfg.get("world"))).defaults().get("reward", ""))] += 1
        except BenchError:  # the run's world is not installed here
            continue
    ranked = sorted((n for n in counts if n in names), key=lambda n: (-counts[n], n))
    return ranked[0] if ranked else None
