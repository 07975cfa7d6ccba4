"""Glue between the experiment runner and :mod:`sublab.lineage`: every stage output gets its record."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sublab.models.loading import EMBEDDED_MODELS, resolve_model_dir

if TYPE_CHECKING:
    from sublab.experiments.runner import ModelHandle


def _base_dependency(name: str, role: str = "base_model", annotations: dict[str, Any] | None = None) -> Any:
    from sublab.lineage import Dependency

    location = resolve_model_dir(name)
    path = Path(location) if Path(location).exists() else None
    family = EMBEDDED_MODELS[name].family if name in EMBEDDED_MODELS else name
    return Dependency(name=name, role=role, path=path, annotations={"family": family, **(annotations or {})})


def model_dependency(handle: ModelHandle, role: str) -> Any:
    """A dependency for a model handle: its adapter/weights folder, or its base plus a system-prompt digest."""
    from sublab.lineage import Dependency

    spec = handle.spec
    annotations: dict[str, Any] = {"description": handle.description}
    if spec.system_prompt is not None:
        annotations["system_prompt_sha256"] = hashlib.sha256(spec.system_prompt.encode()).hexdigest()
    if handle.path is not None:
        return Dependency(name=handle.path.name, role=role, path=handle.path, annotations=annotations)
    return _base_dependency(spec.base, role=role, annotations=annotations)


def record_stage(
    artifact: Path,
    kind: str,
    parameters: dict[str, Any],
    *,
    base: str | None = None,
    training_data: list[Path] = (),  # type: ignore[assignment]
    teacher: ModelHandle | None = None,
    writer: ModelHandle | None = None,
    prompt_set: Path | None = None,
    source_data: Path | None = None,
    evaluated: ModelHandle | None = None,
    byproducts: list[dict[str, Any]] = (),  # type: ignore[assignment]
    sign_key: str | None = None,
) -> Path:
    """Write the lineage record of one stage output, naming every input with its role."""
    from sublab.lineage import Dependency, record_artifact

    deps = []
    if base is not None:
        deps.append(_base_dependency(base))
    deps += [Dependency(name=p.name, role="training_data", path=p) for p in training_data]
    if teacher is not None:
        deps.append(model_dependency(teacher, "teacher"))
    if writer is not None:
        # Whoever wrote the data is its teacher, even when it is the reference model itself (a control).
        deps.append(model_dependency(writer, "teacher"))
    if prompt_set is not None:
        deps.append(Dependency(name=prompt_set.name, role="prompt_set", path=prompt_set))
    if source_data is not None:
        deps.append(Dependency(name=source_data.name, role="source_data", path=source_data))
    if evaluated is not None:
        deps.append(model_dependency(evaluated, "evaluated_model"))
    return record_artifact(artifact, kind, parameters, deps, byproducts, sign_key=sign_key)
