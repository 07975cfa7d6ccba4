"""Models and data named by the user: a path, an embedded alias or a hub id, maybe ``@sha256:HEX``."""

from __future__ import annotations

from pathlib import Path

from sublab.errors import SublabError
from sublab.lineage.digests import is_sha256
from sublab.lineage.statement import Dependency
from sublab.models.loading import EMBEDDED_MODELS, cache_root


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face id (``owner/name``)."""
    return name.count("/") == 1 and not name.startswith((".", "/")) and "" not in name.split("/")


def local_model_dir(name: str) -> Path | None:
    """The folder on this machine that holds model ``name``, if any, without downloading or converting.

    An embedded alias is its converted cache folder; a hub id is its snapshot of the ``main`` revision in the
    local Hugging Face cache (the files ``from_pretrained`` fetched). Anything else gives ``None``.
    """
    if name in EMBEDDED_MODELS:
        folder = cache_root() / "models" / name
        return folder if (folder / "config.json").is_file() else None
    if not is_hub_id(name):
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id after all
        return None
    return Path(config).parent if isinstance(config, str) else None


def parse_dependency(spec: str, role: str) -> Dependency:
    """Turn ``NAME_OR_PATH[@sha256:HEX]`` into a :class:`Dependency` with ``role``.

    An existing path is digested; an embedded alias (``smollm2-135m``) or a hub id uses its local copy when
    present (see :func:`local_model_dir`) and carries its family; anything else is a declared name.
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
    elif is_hub_id(name):
        annotations["family"] = name
    return Dependency(name=name, role=role, path=local_model_dir(name), digest=digests, annotations=annotations)
