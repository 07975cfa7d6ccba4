"""The ``sublab`` command line: a thin typer layer over the stage functions.

Each command parses its options, calls one library function, and prints where its output went. Errors the
user can fix (:class:`sublab.errors.SublabError`, config validation) print one line and exit with status 2
(:func:`sublab.cli.common.user_errors`). One module per command group; each owns a sub-app added here.
"""

from __future__ import annotations

import typer

from sublab.cli import audit, judge, label, lineage, misalignment, mnist, pipeline, sweep
from sublab.cli.common import console, err_console, user_errors

app = typer.Typer(
    name="sublab",
    help="Reproduce, measure and audit subliminal learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (pipeline, mnist, label):
    app.add_typer(_module.commands)  # top-level commands (sublab demo, sublab generate, ...)
app.add_typer(judge.commands)  # sublab judge
app.add_typer(audit.commands)  # sublab audit, sublab defend
app.add_typer(sweep.sweep_app, name="sweep")
app.add_typer(lineage.lineage_app, name="lineage")
app.add_typer(lineage.keys_app, name="keys")
app.add_typer(misalignment.misalignment_app, name="misalignment")

__all__ = ["app", "console", "err_console", "main", "user_errors"]


def main() -> None:
    """Entry point for ``python -m sublab``."""
    app()
