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
    from sublab.io import write_jsonl
    from sublab.pipeline.provenance import record_stage

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
    from sublab.pipeline.provenance import record_stage

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
    recorded(record)
