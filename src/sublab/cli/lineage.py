"""``sublab lineage show|verify|risk|record`` and ``sublab keys new``.

Exit status: 0 when everything holds, 1 when verification finds a broken link or the risk check finds a risk,
2 for bad input (a missing path, an unreadable key), with one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sublab.cli.common import console, user_errors
from sublab.errors import SublabError

lineage_app = typer.Typer(help="Lineage records: show, verify, assess shared-base risk, record.",
                          no_args_is_help=True)
keys_app = typer.Typer(help="Ed25519 keys for signing lineage records offline.", no_args_is_help=True)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


PathArg = Annotated[Path, typer.Argument(help="An artifact (file or directory) or its .intoto.jsonl record.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of the terminal view.")]


@lineage_app.command("show")
@user_errors
def show(
    path: PathArg,
    as_json: JsonOpt = False,
    depth: Annotated[int | None, typer.Option(help="Follow upstream records this many levels.")] = None,
    params: Annotated[bool, typer.Option("--params", help="Show each record's parameters.")] = False,
) -> None:
    """The tree of where an artifact came from: its inputs by role, their records, and theirs."""
    from sublab.lineage.tree import lineage_tree, render_tree

    tree = lineage_tree(path, max_depth=depth)
    if as_json:
        _echo_json(tree)
    elif "error" in tree:
        typer.echo(f"{tree['record']}: {tree['error']}")
    else:
        console.print(render_tree(tree, show_params=params))
    if "error" in tree:
        raise typer.Exit(1)


@lineage_app.command("verify")
@user_errors
def verify(
    path: PathArg,
    key: Annotated[list[Path] | None, typer.Option(
        "--key", help="Public key (PEM); every record must be signed by one of the keys given.")] = None,
    allow_outside: Annotated[list[Path] | None, typer.Option(
        "--allow-outside", help="Also read inputs records name inside this folder (repeatable). By default only "
        "the lineage's own folders and the model caches are read.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute digests of the artifact and everything it names, check signatures; exit 1 on a break.

    Only regular files are read, and only inside the folder of the starting record (its run's stages/ folder),
    the model caches, model folders, and the --allow-outside folders; inputs named elsewhere are listed as not
    read. With --key, a record whose signature fails is not followed: nothing it names is read.
    """
    from sublab.lineage.keys import load_public_key
    from sublab.lineage.verify import verify_lineage

    keys = [load_public_key(k) for k in key or []]
    report = verify_lineage(path, keys, allow_outside=allow_outside or [])
    if as_json:
        _echo_json({"ok": report.ok, "records": [str(r) for r in report.records],
                    "files_checked": report.files_checked, "signatures_verified": report.signatures_verified,
                    "signatures_unchecked": report.signatures_unchecked,
                    "declared_inputs": report.declared_inputs, "outside_inputs": report.outside_inputs,
                    "problems": [{"path": str(p.path), "message": p.message} for p in report.problems]})
    else:
        for problem in report.problems:
            typer.echo(problem.line())
        summary = f"{len(report.records)} records, {report.files_checked} files hashed"
        if report.signatures_verified:
            summary += f", {report.signatures_verified} signatures verified"
        if report.signatures_unchecked:
            summary += f", {report.signatures_unchecked} signed records not checked (no --key)"
        if report.declared_inputs:
            summary += f", {len(report.declared_inputs)} inputs named without files (not checked)"
        if report.outside_inputs:
            summary += (f", {len(report.outside_inputs)} inputs outside the lineage's folders not read (e.g. "
                        f"{report.outside_inputs[0]}; --allow-outside FOLDER to check them)")
        verdict = "OK" if report.ok else f"BROKEN: {len(report.problems)} problems"
        typer.echo(f"{verdict}: {summary}", err=True)
    if not report.ok:
        raise typer.Exit(1)


_STYLE = {"SHARED_INIT_VERIFIED": "bold red", "SHARED_INIT_DECLARED": "red", "UNKNOWN": "yellow",
          "DIFFERENT_BASE": "green"}


