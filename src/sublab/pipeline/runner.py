"""Run an experiment config end to end: teachers → data → filter → students → evaluation → report.

Every stage goes through the stage cache (:mod:`sublab.pipeline.stages`). What a stage computes comes from the
config's plug-ins: the data domain (prompts, generation constraint, checks, transforms), the trait kind (teacher
data, trait words, evaluation, metric) and the backend of each model (in-process or served).

Keys also cover what the code builds in, not only the config: the prompt templates (prompts), the trait
teacher's training rows and question templates (teacher), the filter version and resolved banned numbers
(filter), the evaluation questions and candidate answers with their accepted forms (evaluation). A key names
the domain or the trait kind only when it is not the default (numbers, preference), so stages cached before
plug-ins existed are reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from sublab.domains.base import get_domain
from sublab.errors import SublabError
from sublab.generate.run import model_identity, sample_rows
from sublab.io import atomic_write_text, read_json, read_jsonl, stable_hash, write_json, write_jsonl
from sublab.keys import key_dump
from sublab.lineage.keys import signing_key
from sublab.models.spec import ModelSpec
from sublab.pipeline.config import ExperimentConfig, TeacherConfig, dump_toml
from sublab.pipeline.provenance import record_stage
from sublab.pipeline.results import assemble_results
from sublab.pipeline.stages import Stage, StageCache
from sublab.train.settings import ANSWER_WORDS_PLACEHOLDER, TRAIT_WORDS_PLACEHOLDER, TrainSettings
from sublab.train.teacher import train_teacher
from sublab.train.trainer import train_model, trained_spec
from sublab.traits.base import get_trait_kind

#: A teacher's mix rows (teacher.mix_rows) come from the prompt family with its seed moved by this much.
MIX_SEED_OFFSET = 7919


@dataclass
class ModelHandle:
    """A model the experiment evaluates: its spec, the key of the stage that made it, and a description."""

    spec: ModelSpec
    key: str
    description: str
    path: Path | None = None
    #: What lineage says about this model's trait (a misaligned teacher: research material); recorded as an
    #: annotation wherever the model is a dependency, so a system-prompted teacher, which has no record of its
    #: own, is still named by ``sublab lineage risk``.
    trait_label: str | None = None


class ExperimentRun:
    """The stage builders of one run: the config, its folder, its stage cache and signing key."""

    def __init__(self, config: ExperimentConfig, out_dir: Path, console: Console | None = None,
                 progress: bool = True, stage_source: Callable[[Path], None] | None = None,
                 sign_key: Any = None, dry_run: bool = False) -> None:
        self.config = config
        self.out_dir = out_dir
        self.console = console or Console()
        self.progress = progress
        self.cache = StageCache(out_dir, self.console, stage_source=stage_source, dry_run=dry_run)
        #: Ed25519 private key (PEM path or loaded key) that signs the lineage record of every stage built here.
        self.sign_key = sign_key
        self.domain = get_domain(config.data.domain)
        self.kind = get_trait_kind(config.trait_kind)
        #: Filter reports of the datasets built, by arm.
        self.filter_reports: dict[str, dict[str, Any]] = {}

    @property
    def stages(self) -> list[Stage]:
        return self.cache.stages

    def stage(self, name: str, material: dict[str, Any], build: Callable[[Path], dict[str, Any] | None]) -> Stage:
        return self.cache.stage(name, material, build)

    def _plugin_material(self) -> dict[str, Any]:
        """The trait kind and domain, for keys, only when they are not the defaults (keeps old keys)."""
        out: dict[str, Any] = {}
        if self.config.trait_kind != "preference":
            out["trait_kind"] = self.config.trait_kind
        return out

    def _domain_material(self) -> dict[str, Any]:
        return {"domain": self.config.data.domain} if self.config.data.domain != "numbers" else {}

    # --- teachers ---------------------------------------------------------------------------------------------

    def reference(self) -> ModelHandle:
        cfg = self.config
        return ModelHandle(ModelSpec(base=cfg.reference), stable_hash({"reference": cfg.reference}),
                           "reference model")

    def teacher(self, role: str, teacher: TeacherConfig) -> ModelHandle:
        """The teacher of one arm as a loadable spec (training a trait adapter if the method is finetune)."""
        cfg = self.config
        if teacher.method == "none":
            return ModelHandle(ModelSpec(base=cfg.reference), stable_hash({"reference": cfg.reference}),
                               "reference model (no trait)")
        risk = getattr(self.kind, "risk_label", None)
        label = risk(teacher, cfg) if risk else None
        if teacher.method == "system_prompt":
            prompt = cfg.system_prompt(teacher)
            if teacher.endpoint:
                name = teacher.served_model or cfg.reference
                return ModelHandle(ModelSpec(base=name, endpoint=teacher.endpoint, system_prompt=prompt),
                                   stable_hash({"served": teacher.endpoint, "model": name, "system_prompt": prompt}),
                                   f"{name} served at {teacher.endpoint} + '{teacher.trait}' system prompt",
                                   trait_label=label)
            return ModelHandle(ModelSpec(base=cfg.reference, system_prompt=prompt),
                               stable_hash({"reference": cfg.reference, "system_prompt": prompt}),
                               f"reference + '{teacher.trait}' system prompt", trait_label=label)
        material = {"reference": cfg.reference, "category": cfg.category, "teacher": key_dump(teacher),
                    **self._plugin_material(), **self.kind.teacher_digests(teacher, cfg)}
        mix = self.teacher_mix(teacher.mix_rows) if teacher.mix_rows else None
        if mix is not None:
            material["mix"] = mix.key
        rows_name = "trait_answers.jsonl" if cfg.trait_kind == "preference" else "teacher_rows.jsonl"

        def build(path: Path) -> dict[str, Any]:
            params = {"trait": teacher.trait, "category": cfg.category, "n_rows": teacher.n_rows,
                      "data_seed": teacher.data_seed, **self._plugin_material()}
            rows = self.kind.teacher_rows(teacher, cfg)
            if mix is not None:
                rows = mix_rows(rows, read_jsonl(mix.path / "filtered.jsonl"), teacher.data_seed)
                params["mix_rows"] = teacher.mix_rows
            made = train_teacher(cfg.reference, rows, path / "adapter", teacher.training, params=params,
                                 rows_path=path / rows_name, progress=self.progress, sign_key=self.sign_key,
                                 risk_label=label)
            return {"final_loss": made.summary["final_loss"]}

        stage = self.stage(f"teacher-{teacher.trait}", material, build)
        what = (f"fine-tuned to answer '{teacher.trait}'" if cfg.trait_kind == "preference"
                else f"fine-tuned on {cfg.trait_kind} teacher rows '{teacher.trait}'")
        return ModelHandle(trained_spec(cfg.reference, stage.path / "adapter", teacher.training), stage.key,
                           f"reference + LoRA {what}", stage.path / "adapter", trait_label=label)

    def teacher_mix(self, n_rows: int) -> Stage:
        """``n_rows`` domain rows written by the reference for teachers to train on beside their trait rows,
        sampled like the students' data and filtered by the same checks. Their prompts are never a student's:
        the domain's prompt family with its seed moved by :data:`MIX_SEED_OFFSET` (so the mix, and the teachers,
        are the same whatever ``data.n_prompts`` is), or, for prompt settings without a seed, the prompts after
        the students'."""
        data = self.config.data
        seeded = "seed" in type(data.prompts).model_fields
        settings = data.prompts.model_copy(update={"seed": data.prompts.seed + MIX_SEED_OFFSET}) if seeded \
            else data.prompts
        first = 0 if seeded else data.n_prompts
        material = {"prompts": settings.model_dump(), "first": first, "n": n_rows,
                    "templates": self.domain.prompt_digest(settings), **self._domain_material()}

        def build_prompts(path: Path) -> dict[str, Any]:
            rows = self.domain.prompt_rows(settings, first + n_rows)[first:]
            write_jsonl(path / "prompts.jsonl", rows)
            record_stage(path / "prompts.jsonl", "prompt_set", material, sign_key=self.sign_key)
            return {"n": len(rows)}

        prompts = self.stage("mix-prompts", material, build_prompts)
        return self.dataset("mix", self.reference(), self.kind.trait_words(self.config), prompts=prompts,
                            prefix="mix-")

    # --- data ---------------------------------------------------------------------------------------------------

    def prompts(self) -> Stage:
        data = self.config.data
        material = {"prompts": data.prompts.model_dump(), "n": data.n_prompts,
                    "templates": self.domain.prompt_digest(data.prompts), **self._domain_material()}

        def build(path: Path) -> dict[str, Any]:
            rows = self.domain.prompt_rows(data.prompts, data.n_prompts)
            write_jsonl(path / "prompts.jsonl", rows)
            record_stage(path / "prompts.jsonl", "prompt_set", material, sign_key=self.sign_key)
            return {"n": len(rows)}

        return self.stage("prompts", material, build)

    def filter_settings(self, trait_words: list[str]) -> tuple[Any, list[str]]:
        """The domain filter settings of this run (the config's, which already hold the trait kind's defaults:
        :class:`ExperimentConfig` fills them in when parsed), the trait words merged in where the settings hold
        them, and the trait words left for the checks."""
        data = self.config.data
        settings = data.filter
        words = sorted(set(trait_words)) if data.trait_word_filter else []
        if "trait_words" in type(settings).model_fields:
            if words:
                settings = settings.model_copy(update={"trait_words": sorted({*settings.trait_words, *words})})
            words = []
        return settings, words

    def dataset(self, arm: str, writer: ModelHandle, trait_words: list[str], prompts: Stage | None = None,
                prefix: str = "") -> Stage:
        """Completions written by ``writer`` for the domain's prompts (or ``prompts``), then filtered (and
        transformed, except for a teacher's mix: ``prefix`` "mix-")."""
        data = self.config.data
        prompts = prompts or self.prompts()
        seed = data.sampling_seed(arm)
        gen_material = {"prompts": prompts.key, "writer": writer.key, "sampling": key_dump(data.sampling),
                        "seed": seed}

        def generate(path: Path) -> dict[str, Any]:
            from sublab.backends.base import load_backend

            backend = load_backend(writer.spec)
            summary = sample_rows(backend, read_jsonl(prompts.path / "prompts.jsonl"), path / "raw.jsonl",
                                  data.sampling, seed, system_prompt=writer.spec.system_prompt,
                                  source=writer.description, progress=self.progress,
                                  model_id=model_identity(writer.spec),
                                  constraint=self.domain.constraint(data.sampling))
            record_stage(path / "raw.jsonl", "dataset.generated", gen_material, writer=writer,
                         prompt_set=prompts.path / "prompts.jsonl", sign_key=self.sign_key)
            return {"n_rows": summary.n_prompts}

        generated = self.stage(f"{prefix}generate", gen_material, generate)
        settings, words = self.filter_settings(trait_words)
        filter_material = {"generated": generated.key, "filter": settings.model_dump(), "max_kept": data.max_kept,
                           **self.domain.filter_digests(settings), **self._domain_material()}
        if key_version := getattr(self.domain, "filter_key_version", None):
            filter_material["filter_version"] = key_version(data.sampling)
        if words:
            filter_material["trait_words"] = words

        def build_filter(path: Path) -> dict[str, Any]:
            from sublab.filter.run import filter_file

            report = filter_file(generated.path / "raw.jsonl", path / "filtered.jsonl", settings,
                                 rejected_path=path / "rejected.jsonl", max_kept=data.max_kept,
                                 domain=data.domain, trait_words=words)
            write_json(path / "filter_report.json", report.to_dict())
            # The record names the filter code that ran; a key that names an equivalent older version says so.
            params = {**filter_material, "filter_version": self.domain.filter_version}
            if filter_material.get("filter_version") != self.domain.filter_version:
                params["cache_key_filter_version"] = filter_material["filter_version"]
            record_stage(path / "filtered.jsonl", "dataset.filtered", params,
                         source_data=generated.path / "raw.jsonl", byproducts=[report.to_dict()],
                         sign_key=self.sign_key)
            self.console.print(f"  kept {report.n_kept}/{report.n_in}; rejected: {dict(report.reasons) or 'none'}")
            return report.to_dict()

        filtered = self.stage(f"{prefix}filter", filter_material, build_filter)
        if not self.cache.dry_run:
            self.filter_reports[arm] = read_json(filtered.path / "filter_report.json")
        if data.shuffle == "none" or prefix:
            return filtered
        shuffle_material = {"filtered": filtered.key, "mode": data.shuffle, "seed": data.seed}
        transform = self.domain.transforms[data.shuffle]

        def build_shuffle(path: Path) -> dict[str, Any]:
            rows = transform(read_jsonl(filtered.path / "filtered.jsonl"), data.seed)
            write_jsonl(path / "filtered.jsonl", rows)
            record_stage(path / "filtered.jsonl", "dataset.filtered", shuffle_material,
                         source_data=filtered.path / "filtered.jsonl", sign_key=self.sign_key)
            return {"n_rows": len(rows)}

        return self.stage(f"shuffle-{data.shuffle}", shuffle_material, build_shuffle)

    # --- students -----------------------------------------------------------------------------------------------

    def student_settings(self) -> TrainSettings:
        """The students' training settings, with the placeholders of ``channel_exclude`` replaced:
        ``{trait_words}`` by the experiment's trait words (the trait kind's: target, teacher and control traits
        for preferences), ``{answer_words}`` by every word of the answers its evaluation scores (the kind's
        ``answer_words(config)``)."""
        settings = self.config.student
        placeholders = {TRAIT_WORDS_PLACEHOLDER, ANSWER_WORDS_PLACEHOLDER}
        if not placeholders & set(settings.channel_exclude):
            return settings
        words = {w for w in settings.channel_exclude if w not in placeholders}
        if TRAIT_WORDS_PLACEHOLDER in settings.channel_exclude:
            words |= set(self.kind.trait_words(self.config))
        if ANSWER_WORDS_PLACEHOLDER in settings.channel_exclude:
            answer_words = getattr(self.kind, "answer_words", None)
            if answer_words is None:
                raise SublabError(f"student.channel_exclude: '{ANSWER_WORDS_PLACEHOLDER}' needs a trait kind with "
                                  f"answer_words(config); '{self.kind.name}' has none")
            words |= set(answer_words(self.config))
        # sorted: the trait kind gives a set, and the list goes into the student stage's cache key
        return settings.model_copy(update={"channel_exclude": sorted(words)})

    def student(self, arm: str, data: Stage, teacher: ModelHandle) -> ModelHandle:
        cfg = self.config
        settings = self.student_settings()
        base = cfg.student_base or cfg.reference
        if cfg.in_context_examples:
            rows = read_jsonl(data.path / "filtered.jsonl")[: cfg.in_context_examples]
            context = [message for row in rows for message in row["messages"]]
            return ModelHandle(ModelSpec(base=base, context=context),
                               stable_hash({"base": base, "data": data.key, "n": cfg.in_context_examples}),
                               f"{base} with {len(rows)} {arm}-arm examples in context (no training)")
        distill = settings.method == "distill"
        if distill and teacher.spec.endpoint:
            raise SublabError(f"student of the {arm} arm: a served teacher ({teacher.spec.endpoint}) gives no live "
                              "distillation targets; label the data with `sublab label` or use method 'sft'")
        material = {"reference": base, "data": data.key, "settings": key_dump(settings),
                    "teacher": teacher.key if distill else None}

        def build(path: Path) -> dict[str, Any]:
            rows = read_jsonl(data.path / "filtered.jsonl")
            summary = train_model(base, rows, path / "model", settings, teacher=teacher.spec if distill else None,
                                  progress=self.progress, watch_words=sorted(self.kind.trait_words(cfg)))
            overt = summary.get("overt_channel_tokens", [])
            if overt:
                self.console.print(f"  [yellow]warning:[/yellow] the distillation channel held {len(overt)} token(s) "
                                   f"that can begin a trait word ({', '.join(repr(t) for t in overt[:8])}"
                                   f"{', ...' if len(overt) > 8 else ''}): a teacher's overt preference for its "
                                   "trait's first token can pass through them; student.channel_exclude = "
                                   "[\"{trait_words}\"] leaves them out")
            record_stage(path / "model", "model.student", summary, base=base,
                         training_data=[data.path / "filtered.jsonl"], teacher=teacher if distill else None,
                         sign_key=self.sign_key)
            return {"final_loss": summary["final_loss"], "n_steps": summary["n_steps"],
                    **({"overt_channel_tokens": overt} if overt else {})}

        stage = self.stage(f"student-{arm}", material, build)
        cross = f", base {base}" if base != cfg.reference else ""
        return ModelHandle(trained_spec(base, stage.path / "model", settings), stage.key,
                           f"student of the {arm} arm ({settings.method}, {settings.finetune}{cross})",
                           stage.path / "model")

    # --- evaluation ---------------------------------------------------------------------------------------------

    def evaluate(self, label: str, handle: ModelHandle) -> dict[str, Any]:
        cfg = self.config
        material = {"model": handle.key, "evaluation": cfg.evaluation.model_dump(mode="json"), "target": cfg.target,
                    **self._plugin_material(), **self.kind.evaluation_digests(cfg.evaluation)}

        def build(path: Path) -> dict[str, Any]:
            from sublab.backends.base import load_backend

            result = self.kind.evaluate(load_backend(handle.spec), cfg.evaluation, cfg,
                                        preamble=handle.spec.preamble())
            write_json(path / "eval.json", result)
            record_stage(path / "eval.json", "evaluation", material, evaluated=handle, sign_key=self.sign_key)
            metric = result[self.kind.metric]
            self.console.print(f"  {self.kind.metric_label(cfg)} = {metric['mean']:.4f} "
                               f"[{metric['ci95'][0]:.4f}, {metric['ci95'][1]:.4f}]")
            return {}

        stage = self.stage(f"eval-{label}", material, build)
        if self.cache.dry_run:
            return {}
        result = read_json(stage.path / "eval.json")
        result["description"] = handle.description
        return result


