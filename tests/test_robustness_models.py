"""A hub model id that is not on disk, offline: one line at once, not a minute of retries and a traceback
(defect 13 of issue 10); a hub id that is in the local cache loads without the network."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sublab.errors import SublabError
from sublab.models.loading import load_model, load_tokenizer, pretrained_source

FAKE = "nobody-sublab-test/no-such-model"


def run_cli(args, **env):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sublab", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    return done, time.monotonic() - started


@pytest.fixture
def no_hub_env(monkeypatch, tmp_path):
    """An empty Hugging Face cache, so nothing this machine downloaded can answer for the fake id."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def test_an_unknown_hub_id_offline_is_one_fast_line(tmp_path):
    out = tmp_path / "eval.json"
    done, seconds = run_cli(["evaluate", "--target", "owl", "-o", str(out), "--model", FAKE],
                            HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hf-cache"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == (f"error: model '{FAKE}': not found locally and no network (HF_HUB_OFFLINE=1 is "
                                   "set); download it first or name a local model folder")
    assert seconds < 60 and not out.exists()  # (the old code: 87 lines of traceback)


def test_an_unknown_hub_id_with_the_hub_unreachable_does_not_wait_on_retries(tmp_path):
    # Port 9 on the loopback refuses at once: the hub is unreachable, as on a machine without network.
    done, seconds = run_cli(["teacher", "--trait", "owl", "-o", str(tmp_path / "t"), "--base", FAKE, "--quiet"],
                            HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "hf-cache"))
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line == (f"error: model '{FAKE}': not found locally and no network (127.0.0.1 unreachable); download it "
                    "first, name a local model folder, or set HF_HUB_OFFLINE=1 to skip the look-up")
    assert seconds < 60  # (the old code: about 50 s of retries, then 74 lines of traceback)


def test_offline_is_honoured_when_set_after_the_hub_was_imported(no_hub_env, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    for load in (load_tokenizer, load_model):
        with pytest.raises(SublabError, match=r"not found locally and no network \(HF_HUB_OFFLINE=1 is set\)"):
            load(FAKE)
    assert time.monotonic() - started < 5


def test_a_hub_id_in_the_local_cache_loads_offline(no_hub_env, monkeypatch, tiny_model_dir):
    """The cache is looked up first: a downloaded model needs no network, whatever HF_HUB_OFFLINE says."""
    snapshot = no_hub_env / "models--someone--tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (no_hub_env / "models--someone--tiny" / "refs").mkdir()
    (no_hub_env / "models--someone--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # any network use would fail
    assert Path(pretrained_source("someone/tiny")) == snapshot
    tokenizer = load_tokenizer("someone/tiny")
    model = load_model("someone/tiny")
    assert tokenizer("ab").input_ids and model.config.hidden_size == 32
