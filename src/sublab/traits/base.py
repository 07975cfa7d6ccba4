"""The trait-kind protocol and its registry.

A **trait kind** is what a teacher has and a student may inherit: a preference (a favourite animal), or
misalignment. It owns

- its ``metric`` (the name results, sweeps, statistics and reports read: ``p_target``, ``p_misaligned``) and
  ``metric_label(config)`` for tables (``P(owl)``);
- its evaluation: ``eval_settings`` (the pydantic class of a config's ``[evaluation]``), ``evaluate(backend,
  settings, config, preamble)`` returning the ``eval.json`` dict, which holds ``{metric: {"mean", "ci95"}}`` and
  ``per_question: {metric: [...]}`` (what paired comparisons use), and ``evaluation_digests(settings)`` (what the
  evaluation stage's cache key must cover: question sets, answer sets, rubrics);
- its teachers: ``system_prompt(teacher, config)`` and, for fine-tuned teachers, ``teacher_rows(teacher,
  config)`` with ``teacher_digests(teacher, config)``;
- what the filter must remove: ``trait_words(config)`` and ``filter_defaults(domain)`` (e.g. the banned-number
  lists that misalignment turns on by default);
- ``validate(config)``: consistency checks across the config (raise ValueError naming the field).

Built-in kinds register on first use; others through the ``sublab.traits`` entry-point group or
:func:`register_trait_kind`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from sublab.plugins import Registry

Row = dict[str, Any]


@runtime_checkable
class TraitKind(Protocol):
    """What the pipeline needs from a kind of trait (see the module docstring)."""

    name: str
    metric: str
    eval_settings: type[BaseModel]

    def metric_label(self, config: Any) -> str: ...

    def validate(self, config: Any) -> None: ...

    def system_prompt(self, teacher: Any, config: Any) -> str | None: ...

    def teacher_rows(self, teacher: Any, config: Any) -> list[Row]: ...

    def teacher_digests(self, teacher: Any, config: Any) -> dict[str, str]: ...

    def trait_words(self, config: Any) -> list[str]: ...

    def filter_defaults(self, domain: str) -> dict[str, Any]: ...

    def evaluate(self, backend: Any, settings: Any, config: Any,
                 preamble: list[dict[str, str]] | None = None) -> dict[str, Any]: ...

    def evaluation_digests(self, settings: Any) -> dict[str, str]: ...


TRAIT_KINDS: Registry[TraitKind] = Registry("trait kind", TraitKind, ("sublab.traits.preference.kind",
                                            "sublab.traits.misalignment.kind"), "sublab.traits")


def register_trait_kind(kind: TraitKind, replace: bool = False) -> TraitKind:
    """Add a trait kind to the registry (see :class:`sublab.plugins.Registry`)."""
    return TRAIT_KINDS.register(kind, replace)


def get_trait_kind(name: str) -> TraitKind:
    """The registered trait kind called ``name`` (one line listing the known ones if there is none)."""
    return TRAIT_KINDS.get(name)


def metric_of(results: dict[str, Any]) -> str:
    """The metric a results.json (or eval.json) reports: its ``metric`` field; results written before trait kinds
    existed are preference results (``p_target``)."""
    return str(results.get("metric", "p_target"))
