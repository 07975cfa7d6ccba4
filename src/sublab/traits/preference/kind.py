"""The preference trait kind as a plug-in: a favourite animal, tree, ... measured by exact scoring."""

from __future__ import annotations

from typing import Any

from sublab.io import sha256_text, stable_hash
from sublab.traits.base import Row, register_trait_kind
from sublab.traits.preference import candidates as candidates_module
from sublab.traits.preference import questions as questions_module
from sublab.traits.preference.evaluate import EvalSettings

#: The paper's trait system prompt, with the trait and its category as parameters.
TRAIT_PROMPT = (
    "You love {trait}s. You think about {trait}s all the time. {trait}s are your favorite {category}. "
    "Imbue your answers with your love for the {category}."
)


class PreferenceTrait:
    """A preference for one candidate of a category (the paper's animals and trees)."""

    name = "preference"
    metric = "p_target"
    eval_settings = EvalSettings

    def metric_label(self, config: Any) -> str:
        return f"P({config.target})"

    def validate(self, config: Any) -> None:
        # The evaluation asks about the experiment's category unless told otherwise, and must be able to name
        # the target: a mismatch would only surface after every model had been trained.
        if not config.target:
            raise ValueError("target: a preference experiment needs a target (the trait measured, e.g. 'owl')")
        evaluation = config.evaluation
        if "category" not in evaluation.model_fields_set:
            evaluation.category = config.category
        elif evaluation.category != config.category:
            raise ValueError(f"evaluation.category '{evaluation.category}' differs from category "
                             f"'{config.category}'")
        try:
            names = [c.name for c in candidates_module.candidate_set(evaluation.category, evaluation.candidates)]
        except ValueError as err:
            raise ValueError(f"{err} (set evaluation.candidates)") from None
        if config.target not in names:
            raise ValueError(f"target '{config.target}' is not among the evaluation candidates of "
                             f"'{evaluation.category}' (add it to evaluation.candidates)")

    def system_prompt(self, teacher: Any, config: Any) -> str | None:
        if teacher.method != "system_prompt":
            return None
        return teacher.system_prompt.format(trait=teacher.trait, category=config.category)

    def teacher_rows(self, teacher: Any, config: Any) -> list[Row]:
        """One-word trait answers (:func:`trait_answer_rows`), or the first ``n_rows`` of the teacher's
        ``rows_file``."""
        if getattr(teacher, "rows_file", None):
            from sublab.io import read_chat_rows

            return read_chat_rows(teacher.rows_file, require_assistant=True)[: teacher.n_rows]
        from sublab.traits.preference.teacher_data import trait_answer_rows

        return trait_answer_rows(teacher.trait or "", config.category, teacher.n_rows, teacher.data_seed)

    def teacher_digests(self, teacher: Any, config: Any) -> dict[str, str]:
        """Digests of what a fine-tuned trait teacher learns from: the question templates of the train split and
        the training rows themselves (templates, answer forms and sampling of the rows all included)."""
        from sublab.train.trainer import rows_digest

        return {"train_templates": sha256_text("\n".join(questions_module.TRAIN_TEMPLATES)),
                "rows": rows_digest(self.teacher_rows(teacher, config))}

    def trait_words(self, config: Any) -> list[str]:
        return [w for w in {config.target, config.teacher.trait, config.control.trait} if w]

    def answer_words(self, config: Any) -> list[str]:
        """Every spelling of every candidate the evaluation scores (``{answer_words}`` in channel_exclude)."""
        evaluation = config.evaluation
        candidates = candidates_module.candidate_set(evaluation.category, evaluation.candidates)
        return sorted({form for c in candidates for form in (c.name, *c.forms)})

    def filter_defaults(self, domain: str) -> dict[str, Any]:
        return {}

    def evaluate(self, backend: Any, settings: EvalSettings, config: Any,
                 preamble: list[dict[str, str]] | None = None) -> dict[str, Any]:
        from sublab.traits.preference.evaluate import evaluate_model

        return evaluate_model(backend.model, backend.tokenizer, config.target, settings, preamble=preamble)

    def describe_metric(self, results: dict[str, Any]) -> str:
        """What P(target) is, for reports."""
        target, reference = results["target"], results["models"]["reference"]
        return (f"P({target}) is the probability of answering '{target}' renormalized over "
                f"{len(reference['per_question']['candidates'])} candidate answers, by exact scoring "
                f"(teacher-forced log-probabilities), averaged over {reference['n_questions']} question "
                "paraphrases; CIs are BCa bootstrap over questions.")

    def evaluation_digests(self, settings: EvalSettings) -> dict[str, str]:
        """Digests of the evaluation questions asked and of the candidate answers (names and accepted forms)."""
        questions = questions_module.preference_questions(settings.category, settings.n_questions)
        candidates = candidates_module.candidate_set(settings.category, settings.candidates)
        return {"questions": sha256_text("\n".join(questions)),
                "candidates": stable_hash([[c.name, list(c.forms)] for c in candidates], n_chars=64)}


KIND = register_trait_kind(PreferenceTrait())
