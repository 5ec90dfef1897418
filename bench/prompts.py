"""Prompt lists from a named, versioned set, a .txt/.jsonl file, a `datasets` name (``org/name``, from the local
cache when offline), or literal prompts separated by '|'."""

from __future__ import annotations

import json
from pathlib import Path

import bench.evaluations as evaluations
from bench.errors import BenchError

PROMPT_DIR = Path(evaluations.__file__).resolve().parent / "prompts"  # shipped, versioned prompt sets


def known_sets() -> list[str]:
    """Names of the shipped prompt sets (file stems without the version suffix)."""
    names = set()
    for path in [*PROMPT_DIR.glob("*.txt"), *PROMPT_DIR.glob("*.jsonl")]:
        stem = path.stem
        names.add(stem.rsplit("-v", 1)[0] if stem.rsplit("-v", 1)[-1].isdigit() else stem)
    return sorted(names)


def shipped_file(name: str) -> Path | None:
    """The file of shipped set ``name`` (``drawbench-dpok`` is its highest version, ``drawbench-dpok-v1`` that one)."""
    if "/" in name or "\\" in name or not name.strip():
        return None
    folder = PROMPT_DIR
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


def load_prompts(spec: str) -> list[str]:
    """Resolve --prompts into a non-empty list of prompts."""
    if "|" in spec:
        prompts = [p.strip() for p in spec.split("|") if p.strip()]
    elif (path := Path(spec).expanduser()).is_file():
        prompts = read_prompt_file(path)
    elif (named := shipped_file(spec)) is not None:
        prompts = read_prompt_file(named)
    elif spec.count("/") == 1 and not path.suffix and not spec.startswith((".", "/", "~")):
        from bench.evaluations.prompt_sets import load_prompt_dataset  # a dataset name: through `datasets`

        prompts = [str(p) for p in load_prompt_dataset(spec)["prompt"]]
    elif path.suffix in (".txt", ".jsonl", ".json") or "/" in spec:
        raise BenchError(f"prompt file {spec} does not exist")
    elif " " in spec.strip():
        prompts = [spec.strip()]
    else:
        raise BenchError(
            f"unknown prompt set {spec!r}; known: {', '.join(known_sets())} (or a file, or prompts separated by '|')"
        )
    if not prompts:
        raise BenchError(f"--prompts {spec!r} holds no prompts")
    return prompts
