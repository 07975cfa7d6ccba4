"""Write lineage records: an in-toto Statement v1 with a SLSA Provenance v1 predicate, in a DSSE envelope.

``record_artifact`` is what every pipeline stage calls after writing its output. The record lands beside the
artifact as ``<artifact>.intoto.jsonl`` and holds:

- ``subject``: the artifact's sha256 (a directory: one subject for its manifest digest, one per file);
- ``buildDefinition.buildType``: ``urn:sublab:lineage:<kind>:v1``;
- ``buildDefinition.externalParameters``: what the user chose (the ``parameters`` argument, verbatim);
- ``buildDefinition.resolvedDependencies``: every input, with ``annotations.role``, its digest, its path
  relative to the record, per-file digests for a directory, and the path and sha256 of the input's own record;
- ``runDetails.byproducts``: reports such as the filter's kept/rejected counts.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sublab import __version__
from sublab.errors import SublabError
from sublab.io import atomic_write_bytes, sha256_file
from sublab.lineage.digests import PathDigest, digest_path, is_sha256, named_path, record_path
from sublab.lineage.dsse import canonical_json, seal
from sublab.lineage.keys import signing_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE_PREFIX = "urn:sublab:lineage:"
BUILDER_ID = "urn:sublab:builder:subliminal-lab"
KINDS = (
    "prompt_set", "dataset.generated", "dataset.filtered", "dataset.external",
    "model.base", "model.teacher", "model.student", "model.external", "evaluation",
)  # fmt: skip
ROLES = ("teacher", "base_model", "training_data", "prompt_set", "source_data", "evaluated_model")
#: Annotation keys written by subliminal-lab itself; a caller's annotations cannot override them.
RESERVED_ANNOTATIONS = ("role", "path", "files", "record", "record_sha256")
_KIND = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass(frozen=True)
class Dependency:
    """One input of an artifact, named in its record with a role.

    ``path`` (a file or directory) is digested at record time; if ``<path>.intoto.jsonl`` exists it is the
    input's own record and is linked by path and sha256. ``digest`` (e.g. ``{"sha256": ...}``) identifies an
    input that is not on disk. ``annotations`` carry facts such as ``system_prompt_sha256`` or ``family``;
    a ``uri`` annotation becomes the descriptor's ``uri`` (a hub id without a digest gets its hub URL).
    """

    name: str
    role: str
    path: str | Path | None = None
    digest: dict[str, str] | None = None
    annotations: dict[str, Any] = field(default_factory=dict)


def build_type(kind: str) -> str:
    """The SLSA ``buildType`` URI for an artifact kind."""
    return f"{BUILD_TYPE_PREFIX}{kind}:v1"


def kind_of(build_type_uri: str) -> str:
    """The artifact kind encoded in a ``buildType`` (a foreign build type is returned unchanged)."""
    if build_type_uri.startswith(BUILD_TYPE_PREFIX) and build_type_uri.endswith(":v1"):
        return build_type_uri[len(BUILD_TYPE_PREFIX) : -len(":v1")]
    return build_type_uri


def to_json_value(obj: Any) -> Any:
    """A JSON value RFC 8785 accepts: paths become strings, tuples and sets lists, pydantic models and
    dataclasses dicts; non-finite floats and integers beyond ±2^53 become strings."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return obj if abs(obj) <= 2**53 else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, Mapping):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json_value(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_json_value(v) for v in obj), key=repr)
    if hasattr(obj, "model_dump"):
        return to_json_value(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_json_value(dataclasses.asdict(obj))
    return str(obj)


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return path.resolve().as_posix()


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = _dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch else _dt.datetime.now(_dt.UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def subjects_for(artifact: Path, digest: PathDigest) -> list[dict[str, Any]]:
    """Subjects of an artifact: a file's sha256, or a directory's manifest digest followed by each file."""
    if not digest.is_dir:
        return [{"name": artifact.name, "digest": {"sha256": digest.sha256}}]
    subjects: list[dict[str, Any]] = [
        {"name": artifact.name, "digest": {"sha256": digest.sha256}, "annotations": {"manifest": True}}
    ]
    for rel, sha in digest.files.items():
        subjects.append({"name": f"{artifact.name}/{rel}", "digest": {"sha256": sha}})
    return subjects


def _check_digest(dep: Dependency) -> dict[str, str]:
    digest = {str(k): str(v) for k, v in (dep.digest or {}).items()}
    if "sha256" in digest:
        digest["sha256"] = digest["sha256"].lower()
    if "sha256" in digest and not is_sha256(digest["sha256"]):
        raise SublabError(f"dependency '{dep.name}': sha256 digest {digest['sha256']!r} is not 64 hex digits")
    return digest


def dependency_descriptor(dep: Dependency, record_dir: Path) -> dict[str, Any]:
    """The SLSA ResourceDescriptor of one dependency, relative to the directory holding the record."""
    if not dep.name or not dep.role:
        raise SublabError(f"dependency {dep!r}: needs a name and a role")
    annotations = {k: to_json_value(v) for k, v in dep.annotations.items() if k not in RESERVED_ANNOTATIONS}
    annotations["role"] = dep.role
    digest = _check_digest(dep)
    uri = annotations.pop("uri", None)
    if dep.path is not None:
        path = Path(dep.path)
        if not path.exists():
            raise SublabError(f"{path}: input '{dep.name}' ({dep.role}) not found")
        found = digest_path(path)
        if digest.get("sha256") not in (None, found.sha256):
            raise SublabError(f"{path}: sha256 {found.sha256} differs from the digest given for '{dep.name}'")
        digest["sha256"] = found.sha256
        annotations["path"] = _relative(path, record_dir)
        if found.is_dir:
            annotations["files"] = found.files
        upstream = record_path(path)
        if upstream.is_file():
            annotations["record"] = _relative(upstream, record_dir)
            annotations["record_sha256"] = sha256_file(upstream)
    descriptor: dict[str, Any] = {"name": dep.name}
    if digest:
        descriptor["digest"] = digest
    if uri is None and not digest:
        looks_like_hub_id = dep.name.count("/") == 1 and not dep.name.startswith((".", "/"))
        uri = (f"https://huggingface.co/{dep.name}" if looks_like_hub_id
               else f"urn:sublab:name:{quote(dep.name)}")
    if uri is not None:
        descriptor["uri"] = str(uri)
    descriptor["annotations"] = annotations
    return descriptor


def byproduct_descriptor(item: Mapping[str, Any], index: int, kind: str) -> dict[str, Any]:
    """A byproduct as a ResourceDescriptor; a plain report dict is kept readable in ``annotations`` and its
    RFC 8785 canonical bytes are digested."""
    descriptor_keys = {"name", "uri", "digest", "content", "downloadLocation", "mediaType", "annotations"}
    if item.keys() <= descriptor_keys and item.keys() & {"uri", "digest", "content"}:
        return to_json_value(item)
    report = to_json_value(item)
    default = "filter_report" if kind == "dataset.filtered" and index == 0 else f"byproduct-{index}"
    name = str(report.get("name", default))
    return {
        "name": name,
        "digest": {"sha256": hashlib.sha256(canonical_json(report)).hexdigest()},
        "mediaType": "application/json",
        "annotations": report,
    }


def build_statement(
    artifact: str | Path,
    kind: str,
    parameters: Mapping[str, Any],
    dependencies: Sequence[Dependency] = (),
    byproducts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The in-toto statement for ``artifact`` (which must exist), without writing anything."""
    artifact = named_path(artifact)
    if not _KIND.match(kind):
        raise SublabError(f"kind {kind!r}: use lowercase words with dots, e.g. {', '.join(KINDS[:3])}")
    if not isinstance(parameters, Mapping):
        raise SublabError(f"{artifact}: parameters must be a mapping, not {type(parameters).__name__}")
    record_dir = artifact.parent
    build_definition: dict[str, Any] = {
        "buildType": build_type(kind),
        "externalParameters": to_json_value(parameters),
        "resolvedDependencies": [dependency_descriptor(dep, record_dir) for dep in dependencies],
    }
    run_details: dict[str, Any] = {
        "builder": {"id": BUILDER_ID, "version": {"subliminal-lab": __version__}},
        "metadata": {"finishedOn": _now()},
    }
    if byproducts:
        run_details["byproducts"] = [byproduct_descriptor(b, i, kind) for i, b in enumerate(byproducts)]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects_for(artifact, digest_path(artifact)),
        "predicateType": PREDICATE_TYPE,
        "predicate": {"buildDefinition": build_definition, "runDetails": run_details},
    }


def _auto_model_card(artifact: Path, kind: str, dependencies: Sequence[Dependency]) -> None:
    """Give a trained model directory a model card naming its base and datasets (see ``ensure_model_card``)."""
    if kind not in ("model.student", "model.teacher") or not artifact.is_dir():
        return
    from sublab.lineage.card import ensure_model_card

    bases = [d for d in dependencies if d.role == "base_model"]
    if not bases:
        return
    base = bases[0]
    datasets = [d.name for d in dependencies if d.role == "training_data"]
    relation = "adapter" if (artifact / "adapter_config.json").is_file() else "finetune"
    ensure_model_card(artifact, str(base.annotations.get("family") or base.name), datasets, relation,
                      extra={"tags": ["subliminal-lab", kind]})


def record_artifact(
    artifact: str | Path,
    kind: str,
    parameters: dict[str, Any],
    dependencies: Sequence[Dependency] = (),
    byproducts: Sequence[dict[str, Any]] = (),
    sign_key: str | Path | Ed25519PrivateKey | None = None,
) -> Path:
    """Write ``<artifact>.intoto.jsonl`` beside a file or directory artifact (atomically) and return its path.

    ``kind`` is one of :data:`KINDS` (other lowercase dotted names are accepted); ``parameters`` become
    ``externalParameters``; ``sign_key`` is a PEM Ed25519 private key file or a loaded key. A trained model
    directory also gets a Hugging Face model card (see :func:`sublab.lineage.card.ensure_model_card`).
    """
    artifact = named_path(artifact)
    if not artifact.exists():
        raise SublabError(f"{artifact}: artifact not found, nothing to record")
    key = signing_key(sign_key)
    _auto_model_card(artifact, kind, dependencies)
    statement = build_statement(artifact, kind, parameters, dependencies, byproducts)
    return atomic_write_bytes(record_path(artifact), seal(statement, key))
