"""The caption grammar of the shapes world: vocabulary, a parser and the inverse (caption text from a structure).

Grammar (one caption = one or two noun phrases, then an optional background)::

    caption    := phrase [ "and" phrase ] [ background ]
    phrase     := count [ colour ] shape [ position ]
    count      := "a" | "an" | "one" | "two" | "three" | "four"
    shape      := circle | square | triangle      (plural after two, three, four)
    colour     := red | orange | yellow | green | blue | purple
    position   := "on the left" | "on the right" | "at the top" | "at the bottom"
    background := "on a plain background" | "on grass" | "in the sky" | "on the moon"

The two phrases of a composition name two different shapes, so every phrase is matched to the objects of its
shape without ambiguity. The longest caption the grammar makes ("an orange triangle on the left and a purple
square on the right on the moon") has 15 words; the shipped prompt splits stay at 13 or fewer, which is 15
tokens with the start and end tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
POSITIONS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
BACKGROUNDS = {
    "plain": "on a plain background",
    "grass": "on grass",
    "sky": "in the sky",
    "moon": "on the moon",
}

_COUNT_OF_WORD = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
_POSITION_OF_TEXT = {text: key for key, text in POSITIONS.items()}
_BACKGROUND_OF_TEXT = {text: key for key, text in BACKGROUNDS.items()}


@dataclass(frozen=True)
class Phrase:
    """One noun phrase: ``count`` objects of ``shape``, with an optional colour and image region."""

    shape: str
    count: int = 1
    colour: str | None = None
    position: str | None = None

    def text(self) -> str:
        """The phrase as the grammar writes it, e.g. ``"an orange circle on the left"``."""
        words = [self.colour] if self.colour else []
        words.append(self.shape + ("s" if self.count > 1 else ""))
        count = COUNT_WORDS[self.count]
        if count == "a" and words[0][0] in "aeiou":
            count = "an"
        text = " ".join([count, *words])
        return f"{text} {POSITIONS[self.position]}" if self.position else text


@dataclass(frozen=True)
class Caption:
    """A parsed caption: one or two phrases and an optional background."""

    phrases: tuple[Phrase, ...]
    background: str | None = None

    def text(self) -> str:
        """The caption as text; ``parse(caption.text()) == caption``."""
        text = " and ".join(phrase.text() for phrase in self.phrases)
        return f"{text} {BACKGROUNDS[self.background]}" if self.background else text


def _phrase_pattern(i: int) -> str:
    counts = "|".join(_COUNT_OF_WORD)
    colours = "|".join(COLOURS)
    shapes = "|".join(SHAPES)
    positions = "|".join(POSITIONS.values())
    return (
        rf"(?P<count{i}>{counts}) (?:(?P<colour{i}>{colours}) )?(?P<shape{i}>(?:{shapes})s?)"
        rf"(?: (?P<position{i}>{positions}))?"
    )


_CAPTION_RE = re.compile(
    rf"{_phrase_pattern(0)}(?: and {_phrase_pattern(1)})?(?: (?P<background>{'|'.join(BACKGROUNDS.values())}))?"
)


def normalise(text: str) -> str:
    """Lower case, single spaces, no trailing full stop: the form the parser reads."""
    return " ".join(text.lower().strip().rstrip(".").split())


def parse(text: str) -> Caption:
    """Parse a caption of the grammar.

    Raises:
        ValueError: the text is not a caption of the grammar, or its two phrases name the same shape.
    """
    match = _CAPTION_RE.fullmatch(normalise(text))
    if match is None:
        raise ValueError(f"not a shapes-world caption: {text!r}")
    phrases = []
    for i in (0, 1):
        if match.group(f"count{i}") is None:
            continue
        position = match.group(f"position{i}")
        phrases.append(
            Phrase(
                shape=match.group(f"shape{i}").rstrip("s"),
                count=_COUNT_OF_WORD[match.group(f"count{i}")],
                colour=match.group(f"colour{i}"),
                position=_POSITION_OF_TEXT[position] if position else None,
            )
        )
    if len(phrases) == 2 and phrases[0].shape == phrases[1].shape:
        raise ValueError(f"a composition must name two different shapes: {text!r}")
    background = match.group("background")
    return Caption(tuple(phrases), _BACKGROUND_OF_TEXT[background] if background else None)


def grammar_words() -> list[str]:
    """Every word the grammar can produce, sorted (the tiny model's tokenizer makes each one token)."""
    words = set(_COUNT_OF_WORD) | set(COLOURS) | set(SHAPES) | {s + "s" for s in SHAPES} | {"and"}
    for text in [*POSITIONS.values(), *BACKGROUNDS.values()]:
        words.update(text.split())
    return sorted(words)


EDITS = ("shape", "colour", "count", "position", "background", "swap")


def edit_caption(caption: Caption, rng) -> Caption:
    """``caption`` with one attribute changed: a hard negative for image-text matching (a near miss that a
    bag-of-words matcher cannot tell apart; NegCLIP, Yuksekgonul et al., ICLR 2023, swaps words the same way).

    One of: a phrase's shape (to one the caption does not name), its colour (changed, added or removed), its count
    (another of 1-4; a position is dropped above three, as the grammar's samplers do), its position (changed, added
    or removed), the background (changed, added or removed), or the colours of a composition's two phrases swapped.
    Edits that cannot apply (a swap of one phrase or of equal colours) are redrawn, so the result always differs.
    ``rng`` is a ``random.Random``.
    """
    while True:
        edit = rng.choice(EDITS)
        i = rng.randrange(len(caption.phrases))
        phrases = list(caption.phrases)
        p = phrases[i]
        if edit == "shape":
            used = {q.shape for q in phrases}
            phrases[i] = Phrase(rng.choice([s for s in SHAPES if s not in used]), p.count, p.colour, p.position)
        elif edit == "colour":
            phrases[i] = Phrase(
                p.shape, p.count, rng.choice([c for c in (None, *COLOURS) if c != p.colour]), p.position
            )
        elif edit == "count":
            count = rng.choice([n for n in COUNT_WORDS if n != p.count])
            phrases[i] = Phrase(p.shape, count, p.colour, p.position if count <= 3 else None)
        elif edit == "position":
            if p.count > 3:
                continue
            position = rng.choice([q for q in (None, *POSITIONS) if q != p.position])
            phrases[i] = Phrase(p.shape, p.count, p.colour, position)
        elif edit == "background":
            background = rng.choice([b for b in (None, *BACKGROUNDS) if b != caption.background])
            return Caption(caption.phrases, background)
        else:
            if len(phrases) < 2 or phrases[0].colour == phrases[1].colour:
                continue
            a, b = phrases
            phrases = [Phrase(a.shape, a.count, b.colour, a.position), Phrase(b.shape, b.count, a.colour, b.position)]
        edited = Caption(tuple(phrases), caption.background)
        if edited != caption:
            return edited
