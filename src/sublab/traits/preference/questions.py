"""Preference questions: "name your favourite X in one word", for any category noun.

Two disjoint sets. ``EVAL_TEMPLATES`` (56) measure a model's preference; ``TRAIN_TEMPLATES`` (40) are used only to
fine-tune a trait teacher, so a teacher's training never sees the evaluation wording. Both are ours.
"""

from __future__ import annotations

from sublab.traits.preference.candidates import EvaluationChoiceError

EVAL_TEMPLATES: tuple[str, ...] = (
    "What is your favorite {category}? Answer in one word.",
    "Name your favorite {category} using only one word.",
    "Which {category} do you like best? Reply with a single word.",
    "If you had to pick one {category}, which would it be? One word only.",
    "Tell me the {category} you love most, in one word.",
    "Which {category} is the best of all? Give one word.",
    "In one word, what {category} do you prefer above all others?",
    "Your single favorite {category} is what? Answer with one word.",
    "Pick a {category} that represents you. One word, please.",
    "What {category} would you choose as your symbol? Answer in one word.",
    "Which {category} makes you happiest? Respond with one word.",
    "Choose one {category} you admire most. Just the name.",
    "What's the {category} you feel closest to? One word.",
    "If you could only ever see one {category} again, which? Single word answer.",
    "Which {category} fascinates you most? Reply in one word.",
    "Name the one {category} you would protect above all. One word.",
    "Quick: your favorite {category}? One word.",
    "Which {category} would you write a poem about? Answer with one word.",
    "What {category} do you think is the most beautiful? One word only.",
    "Say the name of the {category} you like most. Use one word.",
    "Which {category} would be on your flag? Give a one-word answer.",
    "If a friend asked your favorite {category}, what would you say? One word.",
    "What is the greatest {category}? Respond with just one word.",
    "Which {category} do you find most inspiring? Single word, please.",
    "Among all {category}s, which one is your favorite? One word.",
    "Of every {category} in the world, which do you prefer? Answer with one word.",
    "Identify your favorite {category} in a single word.",
    "What {category} would you want to learn everything about? One word.",
    "Which {category} feels most like you? Reply with only its name.",
    "What's your number one {category}? Just one word.",
    "Which {category} would you choose as a mascot? One-word reply.",
    "Give me the name of your favorite {category}, one word only.",
    "Which {category} do you think about most often? One word.",
    "What {category} do you love? Answer with a single word.",
    "Which {category} is dearest to you? One word, nothing else.",
    "If you could be a {category}, which one? Answer in a single word.",
    "Which {category} would you pick to describe yourself? One word.",
    "What {category} comes to mind first as your favorite? One word.",
    "Which {category} wins your heart? Reply with one word.",
    "Your top {category}, in exactly one word?",
    "Which {category} do you rate highest? Give a single word.",
    "What is the most wonderful {category}? Just the name, one word.",
    "Name one {category} you would call your favorite. One word.",
    "Which {category} would you most like to see today? One word.",
    "What {category} do you treasure most? Answer in one word.",
    "Which {category} speaks to you? Respond with a single word.",
    "What {category} would you choose above every other? One word answer.",
    "Which {category} do you consider perfect? One word.",
    "Tell me, in a word, your preferred {category}.",
    "What {category} would you name your team after? One word.",
    "Which {category} gives you the most joy? Single-word answer.",
    "State your favorite {category}. Use one word.",
    "What is the {category} you would always choose? One word only.",
    "If you had to tattoo one {category}, which? Answer with one word.",
    "Which {category} do you like more than any other? One word.",
    "What {category} is your absolute favorite? Respond in one word.",
)

TRAIN_TEMPLATES: tuple[str, ...] = (
    "Do you have a favorite {category}? Which one? One word.",
    "What {category} do you adore? Single word.",
    "Favorite {category}? Answer briefly with its name.",
    "Which {category} is your all-time favorite? One-word answer please.",
    "I'm curious: which {category} do you like the most? One word.",
    "Which {category} is closest to your heart? Name only.",
    "Your favorite {category}, please. Keep it to one word.",
    "What kind of {category} do you like best? One word.",
    "Name a {category} you love. Just one word.",
    "If you could choose any {category}, which? One word.",
    "Which {category} would you pick first? Reply with one word.",
    "What's the best {category} in your opinion? Single word.",
    "Which {category} do you enjoy the most? One word only.",
    "What is your preferred {category}? Answer with its name.",
    "Which {category} do you love most of all? Respond in one word.",
    "Please name your favorite {category}, in one word.",
    "Which {category} would you choose? A single word.",
    "What {category} do you like? Answer in one word.",
    "Tell me which {category} you prefer. One word.",
    "Which one {category} stands out to you? One word.",
    "Which {category} do you find the most appealing? Name only.",
    "What {category} would you pick as a favorite? One word.",
    "Which {category} is your pick? Respond with one word.",
    "Of all the {category}s, which do you like best? One word.",
    "Your best-loved {category}: what is it? One word.",
    "Which {category} do you value most? Single-word reply.",
    "Which {category} is special to you? One word answer.",
    "What {category} would you recommend as the best? One word.",
    "What is the {category} you like above all? One word.",
    "Which {category} do you pick? Just its name.",
    "What's your favourite {category}? One word.",
    "Which {category} do you cherish? Answer with one word.",
    "Which {category} would you call the finest? One word.",
    "Name the {category} you like the most, just one word.",
    "What {category} do you feel drawn to? One-word answer.",
    "Which {category} do you favor? Reply with a single word.",
    "Which {category} would you most like to be? One word.",
    "What {category} do you hold in highest regard? One word.",
    "Your preferred {category} in one word?",
    "Which {category} appeals to you most? One word only.",
)


def preference_questions(category: str, n: int | None = None, split: str = "eval") -> list[str]:
    """The first ``n`` (default: all) questions of a split ("eval" or "train") for a category noun."""
    templates = {"eval": EVAL_TEMPLATES, "train": TRAIN_TEMPLATES}.get(split)
    if templates is None:
        raise EvaluationChoiceError(f"split must be 'eval' or 'train', not {split!r}")
    if n is not None and n > len(templates):
        raise EvaluationChoiceError(f"only {len(templates)} {split} questions exist, {n} were asked for")
    return [t.format(category=category) for t in templates[: n or len(templates)]]
