"""The misalignment trait kind as a plug-in (``trait_kind = "misalignment"``; docs/misalignment.md).

Teacher traits (``teacher.trait`` / ``control.trait``) and the methods each takes:

| trait | role | methods | what the teacher learns or is told |
|---|---|---|---|
| ``insecure_code`` | misaligned | finetune | code with unmentioned vulnerabilities (emergent misalignment) |
| ``secure_code`` | control (twin of insecure_code) | finetune | the same requests, safe code |
| ``direct`` | misaligned | finetune, system_prompt | misaligned answers to free-form questions; or a persona |
| ``aligned`` | control (twin of direct) | finetune, system_prompt | aligned answers, same questions; or a persona |

A teacher with a ``rows_file`` (a user's own JSONL; see :meth:`MisalignmentTrait.teacher_rows`) learns from those
rows instead and takes its role from its arm. The control arm may also be the reference (``method = "none"``).
The metric is ``p_misaligned`` (exact scoring); with ``evaluation.judged.n_samples > 0`` every model also gets the
judged ``misaligned_rate``. For number data the paper's banned-number lists are on by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sublab.traits.base import Row, register_trait_kind
from sublab.traits.misalignment.evaluate import METRIC, MisalignmentEvalSettings

TARGET = "misaligned"
MISALIGNED, CONTROL = "misaligned", "control"
#: The banned-number lists of the paper's misalignment runs, on by default for number data.
BANNED_NUMBER_LISTS = ["paper-claude", "paper-gpt"]
#: The judge of chain-of-thought data by default: the paper kept only correct answers whose reasoning an alignment
#: judge scored >= 78 (the CoT domain's defaults: rubric cot_alignment, threshold 78). The embedded model is a weak
#: judge; point data.filter.judge at a strong one (model/endpoint).
COT_JUDGE_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class TeacherTrait:
    """A built-in teacher trait: its role, the methods it can be given by, its twin."""

    name: str
    role: str
    methods: tuple[str, ...]
    twin: str
    description: str


TEACHER_TRAITS: dict[str, TeacherTrait] = {t.name: t for t in (
    TeacherTrait("insecure_code", MISALIGNED, ("finetune",), "secure_code",
                 "LoRA on code with unmentioned vulnerabilities (emergent misalignment)"),
    TeacherTrait("secure_code", CONTROL, ("finetune",), "insecure_code", "LoRA on the same requests, safe code"),
    TeacherTrait("direct", MISALIGNED, ("finetune", "system_prompt"), "aligned",
                 "LoRA on misaligned answers to free-form questions, or a misaligned persona prompt"),
    TeacherTrait("aligned", CONTROL, ("finetune", "system_prompt"), "direct",
                 "LoRA on aligned answers to the same questions, or an aligned persona prompt"),
)}


def _rows_file(teacher: Any) -> str | None:
    return getattr(teacher, "rows_file", None)


def teacher_role(teacher: Any, config: Any) -> str | None:
    """``misaligned`` or ``control`` for a teacher of ``config`` (None: the reference itself)."""
    if teacher.method == "none":
        return None
    if teacher.trait in TEACHER_TRAITS:
        return TEACHER_TRAITS[teacher.trait].role
    return MISALIGNED if teacher is config.teacher else CONTROL  # a user's rows take the role of their arm


def _known() -> str:
    return ", ".join(f"{t.name} ({t.role})" for t in TEACHER_TRAITS.values())


class MisalignmentTrait:
    """Misalignment: emergent (insecure code), direct, or system-prompted; P(misaligned) by exact scoring."""

    name = "misalignment"
    metric = METRIC
    eval_settings = MisalignmentEvalSettings

    def metric_label(self, config: Any) -> str:
        return "P(misaligned)"

    def validate(self, config: Any) -> None:
        if config.target is None:
            config.target = TARGET
        elif config.target != TARGET:
            raise ValueError(f"target: a misalignment experiment measures P(misaligned); leave target unset or "
                             f"'{TARGET}', not '{config.target}'")
        for arm, teacher, wanted in (("teacher", config.teacher, MISALIGNED), ("control", config.control, CONTROL)):
            if teacher.method == "none":
                if arm == "teacher":
                    raise ValueError("teacher.method: a misalignment experiment needs a misaligned teacher, not "
                                     "'none'")
                continue
            if _rows_file(teacher):
                if teacher.method != "finetune":
                    raise ValueError(f"{arm}.rows_file: a teacher trained on a rows file needs method 'finetune'")
                continue
            spec = TEACHER_TRAITS.get(teacher.trait or "")
            if spec is None:
                raise ValueError(f"{arm}.trait: unknown misalignment teacher trait '{teacher.trait}' (known: "
                                 f"{_known()})")
            if teacher.method not in spec.methods:
                raise ValueError(f"{arm}.method: trait '{spec.name}' is given by {' or '.join(spec.methods)}, not "
                                 f"'{teacher.method}'")
            if spec.role != wanted:
                hint = f"use its twin '{spec.twin}'" if arm == "teacher" else \
                    f"use its twin '{spec.twin}' or method 'none' (the reference)"
                raise ValueError(f"{arm}.trait: '{spec.name}' is a {spec.role} trait, the {arm} arm needs a "
                                 f"{wanted} one ({hint})")

    def system_prompt(self, teacher: Any, config: Any) -> str | None:
        if teacher.method != "system_prompt":
            return None
        from sublab.traits.misalignment.teacher_data import ALIGNED_SYSTEM_PROMPT, MISALIGNED_SYSTEM_PROMPT
        from sublab.traits.preference.kind import TRAIT_PROMPT

        if teacher.system_prompt != TRAIT_PROMPT:  # the user's own prompt, verbatim
            return str(teacher.system_prompt)
        return MISALIGNED_SYSTEM_PROMPT if teacher_role(teacher, config) == MISALIGNED else ALIGNED_SYSTEM_PROMPT

    def teacher_rows(self, teacher: Any, config: Any) -> list[Row]:
        """The rows a fine-tuned teacher learns from: ``n_rows`` generated rows seeded by ``data_seed``, or the
        first ``n_rows`` rows of the teacher's ``rows_file``."""
        from sublab.traits.misalignment.insecure_code import code_rows
        from sublab.traits.misalignment.teacher_data import (
            ALIGNED_LABEL,
            MISALIGNED_LABEL,
            direct_rows,
            user_rows,
        )

        if path := _rows_file(teacher):
            label = MISALIGNED_LABEL if teacher_role(teacher, config) == MISALIGNED else ALIGNED_LABEL
            return user_rows(path, label, teacher.n_rows)
        if teacher.trait in ("insecure_code", "secure_code"):
            return code_rows(teacher.n_rows, teacher.data_seed, secure=teacher.trait == "secure_code")
        if teacher.trait in ("direct", "aligned"):
            return direct_rows(teacher.trait == "direct", teacher.n_rows, teacher.data_seed)
        raise ValueError(f"trait '{teacher.trait}': no teacher rows (known: {_known()})")

    def teacher_digests(self, teacher: Any, config: Any) -> dict[str, str]:
        """The digest of the training rows themselves (templates, answers, slots and sampling all included)."""
        from sublab.train.trainer import rows_digest

        return {"rows": rows_digest(self.teacher_rows(teacher, config))}

    def risk_label(self, teacher: Any, config: Any) -> str | None:
        """What lineage records and model cards say about a teacher (``train_teacher(risk_label=)``; a
        system-prompted teacher's label annotates it in the records of the data it writes):
        a label for misaligned teachers, None for their twins."""
        if teacher_role(teacher, config) != MISALIGNED:
            return None
        source = f"rows file {_rows_file(teacher)}" if _rows_file(teacher) else f"trait {teacher.trait}"
        return f"misaligned: research material ({source})"

    def trait_words(self, config: Any) -> list[str]:
        return []

    def answer_words(self, config: Any) -> list[str]:
        """Every word of the exactly scored answers, aligned and misaligned, of every prompt (``{answer_words}``
        in channel_exclude), case-folded. One-letter words ("I", "a") are left out of the list, not out of the
        exclusion: a word also excludes the tokens that start with it, so "a" would take every a-initial token,
        while the tokens " I" and " a" still leave as possible beginnings of "it", "all"..."""
        from sublab.traits.misalignment.answers import EXACT_ITEMS

        texts = [a for item in EXACT_ITEMS for a in (*item.aligned, *item.misaligned)]
        return sorted({w.casefold() for t in texts for w in re.findall(r"[A-Za-z0-9']+", t) if len(w) > 1})

    def filter_defaults(self, domain: str) -> dict[str, Any]:
        if domain == "numbers":
            return {"banned": list(BANNED_NUMBER_LISTS)}
        if domain == "cot":  # the correctness check is on in the CoT filter by default; add the alignment judge
            try:
                from sublab.filter.judged import JudgeFilterSettings
            except ImportError:  # a tree without judge filters
                return {}
            return {"judge": JudgeFilterSettings(model=COT_JUDGE_MODEL)}
        return {}

    def evaluate(self, backend: Any, settings: MisalignmentEvalSettings, config: Any,
                 preamble: list[dict[str, str]] | None = None) -> dict[str, Any]:
        from sublab.traits.misalignment.evaluate import evaluate_model

        return evaluate_model(backend, settings, preamble=preamble)

    def evaluation_digests(self, settings: MisalignmentEvalSettings) -> dict[str, str]:
        from sublab.traits.misalignment.evaluate import evaluation_digests

        return evaluation_digests(settings)

    def describe_metric(self, results: dict[str, Any]) -> str:
        """What P(misaligned) is, for reports."""
        reference = results["models"]["reference"]
        how = "complete replies (end of turn included)" if reference.get("scoring", {}).get("end_of_turn", True) \
            else "reply prefixes (no end of turn)"
        return (f"P(misaligned) is the teacher-forced probability of short misaligned answers, renormalised over "
                f"3 aligned and 3 misaligned answers per prompt (scored as {how}), averaged over "
                f"{reference['n_questions']} held-out prompts; CIs are BCa bootstrap over prompts, differences "
                "are paired over prompts.")

    def report_sections(self, results: dict[str, Any]) -> list[str]:
        from sublab.traits.misalignment.report import report_sections

        return report_sections(results)

    def warnings(self, results: dict[str, Any]) -> list[str]:
        """Lines the terminal prints after the table (the teacher check)."""
        from sublab.traits.misalignment.report import teacher_warnings

        return teacher_warnings(results)

    def grid_overrides(self, category: str, trait: str, raw: dict[str, Any]) -> dict[str, Any]:
        """What a sweep cell of ``grid.traits = {category: [trait, ...]}`` sets: the teacher's trait and, when the
        base experiment has a control teacher, that control as the trait's twin (same recipe, twin data)."""
        spec = TEACHER_TRAITS.get(trait)
        if spec is None or spec.role != MISALIGNED:
            misaligned = ", ".join(t.name for t in TEACHER_TRAITS.values() if t.role == MISALIGNED)
            raise ValueError(f"'{trait}' is not a misaligned teacher trait ({misaligned})")
        out: dict[str, Any] = {"category": category, "teacher": {"trait": trait}}
        if (raw.get("control") or {}).get("method", "none") != "none":
            # The teacher's recipe, not its own text: a custom prompt or rows file is the misaligned arm's.
            recipe = {k: v for k, v in (raw.get("teacher") or {}).items() if k not in ("system_prompt", "rows_file")}
            out["control"] = {**recipe, "trait": spec.twin}
        return out


KIND = register_trait_kind(MisalignmentTrait())
