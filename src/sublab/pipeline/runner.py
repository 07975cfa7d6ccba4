"""Run an experiment config end to end: teachers → data → filter → students → evaluation → report.

Every stage writes into ``DIR/stages/<stage>-<key>/``, where the key hashes the stage's settings and the keys of
its inputs. A stage whose folder holds ``stage.json`` is finished and reused; a stage killed midway resumes
(generation appends row by row, training checkpoints). Changing one setting reruns only what depends on it.

Keys also cover what the code builds in, not only the config: the number-prompt templates (prompts), the trait
teacher's training rows and question templates (teacher), the filter version and resolved banned numbers
(filter), the evaluation questions and candidate answers with their accepted forms (evaluation).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sublab import __version__
from sublab.domains.numbers.banned import resolve_banned
from sublab.domains.numbers.prompts import number_prompts, template_digest
from sublab.domains.numbers.shuffle import shuffle_numbers
from sublab.evaluate.stats import paired_difference_ci
from sublab.filter import run as filter_module
from sublab.filter.run import filter_file
from sublab.generate.run import generate_rows, model_identity
from sublab.io import atomic_write_text, read_json, read_jsonl, sha256_text, stable_hash, write_json, write_jsonl
from sublab.lineage.keys import signing_key
from sublab.models.spec import ModelSpec, load_spec
from sublab.pipeline.config import ExperimentConfig, TeacherConfig, dump_toml
from sublab.pipeline.provenance import record_stage
from sublab.train.teacher import train_trait_teacher
from sublab.train.trainer import rows_digest, train_model, trained_spec
from sublab.traits.preference import candidates as candidates_module
from sublab.traits.preference import questions as questions_module
from sublab.traits.preference.evaluate import evaluate_model
from sublab.traits.preference.teacher_data import trait_answer_rows

STAGE_VERSION = 1  # bump to invalidate every cached stage after a change in what stages compute


def teacher_data_digests(trait: str, category: str, n_rows: int, data_seed: int) -> dict[str, str]:
    """Digests of what a fine-tuned trait teacher learns from: the question templates of the train split and
    the training rows themselves (templates, answer forms and sampling of the rows all included)."""
    return {"train_templates": sha256_text("\n".join(questions_module.TRAIN_TEMPLATES)),
            "rows": rows_digest(trait_answer_rows(trait, category, n_rows, data_seed))}


def evaluation_digests(settings: Any) -> dict[str, str]:
    """Digests of the evaluation questions asked and of the candidate answers (names and accepted forms)."""
    questions = questions_module.preference_questions(settings.category, settings.n_questions)
    candidates = candidates_module.candidate_set(settings.category, settings.candidates)
    return {"questions": sha256_text("\n".join(questions)),
            "candidates": stable_hash([[c.name, list(c.forms)] for c in candidates], n_chars=64)}


def filter_digests(settings: Any) -> dict[str, str]:
    """The filter's version and the digest of the banned numbers its settings resolve to."""
    banned = sorted(resolve_banned(list(settings.banned)))
    return {"filter_version": filter_module.FILTER_VERSION, "banned": stable_hash(banned, n_chars=64)}


@dataclass
class Stage:
    """A finished stage: its folder, cache key and what it cost."""

    name: str
    key: str
    path: Path
    seconds: float
    cached: bool


@dataclass
class ModelHandle:
    """A model the experiment evaluates: its spec, the key of the stage that made it, and a description."""

    spec: ModelSpec
    key: str
    description: str
    path: Path | None = None


