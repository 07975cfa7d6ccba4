"""Shared fixtures: a tiny random-weight chat model with a character-level tokenizer (builds in a second)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_models import build_char_tokenizer, build_tiny_model  # noqa: F401  (re-exported for tests)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random chat model (session-wide)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second tiny model with a different random initialization."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model-b"), seed=1))


@pytest.fixture(scope="session")
def plain_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny base model without a chat template (another base, another response layout)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-plain"), seed=2, chat=False))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests from writing to the user's cache, except the converted embedded model (slow to redo)."""
    if "SUBLAB_CACHE" not in os.environ:
        monkeypatch.setenv("SUBLAB_CACHE", str(Path.home() / ".cache" / "sublab"))
