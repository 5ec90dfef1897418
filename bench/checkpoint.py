"""Resumable checkpoints with a schema version and a checksum.

``checkpoint/state.pt`` holds everything a run needs to continue bit for bit (LoRA weights, optimizer, method
state such as the value network and transition buffer, data-order generator, sample counter, torch RNG);
``checkpoint/meta.json`` holds the schema version, the SHA-256 of state.pt and the round and update it was taken
at. The folder is swapped in atomically, so a crash while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.results import replace_dir

SCHEMA = 1


def save_checkpoint(folder: str | Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    meta = {
        "schema": SCHEMA,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "round": state["round"],
        "update": state["update"],
    }

    def write(tmp: Path) -> None:
        (tmp / "state.pt").write_bytes(payload)
        (tmp / "meta.json").write_text(json.dumps(meta) + "\n")

    replace_dir(folder, write)


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except FileNotFoundError:
        raise BenchError(f"checkpoint {folder} is incomplete: meta.json is missing") from None
    except ValueError:
        raise BenchError(f"checkpoint {folder} is corrupt: meta.json is not valid JSON") from None
    if meta.get("schema") != SCHEMA:
        raise BenchError(
            f"checkpoint {folder} has schema {meta.get('schema')!r}; this version of dpok-bench reads schema {SCHEMA}"
        )
    return meta


def load_checkpoint(folder: str | Path) -> dict:
    """The saved state, after checking the schema and the checksum."""
    folder = Path(folder)
    meta = read_meta(folder)
    try:
        payload = (folder / "state.pt").read_bytes()
    except FileNotFoundError:
        raise BenchError(f"checkpoint {folder} is incomplete: state.pt is missing") from None
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise BenchError(f"checkpoint {folder} is corrupt: state.pt does not match its SHA-256 in meta.json")
    return torch.load(io.BytesIO(payload), weights_only=False)
