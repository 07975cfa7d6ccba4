"""Dependencies named on the command line: a path, an embedded alias or a hub id, maybe ``@sha256:HEX``."""

from __future__ import annotations

from pathlib import Path

from sublab.errors import SublabError
from sublab.lineage.digests import is_sha256
from sublab.lineage.statement import Dependency
from sublab.models.loading import EMBEDDED_MODELS, cache_root


def parse_dependency(spec: str, role: str) -> Dependency:
    """Turn ``NAME_OR_PATH[@sha256:HEX]`` into a :class:`Dependency` with ``role``.

    An existing path is digested; an embedded alias (``smollm2-135m``) uses its converted cache directory when
    present (never converting it here) and carries its family; anything else is a declared name.
    """
    name, _, digest = spec.partition("@sha256:")
    if not name:
        raise SublabError(f"{spec!r}: empty name")
    if digest and not is_sha256(digest.lower()):
        raise SublabError(f"{spec!r}: sha256 must be 64 hex digits")
    digests = {"sha256": digest.lower()} if digest else None
    path = Path(name).expanduser()
    if path.exists():
        return Dependency(name=path.name or name, role=role, path=path, digest=digests)
    annotations = {}
    if name in EMBEDDED_MODELS:
        annotations["family"] = EMBEDDED_MODELS[name].family
        cached = cache_root() / "models" / name
        if (cached / "config.json").is_file():
            return Dependency(name=name, role=role, path=cached, digest=digests, annotations=annotations)
    elif name.count("/") == 1 and not name.startswith((".", "/")):
        annotations["family"] = name
    return Dependency(name=name, role=role, digest=digests, annotations=annotations)
