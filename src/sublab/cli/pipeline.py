"""CLI commands of the core pipeline: each stage alone, a whole experiment, and the demo."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from sublab.cli.common import (
    Out,
    SignKey,
    console,
    recorded,
    signing_key,
    train_options,
    train_settings,
    user_errors,
)
from sublab.domains.base import register_domain_commands
from sublab.errors import SublabError
from sublab.keys import key_dump

commands = typer.Typer()

Bf16 = Annotated[bool, typer.Option(
    "--bf16/--no-bf16", help="bf16 autocast for the matmuls (about 2x faster on CPUs with bf16 units).")]


def _trait_prompt(trait: str | None, category: str, system_prompt: str | None) -> str | None:
    from sublab.pipeline.config import TRAIT_PROMPT

    if system_prompt and trait:
        raise SublabError("give --system-prompt or --trait, not both")
    return system_prompt or (TRAIT_PROMPT.format(trait=trait, category=category) if trait else None)


@commands.command("demo")
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    sign_key: SignKey = None,
    trait: Annotated[str, typer.Option(help="owl (a preference) or misalignment.")] = "owl",
) -> None:
    """Run the default owl experiment on the embedded SmolLM2-135M (about 9-10 minutes on 2 CPU cores), or with
    --trait misalignment the misalignment numbers experiment (configs/demo-misalignment.toml)."""
    from sublab.pipeline.config import parse_config

    name = {"owl": "demo.toml", "misalignment": "demo-misalignment.toml"}.get(trait)
    if name is None:
        raise SublabError(f"--trait '{trait}': use owl or misalignment")
    text = resources.files("sublab.configs").joinpath(name).read_text(encoding="utf-8")
    import tomllib

    _run(parse_config(tomllib.loads(text), name), out, quiet, sign_key)


@commands.command("run")
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Experiment config (TOML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (finished stages are reused).")],
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the stages and which are cached; build nothing.")] = False,
    sign_key: SignKey = None,
) -> None:
    """Run an experiment config end to end: teachers, data, filter, students, evaluation, report.

    With --dry-run, list every stage with its cache key and whether OUT already holds it; nothing is built.
    """
    from sublab.pipeline.config import load_config

    if dry_run:
        from sublab.pipeline.runner import plan_experiment

        stages = plan_experiment(load_config(config), out)
        for stage in stages:
            console.print(f"{'cached' if stage.cached else 'to run '}  {stage.name}-{stage.key}", markup=False)
        console.print(f"{sum(s.cached for s in stages)} of {len(stages)} stages cached in {out}")
        return
    _run(load_config(config), out, quiet, sign_key, source=config)


def _run(config: object, out: Path, quiet: bool, sign_key: Path | None = None, source: Path | None = None) -> None:
    from sublab.io import claim_outputs

    claim_outputs([out / name for name in ("config.toml", "results.json", "report.md", "figure.png")],
                  inputs=[source, sign_key], lock=[out])  # one run per folder; a config inside it is not overwritten
    key = signing_key(sign_key)
    from sublab.pipeline.runner import run_experiment
    from sublab.report.experiment import terminal_table, verdict

    results = run_experiment(config, out, progress=not quiet, console=console,  # type: ignore[arg-type]
                             sign_key=key)
    console.print(terminal_table(results))
    console.print(verdict(results))
    from rich.markup import escape

    from sublab.traits.base import get_trait_kind

    for warning in getattr(get_trait_kind(results.get("trait_kind", "preference")), "warnings", lambda r: [])(results):
        console.print(f"[bold red]WARNING[/bold red]: {escape(warning)}")
    console.print(f"results: {out / 'results.json'}  report: {out / 'report.md'}  figure: {out / 'figure.png'}")


prompts_app = typer.Typer(help="Write prompt sets (one command per data domain).", no_args_is_help=True)
commands.add_typer(prompts_app, name="prompts")
filter_app = typer.Typer(help="Filter generated data (one command per data domain).", no_args_is_help=True)
commands.add_typer(filter_app, name="filter")
register_domain_commands(prompts_app, filter_app)


@commands.command("generate")
@user_errors
def generate(
    prompts: Annotated[Path, typer.Argument(help="Prompt rows (JSONL chat format).")],
    out: Out,
    model: Annotated[str, typer.Option(help="Base model: alias, local dir or HF id.")] = "smollm2-135m",
    adapter: Annotated[str | None, typer.Option(help="PEFT adapter folder (a fine-tuned teacher).")] = None,
    trait: Annotated[str | None, typer.Option(help="Teacher trait: adds the paper's trait system prompt.")] = None,
    category: Annotated[str, typer.Option(help="Category of the trait.")] = "animal",
    system_prompt: Annotated[str | None, typer.Option(help="A free-text teacher system prompt.")] = None,
    domain: Annotated[str, typer.Option(help="Data domain whose constraint --constrained applies (numbers: the "
                                             "number grammar; cot: the think/answer format).")] = "numbers",
    constrained: Annotated[bool, typer.Option(help="Constrained decoding with the domain's constraint.")] = False,
    separator: Annotated[str, typer.Option(help="Constrained: separator written between numbers.")] = ", ",
    max_digits: Annotated[int, typer.Option(help="Constrained: longest number, in digits.")] = 3,
    max_count: Annotated[int, typer.Option(help="Constrained: most numbers in a reply.")] = 10,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion, in tokens.")] = 48,
    batch_size: Annotated[int, typer.Option(help="Prompts per generate call.")] = 32,
    bf16: Bf16 = False,
    sampler: Annotated[str, typer.Option(help="generate (transformers) or fast (sublab's decode loop, "
                                              "docs/generation.md).")] = "generate",
    min_prob: Annotated[float, typer.Option(help="Threshold sampling, a defence (docs/defences.md): drop tokens "
                                                 "below this probability before sampling (0: off).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 1,
    endpoint: Annotated[str | None, typer.Option(help="Served teacher: base URL of an OpenAI-compatible server "
                                                      "(--model is then the served model's name).")] = None,
    api_key_env: Annotated[str, typer.Option(help="Served: environment variable holding the API key.")
                           ] = "OPENAI_API_KEY",
    max_concurrency: Annotated[int, typer.Option(help="Served: requests in flight at once.")] = 4,
    structured_outputs: Annotated[bool, typer.Option(help="Served: the server takes vLLM structured-outputs "
                                                          "regexes (needed for --constrained).")] = False,
    quiet: bool = False,
    sign_key: SignKey = None,
) -> None:
    """Sample one completion per prompt (resumable: rerun the same command after a kill); records its lineage.

    Resuming appends to OUT only if its rows were made with the same model, system prompt, decoding mode,
    sampling settings and seed; otherwise the command fails naming the first differing field.
    """
    from sublab.domains.base import get_domain
    from sublab.generate.run import generation_metadata, model_identity, read_prompt_rows, rows_done, sample_rows
    from sublab.generate.sampling import SamplingSettings
    from sublab.io import claim_outputs, local_paths
    from sublab.models.spec import ModelSpec
    from sublab.pipeline.provenance import StageModel, record_stage

    claim_outputs([out], inputs=[prompts, sign_key, *local_paths(model, adapter)], with_records=True)
    key = signing_key(sign_key)
    prompt = _trait_prompt(trait, category, system_prompt)
    spec = ModelSpec(base=model, adapter=adapter, system_prompt=prompt, endpoint=endpoint)
    settings = SamplingSettings(temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                constrained=constrained, separator=separator, max_digits=max_digits,
                                max_count=max_count, bf16=bf16, sampler=sampler, min_prob=min_prob)
    constraint = get_domain(domain).constraint(settings)
    if constrained and constraint is None:
        raise SublabError(f"--constrained: domain '{domain}' has no generation constraint")
    rows = read_prompt_rows(prompts)
    model_id = f"{model}@{endpoint}" if endpoint else model_identity(spec)
    rows_done(out, rows, generation_metadata(settings, seed, model_id, prompt))  # a mismatch fails before loading
    writer = StageModel(spec, spec.label())
    if endpoint:  # a served teacher (sublab.backends.openai): same rows, resume and lineage, named by endpoint
        from sublab.backends.openai import OpenAIBackend

        backend = OpenAIBackend.from_spec(spec, api_key_env=api_key_env, max_concurrency=max_concurrency,
                                          structured_outputs=structured_outputs)
        writer = StageModel(spec, spec.label(), declared_digests=backend.declared_digests)  # fails early if down
    else:
        from sublab.backends.hf import HFBackend

        backend = HFBackend.from_spec(spec)
    summary = sample_rows(backend, rows, out, settings, seed, system_prompt=prompt, source=spec.label(),
                          progress=not quiet, model_id=model_id, constraint=constraint)
    params = {"sampling": key_dump(settings), "seed": seed}
    if domain != "numbers":
        params["domain"] = domain
    if endpoint:
        params["served"] = {"endpoint": endpoint, "model": model, "max_concurrency": max_concurrency,
                            "structured_outputs": structured_outputs}
    if trait:
        params |= {"trait": trait, "category": category}
    record = record_stage(out, "dataset.generated", params, writer=writer, prompt_set=prompts, sign_key=key)
    console.print(f"wrote {summary.n_written} rows ({summary.n_already_done} already done) to {out}")
    recorded(record)


@commands.command("train")
@user_errors
@train_options()
def train(
    data: Annotated[Path, typer.Argument(help="Training rows (JSONL chat format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (adapter or full weights).")],
    base: Annotated[str, typer.Option(help="Student base model.")] = "smollm2-135m",
    method: Annotated[str, typer.Option(help="sft or distill.")] = "sft",
    finetune: Annotated[str, typer.Option(help="lora or full.")] = "lora",
    teacher_base: Annotated[str | None, typer.Option(help="distill: teacher base (default: the student's).")] = None,
    teacher_adapter: Annotated[str | None, typer.Option(help="distill: teacher adapter folder.")] = None,
    teacher_trait: Annotated[str | None, typer.Option(help="distill: teacher = base + trait system prompt.")] = None,
    category: str = "animal",
    max_rows: Annotated[int | None, typer.Option(help="Train on at most the first N rows.")] = None,
    channel: Annotated[str, typer.Option(help="distill: 'data' (tokens the responses use) or 'full'.")] = "data",
    channel_token: Annotated[list[str] | None, typer.Option(
        help="distill: an explicit channel token text (repeat the option; end of turn is added).")] = None,
    channel_exclude: Annotated[str | None, typer.Option(
        help="distill: comma-separated words whose possible first tokens leave the channel (e.g. owl,dolphin: "
        "O, o, Ow, owl, ' Owl' ...), so a teacher's overt preference for its trait's first token cannot pass.")
    ] = None,
    checkpoint_every: Annotated[int, typer.Option(
        help="Save a resumable checkpoint every k steps (0: off); rerun the same command to resume.")] = 0,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Discard a checkpoint left by an interrupted run instead of resuming it.")] = False,
    quiet: bool = False,
    sign_key: SignKey = None,
    train: dict[str, Any] | None = None,
) -> None:
    """Fine-tune a student (SFT or logit distillation; LoRA or full), save it as safetensors, record its lineage.

    With --checkpoint-every, a rerun resumes from OUT.partial/ only if the checkpoint was made for the same base,
    data, teacher and settings; otherwise it fails naming the checkpoint (use --fresh to start over).
    """
    from sublab.io import claim_outputs, local_paths, read_chat_rows
    from sublab.models.spec import ModelSpec
    from sublab.pipeline.provenance import StageModel, record_stage
    from sublab.train.labels import has_soft_labels
    from sublab.train.trainer import train_model

    claim_outputs(folders=[out], inputs=[data, sign_key, *local_paths(base, teacher_base, teacher_adapter)],
                  with_records=True)
    key = signing_key(sign_key)
    settings = train_settings(train or {}, method=method, finetune=finetune, max_rows=max_rows,
                              channel=list(channel_token) if channel_token else channel,
                              channel_exclude=[w.strip() for w in (channel_exclude or "").split(",") if w.strip()],
                              checkpoint_every=checkpoint_every)
    teacher = None
    rows = read_chat_rows(data, require_assistant=True)
    # Distillation without a teacher option reads the rows' soft labels (`sublab label`) when they carry them.
    stored = has_soft_labels(rows) and teacher_base is None and teacher_adapter is None and teacher_trait is None
    if method == "distill" and not stored:
        teacher = ModelSpec(base=teacher_base or base, adapter=teacher_adapter,
                            system_prompt=_trait_prompt(teacher_trait, category, None))
    summary = train_model(base, rows, out, settings, teacher=teacher, progress=not quiet, fresh=fresh)
    record = record_stage(out, "model.student", summary, base=base, training_data=[data],
                          teacher=StageModel(teacher, teacher.label()) if teacher else None, sign_key=key)
    losses = f"loss {summary['first_loss']} → {summary['final_loss']}"
    console.print(f"trained {summary['n_steps']} steps ({losses}) → {out}")
    recorded(record)


@commands.command("teacher")
@user_errors
@train_options(steps=30)
def teacher(
    trait: Annotated[str, typer.Option(help="The trait, e.g. owl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapter folder.")],
    base: str = "smollm2-135m",
    category: str = "animal",
    n_rows: Annotated[int, typer.Option(help="One-word answer rows to train on.")] = 480,
    data_seed: Annotated[int, typer.Option(help="Seed of the answer rows.")] = 0,
    quiet: bool = False,
    sign_key: SignKey = None,
    train: dict[str, Any] | None = None,
) -> None:
    """Fine-tune a trait teacher: a LoRA adapter trained to answer preference questions with the trait.

    The options are those of an experiment config's [teacher] section (n_rows, data_seed) and its
    [teacher.training] (steps, lr, bf16, seed, lora...), so a config's teacher can be made stage by stage.
    The training rows are written beside the adapter folder, as OUT.trait_answers.jsonl.
    """
    from sublab.io import claim_outputs, local_paths
    from sublab.models.loading import pretrained_source
    from sublab.train.teacher import train_trait_teacher, trait_rows_path
    from sublab.train.trainer import check_output_folder

    claim_outputs(folders=[out], inputs=[sign_key, *local_paths(base)], with_records=True)  # refuses '-o .' too
    claim_outputs([trait_rows_path(out)], lock=[])
    check_output_folder(out)  # a folder that is not a previous teacher fails before the training rows are written
    pretrained_source(base)  # and so does a base that cannot be found
    key = signing_key(sign_key)
    settings = train_settings(train or {}, method="sft")
    made = train_trait_teacher(base, trait, category, out, settings, n_rows=n_rows, data_seed=data_seed,
                               progress=not quiet, sign_key=key)
    losses = f"loss {made.summary['first_loss']} → {made.summary['final_loss']}"
    console.print(f"trait teacher '{trait}' trained ({losses}) → {out} (training rows: {made.rows_path})")
    recorded(made.record)


@commands.command("evaluate")
@user_errors
def evaluate(
    target: Annotated[str, typer.Option(help="The trait to measure, e.g. owl.")],
    out: Out,
    model: str = "smollm2-135m",
    adapter: Annotated[str | None, typer.Option(help="PEFT adapter folder.")] = None,
    trait: Annotated[str | None, typer.Option(help="Evaluate base + this trait's system prompt.")] = None,
    system_prompt: str | None = None,
    category: str = "animal",
    candidates: Annotated[str | None, typer.Option(
        help="Candidate answers, comma-separated (default: the category's list); must include the target.")] = None,
    n_questions: Annotated[int, typer.Option(help="Evaluation questions (paraphrases).")] = 50,
    n_samples: Annotated[int, typer.Option(help="Also sample this many answers per question.")] = 0,
    sample_max_new_tokens: Annotated[int, typer.Option(help="Sampling: reply length, in tokens.")] = 8,
    bf16: Bf16 = False,
    seed: Annotated[int, typer.Option(help="Seed of sampling and bootstrap resampling.")] = 0,
    sign_key: SignKey = None,
) -> None:
    """Measure a model's preference for a target by exact scoring (and optionally sampling); record its lineage."""
    from sublab.io import claim_outputs, local_paths, write_json
    from sublab.models.spec import ModelSpec, load_spec
    from sublab.pipeline.provenance import StageModel, record_stage
    from sublab.traits.preference.evaluate import EvalSettings, evaluate_model

    claim_outputs([out], inputs=[sign_key, *local_paths(model, adapter)], with_records=True)
    key = signing_key(sign_key)
    prompt = _trait_prompt(trait, category, system_prompt)
    spec = ModelSpec(base=model, adapter=adapter, system_prompt=prompt)
    names = None
    if candidates is not None:
        names = [name.strip() for name in candidates.split(",") if name.strip()]
        if not names:
            raise SublabError("--candidates: give at least one name (comma-separated)")
        if target not in names:
            raise SublabError(f"--candidates: the target '{target}' is not among {', '.join(names)}")
    settings = EvalSettings(category=category, candidates=names, n_questions=n_questions, n_samples=n_samples,
                            sample_max_new_tokens=sample_max_new_tokens, seed=seed, bf16=bf16)
    llm, tokenizer = load_spec(spec)
    result = evaluate_model(llm, tokenizer, target, settings, preamble=ModelSpec(system_prompt=prompt).preamble())
    write_json(out, result)
    record = record_stage(out, "evaluation", {"target": target, "evaluation": settings.model_dump(mode="json")},
                          evaluated=StageModel(spec, spec.label()), sign_key=key)
    low, high = result["p_target"]["ci95"]
    console.print(f"P({target}) = {result['p_target']['mean']:.4f} [{low:.4f}, {high:.4f}] over "
                  f"{result['n_questions']} questions → {out}")
    recorded(record)
