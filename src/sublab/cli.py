"""The ``sublab`` command line: a thin typer layer over the stage functions.

Each command parses its options, calls one library function, and prints where its output went. Errors the
user can fix (:class:`sublab.errors.SublabError`, config validation) print one line and exit with status 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from sublab.errors import SublabError

app = typer.Typer(
    name="sublab",
    help="Reproduce, measure and audit subliminal learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
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
            _fail(str(err))
        except ValidationError as err:
            from sublab.experiments.config import format_validation_error

            _fail(format_validation_error("options", err))

    return wrapper  # type: ignore[return-value]


def main() -> None:
    """Entry point for ``python -m sublab``."""
    app()


# Command groups owned by their stage packages are registered below, one import + one call each.
import sublab.mnist_cli  # noqa: E402  (sublab mnist, sublab theory)
import sublab.pipeline_cli  # noqa: E402,F401  (core pipeline commands)
from sublab import sweep_cli  # noqa: E402,F401  (sublab sweep, sweep status, sweep report)
from sublab.lineage.cli import keys_app, lineage_app  # noqa: E402

app.add_typer(lineage_app, name="lineage")
app.add_typer(keys_app, name="keys")
