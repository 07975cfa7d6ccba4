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
        try:
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
