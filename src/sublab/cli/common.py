"""What every command module shares: the consoles, the one-line error wrapper, common options.

Command modules import from here, never from :mod:`sublab.cli` itself, so the package has no import circle:
``sublab.cli`` builds the app and adds each module's sub-app.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from sublab.errors import SublabError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> None:
    """Print ``error: message`` as one line on stderr and exit with status 2."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(2)


def user_errors(func: F) -> F:
    """Turn user-fixable errors into one line on stderr and exit status 2.

    User-fixable: a :class:`SublabError`, or settings built from command-line options that fail validation
    (a pydantic ``ValidationError``, reported as ``options: field '<name>': <why>``).
    """
    from pydantic import ValidationError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sublab.io import output_scope  # outputs a command claims are released when it returns

        try:
            with output_scope():
                return func(*args, **kwargs)
        except SublabError as err:
            fail(str(err))
        except ValidationError as err:
            from sublab.pipeline.config import format_validation_error

            fail(format_validation_error("options", err))

    return wrapper  # type: ignore[return-value]


SignKey = Annotated[Path | None, typer.Option(
    "--sign-key", help="Ed25519 private key (PEM, from `sublab keys new`) to sign the lineage records with.")]


def signing_key(path: Path | None) -> object:
    """Load the signing key up front, so a bad key fails before any work is done."""
    from sublab.lineage.keys import signing_key as load

    return load(path)


def recorded(record: Path) -> None:
    """Print where a stage's lineage record went."""
    console.print(f"lineage record: {record}", markup=False, highlight=False)


Out = Annotated[Path, typer.Option("--out", "-o", help="Output file.")]


def write_prompt_set(domain: str, settings: Any, n: int, out: Path, sign_key: Path | None) -> None:
    """``sublab prompts DOMAIN``: write ``n`` prompt rows of ``domain`` and their lineage record."""
    from sublab.domains.base import get_domain
    from sublab.io import claim_outputs, write_jsonl
    from sublab.pipeline.provenance import record_stage

    claim_outputs([out], inputs=[sign_key], with_records=True)
    key = signing_key(sign_key)
    found = get_domain(domain)
    rows = found.prompt_rows(settings, n)
    write_jsonl(out, rows)
    record = record_stage(out, "prompt_set", {"prompts": settings.model_dump(), "n": n,
                                              "templates": found.prompt_digest(settings)}, sign_key=key)
    console.print(f"wrote {len(rows)} prompts to {out}")
    recorded(record)


def run_filter_command(domain: str, source: Path, out: Path, settings: Any, *, rejected: Path | None = None,
                       max_kept: int | None = None, trait_words: list[str] | None = None, judge: Any = None,
                       sign_key: Path | None = None, params: dict[str, Any] | None = None) -> None:
    """``sublab filter DOMAIN``: filter ``source`` into ``out`` with the domain's checks, print the counts per
    reject reason and record the lineage (the record names the filter's version and settings)."""
    from sublab.domains.base import get_domain
    from sublab.filter.run import filter_file
    from sublab.io import claim_outputs
    from sublab.pipeline.provenance import record_stage

    claim_outputs([out, rejected], inputs=[source, sign_key], with_records=True)  # no -o = input, -o = --rejected
    key = signing_key(sign_key)
    found = get_domain(domain)
    report = filter_file(source, out, settings, rejected_path=rejected, max_kept=max_kept, domain=domain,
                         trait_words=trait_words or [], judge=judge)
    recorded_params = {"filter": settings.model_dump(), "max_kept": max_kept, "filter_version": found.filter_version,
                       **(params or {})}
    if domain != "numbers":
        recorded_params["domain"] = domain
    if trait_words:
        recorded_params["trait_words"] = list(trait_words)
    record = record_stage(out, "dataset.filtered", recorded_params, source_data=source,
                          byproducts=[report.to_dict()], sign_key=key)
    console.print(f"kept {report.n_kept} of {report.n_in} rows → {out}")
    for reason, count in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  {reason}: {count}")
    if report.n_capped:
        console.print(f"  over max_kept (passed, not kept): {report.n_capped}")
    for name, summary in report.judge_scores.items():
        if summary.get("n"):
            console.print(f"  {name} scores of {summary['n']} judged rows: min {summary['min']:g}, quartiles "
                          f"{summary['q25']:g} / {summary['median']:g} / {summary['q75']:g}, max {summary['max']:g}")
    recorded(record)


# --- training options shared by `sublab train` and `sublab teacher` ------------------------------------------------

#: name -> (annotation, default): the TrainSettings options both training commands take, declared once.
TRAIN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "steps": (Annotated[int | None, typer.Option(help="Optimizer steps (or --epochs).")], None),
    "epochs": (Annotated[float | None, typer.Option(help="Passes over the data (or --steps).")], None),
    "batch_size": (Annotated[int, typer.Option(help="Rows per optimizer step.")], 16),
    "lr": (Annotated[float, typer.Option(help="Peak learning rate (AdamW).")], 1e-3),
    "schedule": (Annotated[str, typer.Option(help="Learning-rate schedule: constant, or linear decay to 0.")],
                 "constant"),
    "warmup_steps": (Annotated[int, typer.Option(help="Linear warm-up steps.")], 0),
    "weight_decay": (Annotated[float, typer.Option(help="AdamW weight decay.")], 0.0),
    "max_grad_norm": (Annotated[float, typer.Option(help="Gradient clipping norm (0: off).")], 1.0),
    "bf16": (Annotated[bool, typer.Option(
        "--bf16/--no-bf16", help="bf16 autocast for the matmuls (about 2x faster on CPUs with bf16 units).")], False),
    "lora_r": (Annotated[int, typer.Option(help="LoRA rank.")], 8),
    "lora_alpha": (Annotated[float, typer.Option(help="LoRA alpha (scale = alpha / r).")], 16),
    "lora_dropout": (Annotated[float, typer.Option(help="Dropout on the LoRA input.")], 0.0),
    "init_seed": (Annotated[int, typer.Option(
        help="LoRA init seed (a student sharing its teacher's init uses the teacher's).")], 0),
    "seed": (Annotated[int, typer.Option(help="Seed of the batch order.")], 0),
}


def train_options(**defaults: Any) -> Callable[[F], F]:
    """Add the :data:`TRAIN_OPTIONS` to a command (with per-command ``defaults``); the command receives them
    as one keyword argument ``train`` (a dict) and builds its settings with :func:`train_settings`."""
    import inspect
    import typing

    def decorate(func: F) -> F:
        hints = typing.get_type_hints(func, include_extras=True)
        signature = inspect.signature(func)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
               if p.name != "train"]
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, default),
                                    annotation=annotation) for name, (annotation, default) in TRAIN_OPTIONS.items()]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            train = {name: kwargs.pop(name) for name in TRAIN_OPTIONS if name in kwargs}
            return func(*args, train=train, **kwargs)

        parameters = own + shared
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # typer must read the new signature, not the wrapped one
        return wrapper  # type: ignore[return-value]

    return decorate


def train_settings(train: dict[str, Any], **fields: Any) -> Any:
    """A TrainSettings from the shared options (``train``) and command-specific ``fields``."""
    from sublab.train.settings import LoraSettings, TrainSettings

    options = dict(train)
    lora = LoraSettings(r=options.pop("lora_r"), alpha=options.pop("lora_alpha"),
                        dropout=options.pop("lora_dropout"), init_seed=options.pop("init_seed"))
    if options.get("steps") is not None:
        options["epochs"] = None
    options["max_grad_norm"] = options["max_grad_norm"] or None
    return TrainSettings(**options, **fields, lora=lora)
