"""Prompt sets as ``datasets.Dataset`` objects: a shipped set by name, a local .txt/.jsonl file, or a dataset name.

Shipped sets are the worlds' ``<name>-v<N>.txt|jsonl`` files (``World.prompt_dirs``; the highest N unless the
version is given). Files
are read with the ``text`` builder so that ``#`` comment lines (source and licence) can be dropped before JSON lines
are parsed; the ``json`` builder would reject them. A dataset name is loaded from the local cache only when
``HF_DATASETS_OFFLINE=1`` (as in tests), and must have a ``prompt`` column.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError
from bench.prompts import named_dataset, shipped_file


def _from_file(path: Path, cache_dir: str | None):
    from datasets import load_dataset

    lines = load_dataset("text", data_files=str(path), split="train", cache_dir=cache_dir)
    lines = lines.filter(lambda row: bool(row["text"].strip()) and not row["text"].lstrip().startswith("#"))
    if path.suffix != ".jsonl":
        return lines.map(lambda row: {"prompt": row["text"].strip()}, remove_columns=["text"])
    try:
        rows = [json.loads(text) for text in lines["text"]]
    except ValueError as error:
        raise BenchError(f"prompt file {path}: a line is not JSON ({error})") from None
    if not all(isinstance(r, dict) and "prompt" in r for r in rows):
        raise BenchError(f'prompt file {path}: every line needs a "prompt" field')
    from datasets import Dataset

    return Dataset.from_list(rows)


def load_prompt_dataset(spec: str, split: str = "train", cache_dir: str | None = None):
    """Load prompts as a ``datasets.Dataset`` with a ``prompt`` column (plus any other fields of the source).

    Args:
        spec: a shipped set name, a path to a .txt or .jsonl file, or a dataset name (local cache only offline).
        split: the split of a named dataset.
        cache_dir: datasets' cache folder (default: its own).

    Raises:
        BenchError: the spec matches nothing, or the data has no prompts.
    """
    path = Path(spec).expanduser()
    if not path.is_file():
        path = shipped_file(spec)
    if path is not None:
        data = _from_file(path, cache_dir)
    else:
        return named_dataset(spec, split, cache_dir)
    if "prompt" not in data.column_names or len(data) == 0:
        raise BenchError(f"prompt set {spec!r} has no prompts (needs a non-empty 'prompt' column)")
    return data
