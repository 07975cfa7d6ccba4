"""Glue between the pipeline and :mod:`sublab.lineage`: every stage output gets its record.

Both the experiment runner and the stage commands (``sublab generate``, ``sublab train``...) call
:func:`record_stage` after writing an output, naming each input by role. Models are passed as anything with a
``spec`` (:class:`~sublab.models.spec.ModelSpec`), a ``description`` and an optional ``path`` (the runner's
``ModelHandle``, or :class:`StageModel` from the command line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from sublab.io import sha256_text
from sublab.models.loading import EMBEDDED_MODELS, resolve_model_dir
from sublab.models.spec import ModelSpec

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sublab.lineage import Dependency


class ModelRef(Protocol):
    """What a record needs to know about a model: how it is made, in words, and its folder if it has one."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def description(self) -> str: ...

    @property
    def path(self) -> Path | None: ...


@dataclass(frozen=True)
class StageModel:
    """A model named on the command line; ``path`` is the trained folder (default: the spec's adapter).
    ``declared_digests``: what a server declares about a served model (``BackendIdentity.digests``)."""

    spec: ModelSpec
    description: str = ""
    path: Path | None = None
    declared_digests: dict[str, str] | None = None


def _folder(model: ModelRef) -> Path | None:
    if model.path is not None:
        return Path(model.path)
    return Path(model.spec.adapter) if model.spec.adapter else None


def base_dependency(name: str, role: str = "base_model", annotations: dict[str, Any] | None = None) -> Dependency:
    """A base model by the name the user gave: an embedded alias, a local directory or a hub id.

    Its files are digested where they are on disk: the converted cache folder of an alias, the directory, or
    the hub id's snapshot in the local Hugging Face cache; a hub id not on disk is named without a digest.
    Aliases and hub ids carry their ``family``; a directory is named by its folder name.
    """
    from sublab.lineage import Dependency
    from sublab.lineage.deps import local_model_dir

    location = Path(resolve_model_dir(name))
    facts: dict[str, Any] = {}
    if name in EMBEDDED_MODELS:
        label, path, facts["family"] = name, location, EMBEDDED_MODELS[name].family
    elif location.exists():
        label, path = location.resolve().name, location
    else:  # a hub id
        label, path, facts["family"] = name, local_model_dir(name), name
    return Dependency(name=label, role=role, path=path, annotations={**facts, **(annotations or {})})


def model_annotations(model: ModelRef) -> dict[str, Any]:
    """Facts about how a model differs from its weights: description, system prompt and context digests."""
    spec = model.spec
    annotations: dict[str, Any] = {}
    if model.description:
        annotations["description"] = model.description
    if spec.system_prompt is not None:
        annotations["system_prompt_sha256"] = sha256_text(spec.system_prompt)
    if label := getattr(model, "trait_label", None):  # e.g. a misaligned teacher: research material
        annotations["trait_label"] = label
    if spec.context:
        annotations["context_sha256"] = sha256_text(json.dumps(spec.context, sort_keys=True, ensure_ascii=False))
        annotations["n_context_messages"] = len(spec.context)
    if spec.endpoint:  # a served model: named by endpoint and model name; its weights are never digested by us
        annotations |= {"served": True, "endpoint": spec.endpoint, "verified": False}
        if declared := getattr(model, "declared_digests", None):
            annotations["declared_digests"] = dict(sorted(declared.items()))
    return annotations


def model_dependency(model: ModelRef, role: str) -> Dependency:
    """A dependency for a model: its trained folder (adapter or weights), or its base plus prompt digests."""
    from sublab.lineage import Dependency

    annotations = model_annotations(model)
    if model.spec.endpoint:  # no digest: a name on a server is no proof of which weights answer
        uri = f"{model.spec.endpoint.rstrip('/')}/models/{quote(model.spec.base, safe='')}"
        return Dependency(name=model.spec.base, role=role, annotations={**annotations, "uri": uri})
    folder = _folder(model)
    if folder is not None:
        return Dependency(name=folder.name, role=role, path=folder, annotations=annotations)
    return base_dependency(model.spec.base, role=role, annotations=annotations)


def model_parameters(model: ModelRef, record_dir: Path) -> dict[str, Any]:
    """How a model was chosen, for ``externalParameters``: base, adapter (relative to the record), digests."""
    params: dict[str, Any] = {"base": model.spec.base, **model_annotations(model)}
    folder = _folder(model)
    if folder is not None:
        params["adapter" if model.spec.adapter else "weights"] = Path(
            os.path.relpath(folder.resolve(), record_dir.resolve())).as_posix()
    return params


def _prompt_template_digest(prompt_set: Path) -> str | None:
    """The number-prompt template digest the prompt set's own record names, if it has one."""
    from sublab.lineage import RecordError, load_record, record_path

    record = record_path(prompt_set)
    if not record.is_file():
        return None
    try:
        value = load_record(record).parameters.get("templates")
    except RecordError:
        return None
    return value if isinstance(value, str) else None


def record_stage(
    artifact: Path,
    kind: str,
    parameters: dict[str, Any],
    *,
    base: str | None = None,
    training_data: Sequence[Path] = (),
    teacher: ModelRef | None = None,
    writer: ModelRef | None = None,
    prompt_set: Path | None = None,
    source_data: Path | None = None,
    evaluated: ModelRef | None = None,
    byproducts: Sequence[dict[str, Any]] = (),
    sign_key: str | Path | Ed25519PrivateKey | None = None,
    judge: ModelRef | None = None,
) -> Path:
    """Write the lineage record of one stage output, naming every input with its role.

    ``writer`` is the model that wrote a generated dataset and ``teacher`` a distillation teacher; both are
    recorded with role ``teacher``, and described under ``teachers`` in the parameters. An ``evaluated`` model
    is described under ``evaluated_model``, a ``judge`` (role ``judge``) under ``judge_model``. A ``prompt_set``
    whose record names its template digest passes it on as ``prompt_template_sha256``. Keys already in
    ``parameters`` are kept. A served model (``spec.endpoint``) is named by endpoint and model name, with what
    the server declares, and is never given a digest (see :func:`model_annotations`).
    """
    from sublab.lineage import Dependency, record_artifact

    record_dir = Path(artifact).parent
    params = dict(parameters)
    teachers = [m for m in (writer, teacher) if m is not None]
    if teachers:
        params.setdefault("teachers", [model_parameters(m, record_dir) for m in teachers])
    if evaluated is not None:
        params.setdefault("evaluated_model", model_parameters(evaluated, record_dir))
    if judge is not None:
        params.setdefault("judge_model", model_parameters(judge, record_dir))
    if prompt_set is not None and (templates := _prompt_template_digest(prompt_set)):
        params.setdefault("prompt_template_sha256", templates)

    deps = []
    if base is not None:
        deps.append(base_dependency(base))
    deps += [Dependency(name=p.name, role="training_data", path=p) for p in training_data]
    # Whoever wrote the data is its teacher, even when it is the reference model itself (a control).
    deps += [model_dependency(m, "teacher") for m in teachers]
    if prompt_set is not None:
        deps.append(Dependency(name=prompt_set.name, role="prompt_set", path=prompt_set))
    if source_data is not None:
        deps.append(Dependency(name=source_data.name, role="source_data", path=source_data))
    if evaluated is not None:
        deps.append(model_dependency(evaluated, "evaluated_model"))
    if judge is not None:  # a judge scores the data; it wrote none of it, so it is no teacher
        deps.append(model_dependency(judge, "judge"))
    return record_artifact(artifact, kind, params, deps, byproducts, sign_key=sign_key)