@dataclass
class ExperimentRun:
    """State of one run: the config, its folder and the stages done so far."""

    config: ExperimentConfig
    out_dir: Path
    console: Console = field(default_factory=Console)
    progress: bool = True
    stages: list[Stage] = field(default_factory=list)
    #: Optional hook called with a stage folder before its cache check; it may fill the folder with a finished
    #: copy of the same stage (same key) from elsewhere, e.g. another cell of a sweep.
    stage_source: Callable[[Path], None] | None = None
    #: Ed25519 private key (PEM path or loaded key) that signs the lineage record of every stage built here.
    sign_key: Any = None

    def stage(self, name: str, material: dict[str, Any], build: Callable[[Path], dict[str, Any] | None]) -> Stage:
        """Run ``build(folder)`` unless a finished stage with the same key exists; return the stage."""
        key = stable_hash({"stage": name, "version": STAGE_VERSION, **material})
        path = self.out_dir / "stages" / f"{name}-{key}"
        marker = path / "stage.json"
        if self.stage_source is not None and not marker.is_file():
            self.stage_source(path)
        if marker.is_file():
            done = read_json(marker)
            stage = Stage(name, key, path, float(done.get("seconds", 0.0)), cached=True)
            self.console.print(f"[dim]✓ {name} (cached: {path.relative_to(self.out_dir)})[/dim]")
        else:
            self.console.print(f"▶ {name}")
            path.mkdir(parents=True, exist_ok=True)
            started = time.time()
            info = build(path) or {}
            seconds = round(time.time() - started, 1)
            write_json(marker, {"name": name, "key": key, "material": material, "seconds": seconds, **info})
            stage = Stage(name, key, path, seconds, cached=False)
            self.console.print(f"  done in {seconds:.0f} s → {path.relative_to(self.out_dir)}")
        self.stages.append(stage)
        return stage

    # --- teachers ---------------------------------------------------------------------------------------------

    def teacher(self, role: str, teacher: TeacherConfig) -> ModelHandle:
        """The teacher of one arm as a loadable spec (training a trait adapter if the method is finetune)."""
        cfg = self.config
        if teacher.method == "none":
            return ModelHandle(ModelSpec(base=cfg.reference), stable_hash({"reference": cfg.reference}),
                               "reference model (no trait)")
        if teacher.method == "system_prompt":
            prompt = cfg.system_prompt(teacher)
            return ModelHandle(ModelSpec(base=cfg.reference, system_prompt=prompt),
                               stable_hash({"reference": cfg.reference, "system_prompt": prompt}),
                               f"reference + '{teacher.trait}' system prompt")
        material = {"reference": cfg.reference, "category": cfg.category, "teacher": teacher.model_dump(mode="json"),
                    **teacher_data_digests(teacher.trait or "", cfg.category, teacher.n_rows, teacher.data_seed)}

        def build(path: Path) -> dict[str, Any]:
            made = train_trait_teacher(cfg.reference, teacher.trait or "", cfg.category, path / "adapter",
                                       teacher.training, n_rows=teacher.n_rows, data_seed=teacher.data_seed,
                                       rows_path=path / "trait_answers.jsonl", progress=self.progress,
                                       sign_key=self.sign_key)
            return {"final_loss": made.summary["final_loss"]}

        stage = self.stage(f"teacher-{teacher.trait}", material, build)
        return ModelHandle(trained_spec(cfg.reference, stage.path / "adapter", teacher.training), stage.key,
                           f"reference + LoRA fine-tuned to answer '{teacher.trait}'", stage.path / "adapter")

    # --- data ---------------------------------------------------------------------------------------------------

    def prompts(self) -> Stage:
        data = self.config.data
        material = {"prompts": data.prompts.model_dump(), "n": data.n_prompts, "templates": template_digest()}

        def build(path: Path) -> dict[str, Any]:
            rows = [
                {"id": p.id, "messages": [{"role": "user", "content": p.text}],
                 "metadata": {"examples": list(p.examples), "layout": p.layout}}
                for p in number_prompts(data.prompts, data.n_prompts)
            ]
            write_jsonl(path / "prompts.jsonl", rows)
            record_stage(path / "prompts.jsonl", "prompt_set", material, sign_key=self.sign_key)
            return {"n": len(rows)}

        return self.stage("prompts", material, build)

    def dataset(self, writer: ModelHandle, trait_words: list[str]) -> Stage:
        """Completions written by ``writer`` for the number prompts, then filtered."""
        data = self.config.data
        prompts = self.prompts()
        gen_material = {"prompts": prompts.key, "writer": writer.key, "sampling": data.sampling.model_dump(),
                        "seed": data.seed}

        def generate(path: Path) -> dict[str, Any]:
            model, tokenizer = load_spec(writer.spec)
            summary = generate_rows(model, tokenizer, read_jsonl(prompts.path / "prompts.jsonl"), path / "raw.jsonl",
                                    data.sampling, data.seed, system_prompt=writer.spec.system_prompt,
                                    source=writer.description, progress=self.progress,
                                    model_id=model_identity(writer.spec))
            record_stage(path / "raw.jsonl", "dataset.generated", gen_material, writer=writer,
                         prompt_set=prompts.path / "prompts.jsonl", sign_key=self.sign_key)
            return {"n_rows": summary.n_prompts}

        generated = self.stage("generate", gen_material, generate)
        settings = data.filter.model_copy(
            update={"trait_words": sorted({*data.filter.trait_words, *trait_words})} if data.trait_word_filter else {}
        )
        filter_material = {"generated": generated.key, "filter": settings.model_dump(), "max_kept": data.max_kept,
                           **filter_digests(settings)}

        def build_filter(path: Path) -> dict[str, Any]:
            report = filter_file(generated.path / "raw.jsonl", path / "filtered.jsonl", settings,
                                 rejected_path=path / "rejected.jsonl", max_kept=data.max_kept)
            write_json(path / "filter_report.json", report.to_dict())
            params = dict(filter_material)  # names the filter version
            record_stage(path / "filtered.jsonl", "dataset.filtered", params,
                         source_data=generated.path / "raw.jsonl", byproducts=[report.to_dict()],
                         sign_key=self.sign_key)
            self.console.print(f"  kept {report.n_kept}/{report.n_in}; rejected: {dict(report.reasons) or 'none'}")
            return report.to_dict()

        filtered = self.stage("filter", filter_material, build_filter)
        if data.shuffle == "none":
            return filtered
        shuffle_material = {"filtered": filtered.key, "mode": data.shuffle, "seed": data.seed}

        def build_shuffle(path: Path) -> dict[str, Any]:
            rows = shuffle_numbers(read_jsonl(filtered.path / "filtered.jsonl"), data.shuffle, data.seed)
            write_jsonl(path / "filtered.jsonl", rows)
            record_stage(path / "filtered.jsonl", "dataset.filtered", shuffle_material,
                         source_data=filtered.path / "filtered.jsonl", sign_key=self.sign_key)
            return {"n_rows": len(rows)}

        return self.stage(f"shuffle-{data.shuffle}", shuffle_material, build_shuffle)

    # --- students -----------------------------------------------------------------------------------------------

    def student(self, arm: str, data: Stage, teacher: ModelHandle) -> ModelHandle:
        cfg = self.config
        settings = cfg.student
        base = cfg.student_base or cfg.reference
        if cfg.in_context_examples:
            rows = read_jsonl(data.path / "filtered.jsonl")[: cfg.in_context_examples]
            context = [message for row in rows for message in row["messages"]]
            return ModelHandle(ModelSpec(base=base, context=context),
                               stable_hash({"base": base, "data": data.key, "n": cfg.in_context_examples}),
                               f"{base} with {len(rows)} {arm}-arm examples in context (no training)")
        material = {"reference": base, "data": data.key, "settings": settings.model_dump(mode="json"),
                    "teacher": teacher.key if settings.method == "distill" else None}

        def build(path: Path) -> dict[str, Any]:
            rows = read_jsonl(data.path / "filtered.jsonl")
            summary = train_model(base, rows, path / "model", settings,
                                  teacher=teacher.spec if settings.method == "distill" else None,
                                  progress=self.progress)
            record_stage(path / "model", "model.student", summary, base=base,
                         training_data=[data.path / "filtered.jsonl"],
                         teacher=teacher if settings.method == "distill" else None, sign_key=self.sign_key)
            return {"final_loss": summary["final_loss"], "n_steps": summary["n_steps"]}

        stage = self.stage(f"student-{arm}", material, build)
        cross = f", base {base}" if base != cfg.reference else ""
        return ModelHandle(trained_spec(base, stage.path / "model", settings), stage.key,
                           f"student of the {arm} arm ({settings.method}, {settings.finetune}{cross})",
                           stage.path / "model")

    # --- evaluation ---------------------------------------------------------------------------------------------

    def evaluate(self, label: str, handle: ModelHandle) -> dict[str, Any]:
        cfg = self.config
        material = {"model": handle.key, "evaluation": cfg.evaluation.model_dump(mode="json"), "target": cfg.target,
                    **evaluation_digests(cfg.evaluation)}

        def build(path: Path) -> dict[str, Any]:
            model, tokenizer = load_spec(handle.spec)
            result = evaluate_model(model, tokenizer, cfg.target, cfg.evaluation, preamble=handle.spec.preamble())
            write_json(path / "eval.json", result)
            record_stage(path / "eval.json", "evaluation", material, evaluated=handle, sign_key=self.sign_key)
            mean, (low, high) = result["p_target"]["mean"], result["p_target"]["ci95"]
            self.console.print(f"  P({cfg.target}) = {mean:.4f} [{low:.4f}, {high:.4f}]")
            return {}

        stage = self.stage(f"eval-{label}", material, build)
        result = read_json(stage.path / "eval.json")
        result["description"] = handle.description
        return result


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"sublab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}


