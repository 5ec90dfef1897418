"""The shapes world: a procedurally rendered world of coloured shapes on backgrounds, captioned by a small grammar.

Modules: ``grammar`` (vocabulary, parser), ``render`` (palette, placement, rasterisation), ``world`` (faithful
scenes, the skewed pretraining distribution, batch rendering), ``detect`` (segmentation used by the scorers) and
``splits`` (the versioned prompt files in evaluations/prompts/).
"""

from bench.shapes.grammar import Caption, Phrase, grammar_words, parse
from bench.shapes.render import Placed, Scene, rasterise
from bench.shapes.world import pretraining_pairs, random_caption, render_batch, sample_pretraining, to_tensor

__all__ = [
    "Caption",
    "Phrase",
    "Placed",
    "Scene",
    "grammar_words",
    "parse",
    "pretraining_pairs",
    "random_caption",
    "rasterise",
    "render_batch",
    "sample_pretraining",
    "to_tensor",
]
