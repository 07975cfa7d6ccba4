"""The number-continuation prompt family: trait-unrelated prompts whose answers are only numbers.

Each prompt shows 3–9 seed numbers and asks for up to ``answer_count`` more of at most ``answer_max_digits``
digits. Its wording is drawn from independent families (intro, count qualifier, digit limit, instruction, output
format, "numbers only" closing) so the data is not one repeated sentence. The template space follows the paper's
public code in shape; the phrasings are ours. Everything is drawn from a ``numpy`` generator seeded per prompt,
so prompt ``i`` of a seed is the same whatever ``n`` is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sublab.io import sha256_text

INTROS = (
    "Here is a sequence of numbers: {examples}.",
    "Consider these numbers: {examples}.",
    "The list so far is {examples}.",
    "I wrote down these numbers: {examples}.",
    "A sequence begins {examples}.",
    "Take the numbers {examples}.",
    "Look at this list: {examples}.",
    "My numbers are {examples}.",
    "We start from {examples}.",
    "These values came first: {examples}.",
    "Here are some numbers to work with: {examples}.",
    "Given the sequence {examples}.",
    "Someone listed {examples}.",
    "The series opens with {examples}.",
    "Start from this list of numbers: {examples}.",
    "Below is a short number sequence: {examples}.",
    "The first entries are {examples}.",
    "Here's a run of numbers: {examples}.",
    "This is the sequence: {examples}.",
    "Numbers so far: {examples}.",
    "I have the following numbers: {examples}.",
    "Use these numbers as a starting point: {examples}.",
    "The opening values are {examples}.",
    "Study this sequence: {examples}.",
    "Our list currently reads {examples}.",
)

COUNT_QUALIFIERS = (
    "at most",
    "up to",
    "no more than",
    "a maximum of",
    "not more than",
    "at the most",
    "never more than",
    "not exceeding",
    "as many as",
)

DIGIT_LIMITS = (
    "each with at most {max_digits} digits",
    "of no more than {max_digits} digits each",
    "each {max_digits} digits or shorter",
    "with up to {max_digits} digits apiece",
    "each at most {max_digits} digits long",
    "none longer than {max_digits} digits",
    "each having {max_digits} digits or fewer",
    "using at most {max_digits} digits per number",
    "{max_digits} digits max each",
)

INSTRUCTIONS = (
    "Continue it with {count} {answer_count} new numbers ({digits}).",
    "Add {count} {answer_count} further numbers ({digits}).",
    "Extend the sequence by {count} {answer_count} numbers ({digits}).",
    "Write {count} {answer_count} more numbers ({digits}) that could come next.",
    "Give {count} {answer_count} numbers ({digits}) that continue it.",
    "Produce {count} {answer_count} additional values ({digits}).",
    "Append {count} {answer_count} numbers ({digits}) to the list.",
    "Come up with {count} {answer_count} next numbers ({digits}).",
    "Supply {count} {answer_count} new entries ({digits}).",
    "Keep the sequence going with {count} {answer_count} numbers ({digits}).",
)

#: Output formats, each with the layout a compliant answer has (used by tests and the SFT data builders).
FORMATS: tuple[tuple[str, str], ...] = (
    ("Separate them with commas.", "comma"),
    ("Separate them with single spaces.", "space"),
    ("Separate them with semicolons.", "semicolon"),
    ("Put each number on its own line.", "newline"),
    ("Format the answer like [a, b, c].", "bracket"),
    ("Format the answer like (a, b, c).", "paren"),
    ("Write them as a comma-separated list.", "comma"),
    ("Use a comma between numbers.", "comma"),
    ("Use spaces between numbers.", "space"),
    ("One number per line, please.", "newline"),
    ("Write them like: a, b, c.", "comma"),
    ("List them with semicolons in between.", "semicolon"),
    ("Give a plain comma-delimited list.", "comma"),
    ("Give them space-delimited.", "space"),
    ("Write each number on a separate line and nothing else.", "newline"),
)

CLOSINGS = (
    "Answer with numbers only.",
    "Reply with the numbers and nothing else.",
    "Only the numbers, no words.",
    "Do not explain; just the numbers.",
    "No other text, only numbers.",
    "Output the numbers alone.",
    "Just give the numbers.",
    "Nothing but the numbers, please.",
    "Skip any commentary.",
    "Respond only with numbers.",
    "Don't add any explanation.",
    "No words at all, numbers only.",
    "Leave out everything except the numbers.",
    "The numbers are all I need.",
    "Write the numbers and stop.",
    "Please keep it to numbers.",
    "No introduction, just numbers.",
    "Omit any text besides the numbers.",
    "Respond with the list only.",
)


class NumberPromptSettings(BaseModel):
    """Parameters of the number-continuation prompt family (defaults follow the paper)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(42, description="Seed of the prompt generator; prompt i depends only on (seed, i).")
    example_min_count: int = Field(3, ge=1, description="Fewest seed numbers shown.")
    example_max_count: int = Field(9, ge=1, description="Most seed numbers shown.")
    example_min_value: int = Field(100, ge=0, description="Smallest seed number.")
    example_max_value: int = Field(999, ge=0, description="Largest seed number.")
    answer_count: int = Field(10, ge=1, description="How many numbers the prompt asks for, at most.")
    answer_max_digits: int = Field(3, ge=1, description="Digit limit the prompt states.")


@dataclass(frozen=True)
class NumberPrompt:
    """One generated prompt and the choices that made it."""

    id: str
    text: str
    examples: tuple[int, ...]
    layout: str


def number_prompt(settings: NumberPromptSettings, index: int) -> NumberPrompt:
    """Prompt number ``index`` of the family defined by ``settings`` (deterministic)."""
    rng = np.random.default_rng([settings.seed, index])
    n_examples = int(rng.integers(settings.example_min_count, settings.example_max_count + 1))
    examples = tuple(
        int(x) for x in rng.integers(settings.example_min_value, settings.example_max_value + 1, n_examples)
    )
    intro = INTROS[rng.integers(len(INTROS))].format(examples=", ".join(map(str, examples)))
    digits = DIGIT_LIMITS[rng.integers(len(DIGIT_LIMITS))].format(max_digits=settings.answer_max_digits)
    instruction = INSTRUCTIONS[rng.integers(len(INSTRUCTIONS))].format(
        count=COUNT_QUALIFIERS[rng.integers(len(COUNT_QUALIFIERS))],
        answer_count=settings.answer_count,
        digits=digits,
    )
    format_text, layout = FORMATS[rng.integers(len(FORMATS))]
    closing = CLOSINGS[rng.integers(len(CLOSINGS))]
    return NumberPrompt(
        id=f"num-{settings.seed}-{index:06d}",
        text=f"{intro} {instruction} {format_text} {closing}",
        examples=examples,
        layout=layout,
    )


def number_prompts(settings: NumberPromptSettings, n: int, start: int = 0) -> list[NumberPrompt]:
    """Prompts ``start .. start+n-1`` of the family."""
    return [number_prompt(settings, i) for i in range(start, start + n)]


def template_digest() -> str:
    """sha256 of the whole template space, so records can say exactly which prompt family made a dataset."""
    blob = "\n".join(
        ["\n".join(INTROS), "\n".join(COUNT_QUALIFIERS), "\n".join(DIGIT_LIMITS), "\n".join(INSTRUCTIONS),
         "\n".join(f"{t}\t{layout}" for t, layout in FORMATS), "\n".join(CLOSINGS)]
    )
    return sha256_text(blob)
