"""The lineage tree of an artifact, as plain data (for ``--json``) and as a rich tree (for the terminal)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from sublab.lineage.digests import is_sha256, short
from sublab.lineage.records import DepRef, Record, RecordError, find_record, load_record

#: Annotations worth a glance in the terminal tree (all of them are in the JSON).
_SHOWN_ANNOTATIONS = ("family", "system_prompt_sha256", "description", "trait_label")


def _subject_digest(rec: Record) -> str | None:
    for subject in rec.subjects:
        if subject.get("name") == rec.artifact.name:
            return (subject.get("digest") or {}).get("sha256")
    return None


def _dependency(dep: DepRef, depth: int, max_depth: int | None, seen: set[Path]) -> dict[str, Any]:
    node: dict[str, Any] = {
        "name": dep.name,
        "role": dep.role,
        "sha256": dep.sha256,
        "path": str(dep.path) if dep.path else None,
        "annotations": dep.annotations,
        "record": str(dep.record) if dep.record else None,
        "upstream": None,
    }
    if dep.record is not None and (max_depth is None or depth < max_depth):
        node["upstream"] = _record_node(dep.record, depth + 1, max_depth, seen)
    return node


def _record_node(path: Path, depth: int, max_depth: int | None, seen: set[Path]) -> dict[str, Any]:
    key = path.resolve()
    if key in seen:
        return {"record": str(path), "repeated": True}
    seen.add(key)
    try:
        rec = load_record(path)
    except RecordError as err:
        return {"record": str(path), "error": err.reason}
    return {
        "artifact": str(rec.artifact),
        "record": str(rec.path),
        "kind": rec.kind,
        "sha256": _subject_digest(rec),
        "signed_by": rec.envelope.key_ids,
        "finished_on": rec.metadata.get("finishedOn"),
        "parameters": rec.parameters,
        "byproducts": rec.byproducts,
        "dependencies": [_dependency(d, depth, max_depth, seen) for d in rec.dependencies],
    }


def lineage_tree(path: str | Path, max_depth: int | None = None) -> dict[str, Any]:
    """Where the artifact at ``path`` came from: its record and, recursively, the records of its inputs.

    A record met twice is shown once (later as ``{"repeated": true}``); an unreadable one carries ``error``.
    """
    artifact, record = find_record(path)
    if not record.is_file():
        return {"artifact": str(artifact), "record": str(record), "error": "no lineage record"}
    return _record_node(record, 0, max_depth, set())


def _scalars(obj: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return short(value) if is_sha256(value) else str(value)

    return ", ".join(f"{k}={fmt(v)}" for k, v in obj.items() if isinstance(v, str | int | float | bool))


def _record_label(node: dict[str, Any]) -> str:
    if "error" in node:
        return f"[red]{escape(node['record'])}: {escape(node['error'])}[/red]"
    if node.get("repeated"):
        return f"[dim]{escape(node['record'])} (shown above)[/dim]"
    signers = node["signed_by"]
    signed = f" [green]signed {signers[0][:12]}…[/green]" if signers else " [dim]unsigned[/dim]"
    name = escape(Path(node["artifact"]).name)
    return f"[bold]{name}[/bold] [cyan]{node['kind']}[/cyan] {short(node['sha256'])}{signed}"


def _fill(tree: Tree, node: dict[str, Any], show_params: bool) -> None:
    if "error" in node or node.get("repeated"):
        return
    if show_params and node["parameters"]:
        tree.add(f"[dim]parameters: {escape(_scalars(node['parameters']) or str(node['parameters']))}[/dim]")
    for item in node["byproducts"]:
        tree.add(f"[dim]byproduct {escape(str(item.get('name')))}: "
                 f"{escape(_scalars(item.get('annotations') or {}))}[/dim]")
    for dep in node["dependencies"]:
        notes = {k: dep["annotations"][k] for k in _SHOWN_ANNOTATIONS if k in dep["annotations"]}
        extra = f" [dim]{escape(_scalars(notes))}[/dim]" if notes else ""
        label = f"[magenta]{dep['role']}[/magenta] {escape(dep['name'])} {short(dep['sha256'])}{extra}"
        if dep["upstream"] is None and dep["record"] is None:
            label += " [yellow](no record)[/yellow]" if dep["sha256"] else " [yellow](no digest)[/yellow]"
        branch = tree.add(label)
        if dep["upstream"] is not None:
            _fill(branch.add(_record_label(dep["upstream"])), dep["upstream"], show_params)


def render_tree(node: dict[str, Any], show_params: bool = False) -> Tree:
    """A rich :class:`~rich.tree.Tree` of a :func:`lineage_tree` result."""
    if "kind" not in node and "error" in node:
        return Tree(f"[red]{escape(node['artifact'] if 'artifact' in node else node['record'])}: "
                    f"{escape(node['error'])}[/red]")
    tree = Tree(_record_label(node))
    _fill(tree, node, show_params)
    return tree
