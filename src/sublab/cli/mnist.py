"""CLI of the auxiliary-logit experiment (``sublab mnist``) and the theorem check (``sublab theory``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from sublab.cli.common import console, user_errors
from sublab.errors import SublabError

commands = typer.Typer()

#: Short names accepted by ``--vary`` for the settings' field names.
VARY_ALIASES = {"aux": "n_aux", "models": "n_models", "inputs": "distill_inputs", "epochs": "distill_epochs"}


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[str, int], Callable[[], None]] | None]:
    """A factory of rich progress bars: ``make(label, total)`` returns a per-step callback."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:

        def make(label: str, total: int) -> Callable[[], None]:
            task = bar.add_task(label, total=total)
            return lambda: bar.advance(task)

        yield make


def parse_vary(items: list[str]) -> dict[str, list[Any]]:
    """``["aux=1,3,10", "inputs=noise,train"]`` → ``{"n_aux": ["1", "3", "10"], ...}`` (validated later)."""
    from sublab.experiments.mnist.run import MnistSettings

    grid: dict[str, list[Any]] = {}
    for item in items:
        name, _, values = item.partition("=")
        field = VARY_ALIASES.get(name.strip(), name.strip())
        if not values or field not in MnistSettings.model_fields:
            raise SublabError(f"--vary {item!r}: expected NAME=V1,V2,... with NAME one of "
                              f"{', '.join(sorted({*VARY_ALIASES, *MnistSettings.model_fields}))}")
        grid[field] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def _print_results(results: dict[str, Any]) -> None:
    from rich.table import Table

    from sublab.experiments.mnist.run import accuracy_table

    table = Table(title=f"{results['settings']['dataset']}: test accuracy, mean and 95 % CI over "
                        f"{results['reference']['n']} models")
    for column in ("model", "accuracy", "95 % CI"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in accuracy_table(results):
        table.add_row(*row)
    console.print(table)
    console.print(results["summary"])


@commands.command("mnist")
@user_errors
def mnist(
    dataset: Annotated[str, typer.Option(help="digits (bundled), fashion-mnist (Debian package), or idx:DIR.")]
    = "digits",
    models: Annotated[int | None, typer.Option("--models", help="Models per arm (default: 50 digits, 100 "
                                               "otherwise).")] = None,
    aux: Annotated[int, typer.Option("--aux", help="Auxiliary logits m.")] = 3,
    seed: Annotated[int, typer.Option(help="Run seed (inits, data order, noise).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/mnist"),
    teacher_epochs: Annotated[float | None, typer.Option(help="Teacher epochs (default: 50 digits, 5 else).")]
    = None,
    distill_epochs: Annotated[float | None, typer.Option(help="Distillation epochs (default: 50 digits, 5 "
                                                         "else).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: 128 digits, 1024 else).")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 3e-4,
    inputs: Annotated[str, typer.Option(help="Distillation inputs: noise (the paper) or train (real "
                                        "images).")] = "noise",
    fresh_noise: Annotated[bool | None, typer.Option(
        "--fresh-noise/--fixed-noise", help="A new noise draw every epoch, or one fixed pool as large as the "
        "training set (the paper). Default: fresh for digits, fixed otherwise.", show_default=False)] = None,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast for matmuls.")] = True,
    vary: Annotated[list[str] | None, typer.Option(help="Sweep a setting, e.g. --vary aux=1,3,10 --vary "
                                                   "inputs=noise,train (a grid; each cell is a run).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """The paper's MNIST auxiliary-logit experiment: students distilled on noise through logits never trained."""
    from pydantic import ValidationError

    from sublab.experiments.mnist.data import load_image_data
    from sublab.experiments.mnist.run import MnistSettings, run_mnist
    from sublab.io import write_json
    from sublab.pipeline.config import format_validation_error
    from sublab.report.mnist import write_mnist_report

    fields = {"dataset": dataset, "n_models": models, "n_aux": aux, "seed": seed, "teacher_epochs": teacher_epochs,
              "distill_epochs": distill_epochs, "batch_size": batch_size, "lr": lr, "distill_inputs": inputs,
              "fresh_noise": fresh_noise, "bf16": bf16}
    try:
        base = MnistSettings.model_validate(fields)
    except ValidationError as err:
        raise SublabError(format_validation_error("options", err)) from None
    from sublab.io import claim_outputs

    names = ("sweep.json", "sweep.md", "sweep.png") if vary else ("results.json", "figure.png", "report.md")
    source = Path(dataset[len("idx:"):]) if dataset.startswith("idx:") else None
    claim_outputs([out / name for name in names], inputs=[source], lock=[out])
    data = load_image_data(base.dataset)
    if not vary:
        with progress_bars(not quiet) as progress:
            results = run_mnist(base, data=data, device=device, progress=progress)
        write_json(out / "results.json", results)
        write_mnist_report(results, out)
        _print_results(results)
        console.print(f"results: {out / 'results.json'}  figure: {out / 'figure.png'}  report: {out / 'report.md'}")
        return
    grid = parse_vary(vary)
    _run_sweep(base, grid, data, out, device, quiet)


def _run_sweep(base: Any, grid: dict[str, list[Any]], data: Any, out: Path, device: str, quiet: bool) -> None:
    """Every cell of the grid in its own folder; cells with results are reused (a killed sweep resumes)."""
    from pydantic import ValidationError

    from sublab.experiments.mnist.run import MnistSettings, run_mnist
    from sublab.io import read_json, write_json
    from sublab.pipeline.config import format_validation_error
    from sublab.report.mnist import sweep_figure, sweep_markdown, write_mnist_report

    cells = []
    for values in itertools.product(*grid.values()):
        vary = dict(zip(grid, values, strict=True))
        try:
            settings = MnistSettings.model_validate({**base.model_dump(), **vary})
        except ValidationError as err:
            raise SublabError(format_validation_error("--vary", err)) from None
        name = "-".join(f"{k}={v}" for k, v in vary.items())
        folder = out / "cells" / name
        saved = folder / "results.json"
        wanted = settings.resolved().model_dump(mode="json")
        if saved.is_file() and all(read_json(saved)["settings"].get(k) == v for k, v in wanted.items()):
            console.print(f"[dim]✓ {name} (done)[/dim]")
            results = read_json(saved)
        else:
            console.print(f"▶ {name}")
            with progress_bars(not quiet) as progress:
                results = run_mnist(settings, data=data, device=device, progress=progress)
            write_json(saved, results)
            write_mnist_report(results, folder)
            console.print(f"  {results['summary']}")
        cells.append({"vary": {k: getattr(settings, k) for k in vary}, "path": str(folder.relative_to(out)),
                      "results": results})
    sweep = {"schema": "sublab.mnist-sweep/1", "grid": grid, "base": base.model_dump(), "cells": cells}
    write_json(out / "sweep.json", sweep)
    from sublab.io import atomic_write_bytes, atomic_write_text

    atomic_write_text(out / "sweep.md", sweep_markdown(sweep))
    atomic_write_bytes(out / "sweep.png", sweep_figure(sweep))
    console.print(sweep_markdown(sweep))
    console.print(f"sweep: {out / 'sweep.json'}  figure: {out / 'sweep.png'}")


@commands.command("theory")
@user_errors
def theory(
    mlp_pairs: Annotated[int, typer.Option(help="Random (MLP, teacher loss, inputs) pairs.")] = 300,
    llm_pairs: Annotated[int, typer.Option(help="Pairs on the LLM (0: skip).")] = 12,
    model: Annotated[str, typer.Option(help="LLM for the LoRA check.")] = "smollm2-135m",
    seed: int = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/theory"),
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Check the paper's theorem: a same-init student's first distillation step points toward the teacher."""
    from sublab.experiments.theory import run_theory
    from sublab.io import atomic_write_bytes, claim_outputs, local_paths, write_json
    from sublab.report.mnist import theory_figure

    claim_outputs([out / "results.json", out / "figure.png"], inputs=local_paths(model) if llm_pairs else [],
                  lock=[out])

    with progress_bars(not quiet) as progress:
        results = run_theory(mlp_pairs, llm_pairs, model if llm_pairs else None, seed, progress=progress)
    write_json(out / "results.json", results)
    atomic_write_bytes(out / "figure.png", theory_figure(results))
    for g in results["groups"]:
        q = g["quantiles_0_5_50_95_100"]
        console.print(f"{g['name']:<48} n={g['n']:<4} positive {g['fraction_positive']:.3f}  cosine min {q[0]:+.3f} "
                      f"median {q[2]:+.3f} max {q[4]:+.3f}")
    console.print(results["summary"])
    console.print(f"results: {out / 'results.json'}  figure: {out / 'figure.png'}")