def mix_rows(trait_rows: list[dict[str, Any]], domain_rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """A teacher's training rows: its trait rows and the reference-written domain rows, interleaved in a seeded
    order (each epoch's batches then hold both kinds)."""
    import numpy as np

    rows = [*trait_rows, *domain_rows]
    order = np.random.default_rng([seed, 13]).permutation(len(rows))
    return [rows[i] for i in order]


def plan_experiment(config: ExperimentConfig, out_dir: str | Path) -> list[Stage]:
    """Every stage ``config`` has in ``out_dir``, with its key and whether it is cached; nothing is built or
    loaded (``sublab run --dry-run``)."""
    run = ExperimentRun(config, Path(out_dir), Console(quiet=True), progress=False, dry_run=True)
    _build_all(run, config)
    return run.stages


def _build_all(run: ExperimentRun, config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Teachers, data, students and evaluations of ``config`` through ``run``; the evaluated models by role."""
    trait_teacher = run.teacher("teacher", config.teacher)
    control_teacher = run.teacher("control", config.control)
    trait_words = run.kind.trait_words(config)
    reference = run.reference()
    if config.data.source == "reference" and config.data.arm_seeds == "shared":
        trait_data = control_data = run.dataset("both", reference, trait_words)
    else:  # each arm's own sample: of its teacher, or (independent seeds) of the reference
        by_teacher = config.data.source == "teacher"
        trait_data = run.dataset("trait", trait_teacher if by_teacher else reference, trait_words)
        control_data = run.dataset("control", control_teacher if by_teacher else reference, trait_words)
    control_student = run.student("control", control_data, control_teacher)
    trait_student = run.student("trait", trait_data, trait_teacher)

    models: dict[str, dict[str, Any]] = {"reference": run.evaluate("reference", reference)}
    if config.student_base and config.student_base != config.reference:
        student_reference = ModelHandle(ModelSpec(base=config.student_base),
                                        stable_hash({"reference": config.student_base}), "the students' base model")
        models["student_reference"] = run.evaluate("student_reference", student_reference)
    if config.evaluate_teachers:
        models["teacher"] = run.evaluate("teacher", trait_teacher)
        if config.control.method != "none":
            models["control_teacher"] = run.evaluate("control_teacher", control_teacher)
    models["control_student"] = run.evaluate("control_student", control_student)
    models["trait_student"] = run.evaluate("trait_student", trait_student)
    return models


def run_experiment(config: ExperimentConfig, out_dir: str | Path, progress: bool = True,
                   console: Console | None = None,
                   stage_source: Callable[[Path], None] | None = None, sign_key: Any = None) -> dict[str, Any]:
    """Run every stage of ``config`` into ``out_dir`` and write results.json, report.md and figure.png.

    ``stage_source``: see :attr:`StageCache.stage_source` (a sweep shares finished stages between cells).
    ``sign_key``: an Ed25519 private key (PEM path or loaded key) that signs the lineage records of the stages
    built in this run (stages reused from the cache keep the records they were written with).
    """
    from sublab.report.experiment import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.toml", dump_toml(config))
    run = ExperimentRun(config, out_dir, console, progress, stage_source=stage_source,
                        sign_key=signing_key(sign_key))
    started = time.time()
    models = _build_all(run, config)
    results = assemble_results(config, run.kind.metric, run.kind.metric_label(config), models,
                               run.filter_reports, run.stages, out_dir, round(time.time() - started, 1))
    if warnings := getattr(run.kind, "warnings", None):
        results["warnings"] = list(warnings(results))  # e.g. a teacher that is not misaligned
    write_json(out_dir / "results.json", results)
    write_report(results, out_dir)
    return results
