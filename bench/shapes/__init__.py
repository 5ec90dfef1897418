"""The shapes world: a procedurally rendered world of coloured shapes on backgrounds, captioned by a small grammar.

Everything the world owns lives here. Data: ``grammar`` (vocabulary, parser), ``render`` (palette, placement,
rasterisation), ``world`` (faithful scenes, the skewed pretraining distribution, batch rendering), ``splits`` (the
versioned prompt files in prompts/). Scorers: ``oracle`` (gold), ``proxy`` (the learned reward), ``quality``,
``bias``, over ``detect`` (segmentation). Models: ``pretrain`` (model/), ``reward_train`` (reward/), ``card`` (the
model card), ``probe``. The plugin: ``plugin`` (the World: model, scorers, prompt sets, settings/) and
``commands`` (``bench shapes ...``).
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