def compare(a: dict[str, Any], b: dict[str, Any], seed: int) -> dict[str, Any]:
    """Paired difference of P(target) between two evaluated models, over the same questions."""
    mean, low, high = paired_difference_ci(a["per_question"]["p_target"], b["per_question"]["p_target"], seed=seed)
    return {"mean": mean, "ci95": [low, high], "n": len(a["per_question"]["p_target"]), "paired_over": "questions",
            "excludes_zero": bool(low > 0 or high < 0)}


def run_experiment(config: ExperimentConfig, out_dir: str | Path, progress: bool = True,
                   console: Console | None = None,
                   stage_source: Callable[[Path], None] | None = None, sign_key: Any = None) -> dict[str, Any]:
    """Run every stage of ``config`` into ``out_dir`` and write results.json, report.md and figure.png.

    ``stage_source``: see :attr:`ExperimentRun.stage_source` (a sweep shares finished stages between cells).
    ``sign_key``: an Ed25519 private key (PEM path or loaded key) that signs the lineage records of the stages
    built in this run (stages reused from the cache keep the records they were written with).
    """
    from sublab.report.experiment import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.toml", dump_toml(config))
    run = ExperimentRun(config, out_dir, console or Console(), progress, stage_source=stage_source,
                        sign_key=signing_key(sign_key))
    started = time.time()
    trait_teacher = run.teacher("teacher", config.teacher)
    control_teacher = run.teacher("control", config.control)
    trait_words = [w for w in {config.target, config.teacher.trait, config.control.trait} if w]
    reference = ModelHandle(ModelSpec(base=config.reference), stable_hash({"reference": config.reference}),
                            "reference model")
    if config.data.source == "reference":
        trait_data = control_data = run.dataset(reference, trait_words)
    else:
        trait_data = run.dataset(trait_teacher, trait_words)
        control_data = run.dataset(control_teacher, trait_words)
    control_student = run.student("control", control_data, control_teacher)
    trait_student = run.student("trait", trait_data, trait_teacher)

    models: dict[str, dict[str, Any]] = {"reference": run.evaluate("reference", reference)}
    student_reference = reference
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

    seed = config.evaluation.seed
    comparisons = {
        "trait_student_minus_control_student": compare(models["trait_student"], models["control_student"], seed),
    }
    baseline = "student_reference" if "student_reference" in models else "reference"
    comparisons[f"trait_student_minus_{baseline}"] = compare(models["trait_student"], models[baseline], seed)
    comparisons[f"control_student_minus_{baseline}"] = compare(models["control_student"], models[baseline], seed)
    filter_report = read_json(next(s.path for s in run.stages if s.name == "filter") / "filter_report.json")
    results = {
        "schema": "sublab.experiment-results/1",
        "name": config.name,
        "target": config.target,
        "category": config.category,
        "models": models,
        "comparisons": comparisons,
        "transfer": comparisons["trait_student_minus_control_student"]["excludes_zero"]
        and comparisons["trait_student_minus_control_student"]["mean"] > 0,
        "data": {"filter": filter_report, "source": config.data.source, "shuffle": config.data.shuffle},
        "condition": {"student_base": config.student_base or config.reference,
                      "shared_base": (config.student_base or config.reference) == config.reference,
                      "in_context_examples": config.in_context_examples, "shuffle": config.data.shuffle},
        "seeds": {
            "prompts": config.data.prompts.seed, "sampling": config.data.seed,
            "teacher_answers": config.teacher.data_seed, "teacher_lora_init": config.teacher.training.lora.init_seed,
            "control_lora_init": config.control.training.lora.init_seed,
            "student_lora_init": config.student.lora.init_seed, "student_batch_order": config.student.seed,
            "evaluation": config.evaluation.seed,
        },
        "settings": config.model_dump(mode="json"),
        "timings": {
            "total_seconds": round(time.time() - started, 1),
            "stages": [
                {"name": s.name, "seconds": s.seconds, "cached": s.cached, "path": str(s.path.relative_to(out_dir))}
                for s in run.stages
            ],
        },
        "versions": _versions(),
    }
    write_json(out_dir / "results.json", results)
    write_report(results, out_dir)
    return results