@lineage_app.command("risk")
@user_errors
def risk(
    model: Annotated[Path, typer.Argument(help="A model directory (or its record).")],
    as_json: JsonOpt = False,
) -> None:
    """For each dataset the model was trained on and each teacher of it: do they share an initialization?

    Exit 1 when any outcome is a risk: SHARED_INIT_VERIFIED, SHARED_INIT_DECLARED, UNKNOWN, or DIFFERENT_BASE
    with POSSIBLY_MATCHED.
    """
    from rich.markup import escape

    from sublab.lineage.risk import assess_risk

    report = assess_risk(model)
    if as_json:
        _echo_json(report.to_dict())
    else:
        console.print(f"[bold]shared-base risk of {escape(str(report.model))}[/bold]")
        for f in report.findings:
            style = "red" if f.risk and f.outcome == "DIFFERENT_BASE" else _STYLE.get(f.outcome, "")
            source = escape(f.dataset) if f.dataset else "(direct teacher)" if f.teacher else "-"
            console.print(f"[{style}]{f.label}[/{style}]  {source} ← teacher {escape(f.teacher or '?')}",
                          soft_wrap=True)
            console.print(f"    {escape(f.reason)}", style="dim", soft_wrap=True)
        if not report.findings:
            console.print("no training data or teachers recorded for this model")
        n_risk = sum(f.risk for f in report.findings)
        console.print(f"RISK: {n_risk} of {len(report.findings)} teacher links may transfer traits" if n_risk
                      else "no shared-base risk found")
    if report.risky:
        raise typer.Exit(1)


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SublabError(f"--param {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


@lineage_app.command("record")
@user_errors
def record(
    path: Annotated[Path, typer.Argument(help="The artifact (file or directory) made elsewhere.")],
    kind: Annotated[str | None, typer.Option(
        help="Artifact kind (default: model.base for a directory, dataset.external for a file).")] = None,
    name: Annotated[str | None, typer.Option(help="Declared name, e.g. a Hugging Face id.")] = None,
    family: Annotated[str | None, typer.Option(help="Model family, e.g. the upstream hub id.")] = None,
    source: Annotated[str | None, typer.Option(help="Where it came from (URL, revision).")] = None,
    base: Annotated[list[str] | None, typer.Option(
        help="base_model: a path, embedded alias or hub id, optionally NAME@sha256:HEX. Repeatable.")] = None,
    teacher: Annotated[list[str] | None, typer.Option(help="teacher of the data (as --base).")] = None,
    training_data: Annotated[list[Path] | None, typer.Option(help="training_data file or dir.")] = None,
    source_data: Annotated[list[Path] | None, typer.Option(help="source_data this was derived from.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (JSON parsed). Repeatable.")] = None,
    sign_key: Annotated[Path | None, typer.Option(help="Ed25519 private key (PEM) to sign with.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing record.")] = False,
) -> None:
    """Write a record for an artifact made elsewhere (an external dataset, a model from a hub)."""
    from sublab.io import claim_outputs
    from sublab.lineage.deps import parse_dependency
    from sublab.lineage.digests import record_path
    from sublab.lineage.statement import Dependency, record_artifact

    if not path.exists():
        raise SublabError(f"{path}: no such file or directory")
    target = record_path(path)
    claim_outputs([target], inputs=[path, sign_key, *(training_data or []), *(source_data or [])])
    if target.exists() and not force:
        raise SublabError(f"{target}: already exists (pass --force to replace it; downstream records that "
                          "link it will then report it as changed)")
    declared = {"name": name, "family": family, "source": source}
    parameters: dict[str, Any] = {k: v for k, v in declared.items() if v}
    parameters.update(dict(_parse_param(p) for p in param or []))
    deps: list[Dependency] = [parse_dependency(spec, "base_model") for spec in base or []]
    deps += [parse_dependency(spec, "teacher") for spec in teacher or []]
    deps += [Dependency(name=p.name, role="training_data", path=p) for p in training_data or []]
    deps += [Dependency(name=p.name, role="source_data", path=p) for p in source_data or []]
    kind = kind or ("model.base" if path.is_dir() else "dataset.external")
    written = record_artifact(path, kind, parameters, deps, sign_key=sign_key)
    console.print(f"recorded {path} ({kind}) → {written}", markup=False, highlight=False)


@keys_app.command("new")
@user_errors
def keys_new(
    prefix: Annotated[Path, typer.Argument(help="Writes PREFIX.key (private, 0600) and PREFIX.pub.")] = Path(
        "sublab-signing"),
    force: Annotated[bool, typer.Option(help="Replace existing key files.")] = False,
) -> None:
    """Make an Ed25519 key pair to sign lineage records (--sign-key) and verify them (--key)."""
    from sublab.io import claim_outputs
    from sublab.lineage.keys import key_id, load_public_key, new_keypair

    claim_outputs([prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")])
    private, public = new_keypair(prefix, overwrite=force)
    console.print(f"private key: {private} (keep it offline; pass it as --sign-key)", markup=False,
                  highlight=False)
    console.print(f"public key:  {public} (give it to auditors; sublab lineage verify --key)", markup=False,
                  highlight=False)
    console.print(f"key id:      {key_id(load_public_key(public))}", markup=False, highlight=False)
