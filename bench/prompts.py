"""Prompt lists from a named, versioned set, a .txt/.jsonl file, a `datasets` name (``org/name``, from the local
cache when offline), or literal prompts separated by '|'.

Named sets are the worlds' shipped files (``World.prompt_dirs``): the run's world first, then every other world's,
so a set name means one file whatever the world."""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError


def prompt_dirs(world: str | None = None) -> list[Path]:
    """The folders of shipped prompt sets: ``world``'s first (when named), then every other registered world's."""
    from bench.registry import WORLDS

    names = WORLDS.names()
    order = ([world] if world in names else []) + [n for n in names if n != world]
    folders = []
    for name in order:
        try:
            folders += [Path(d) for d in getattr(WORLDS.get(name), "prompt_dirs", ())]
        except BenchError:  # a broken world lends no prompts; its own name reports why
            continue
    return folders


def known_sets(world: str | None = None) -> list[str]:
    """Names of the shipped prompt sets (file stems without the version suffix)."""
    names = set()
    for path in [p for d in prompt_dirs(world) for pattern in ("*.txt", "*.jsonl") for p in d.glob(pattern)]:
        stem = path.stem
        names.add(stem.rsplit("-v", 1)[0] if stem.rsplit("-v", 1)[-1].isdigit() else stem)
    return sorted(names)


def shipped_file(name: str, world: str | None = None) -> Path | None:
    """The file of shipped set ``name`` (``drawbench-dpok`` is its highest version, ``drawbench-dpok-v1`` that one)."""
    if "/" in name or "\\" in name or not name.strip():
        return None
    for folder in prompt_dirs(world):
        found = _in_folder(folder, name)
        if found is not None:
            return found
    return None


def _in_folder(folder: Path, name: str) -> Path | None:
    for suffix in (".txt", ".jsonl"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    versions = [
        p
        for suffix in (".txt", ".jsonl")
        for p in folder.glob(f"{name}-v*{suffix}")
        if p.stem.rsplit("-v", 1)[-1].isdigit()
    ]
    return max(versions, key=lambda p: int(p.stem.rsplit("-v", 1)[-1])) if versions else None


def read_prompt_file(path: Path) -> list[str]:
    """One prompt per line (blank lines and '#' comments skipped), or JSON lines with a "prompt" field."""
    prompts = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if path.suffix == ".jsonl":
            try:
                prompts.append(str(json.loads(line)["prompt"]))
            except (ValueError, KeyError, TypeError):
                raise BenchError(f'prompt file {path} line {number}: expected JSON with a "prompt" field') from None
        else:
            prompts.append(line)
    return prompts


def named_dataset(spec: str, split: str = "train", cache_dir: str | None = None):
    """A `datasets` dataset by name (the local cache only when offline) that has a non-empty ``prompt`` column."""
    from datasets import load_dataset

    try:
        data = load_dataset(spec, split=split, cache_dir=cache_dir)
    except Exception as error:  # offline misses, bad names: one line that names the spec
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BenchError(f"prompt set {spec!r} is neither a shipped set, a file, nor a loadable dataset: "
                         f"{first}") from None  # fmt: skip
    if "prompt" not in data.column_names or len(data) == 0:
        raise BenchError(f"prompt set {spec!r} has no prompts (needs a non-empty 'prompt' column)")
    return data


def load_prompts(spec: str, world: str | None = None) -> list[str]:
    """Resolve --prompts into a non-empty list of prompts (named sets: ``world``'s first)."""
    if "|" in spec:
        prompts = [p.strip() for p in spec.split("|") if p.strip()]
    elif (path := Path(spec).expanduser()).is_file():
        prompts = read_prompt_file(path)
    elif (named := shipped_file(spec, world)) is not None:
        prompts = read_prompt_file(named)
    elif spec.count("/") == 1 and not path.suffix and not spec.startswith((".", "/", "~")):
        prompts = [str(p) for p in named_dataset(spec)["prompt"]]  # a dataset name: through `datasets`
    elif path.suffix in (".txt", ".jsonl", ".json") or "/" in spec:
        raise BenchError(f"prompt file {spec} does not exist")
    elif " " in spec.strip():
        prompts = [spec.strip()]
    else:
        raise BenchError(
            f"unknown prompt set {spec!r}; known: {', '.join(known_sets(world))} "
            "(or a file, or prompts separated by '|')"
        )
    if not prompts:
        raise BenchError(f"--prompts {spec!r} holds no prompts")
    return prompts
