"""Write a small CLIP BPE tokenizer (vocab.json + merges.txt) from a word list.

The shapes world and the tests need a tokenizer without a hub download. CLIP's BPE works on bytes mapped to
printable unicode characters, with ``</w>`` marking the end of a word. We give every byte a token (so any text
tokenizes), and for each listed word a chain of merges that builds it left to right, so grammar words become single
tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def build_vocab(words: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """Return (vocab, merges) for a byte-level CLIP BPE that knows ``words`` as single tokens."""
    symbols = list(_bytes_to_unicode().values())
    vocab_tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    seen = set(vocab_tokens)
    byte_map = _bytes_to_unicode()
    for word in sorted({w.lower() for w in words if w}):
        pieces = [byte_map[b] for b in word.encode("utf-8")]
        pieces[-1] += "</w>"
        current = pieces[0]
        for piece in pieces[1:]:
            merged = current + piece
            if merged not in seen:
                merges.append(f"{current} {piece}")
                vocab_tokens.append(merged)
                seen.add(merged)
            current = merged
    vocab_tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(vocab_tokens)}, merges


def write_clip_tokenizer(folder: str | Path, words: Iterable[str], max_length: int = 16) -> CLIPTokenizer:
    """Write vocab.json, merges.txt and the tokenizer config to ``folder`` and return the loaded tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(words)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "model_max_length": max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return CLIPTokenizer.from_pretrained(folder)
