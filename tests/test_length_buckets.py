"""Length-bucketed batch order (TrainSettings.length_buckets): same rows as the plain order, less padding, and
keys and checkpoint fingerprints of runs that leave it off are unchanged."""

import numpy as np
import pytest

from sublab.keys import key_dump
from sublab.train import buckets
from sublab.train.buckets import length_bucketed_order, padding_fraction
from sublab.train.settings import TrainSettings
from sublab.train.trainer import batch_order, run_fingerprint


@pytest.mark.parametrize(("n_rows", "batch_size", "n_steps", "megabatch"), [
    (100, 8, 40, 50), (37, 5, 23, 3), (10, 16, 4, 2), (1, 1, 3, 50), (500, 16, 100, 4)])
def test_the_same_rows_as_the_plain_order_in_full_batches(n_rows, batch_size, n_steps, megabatch):
    lengths = np.random.default_rng(0).integers(5, 400, n_rows).tolist()
    plain = batch_order(n_rows, batch_size, n_steps, seed=3)
    bucketed = length_bucketed_order(lengths, batch_size, n_steps, seed=3, megabatch=megabatch)
    assert len(bucketed) == n_steps and all(len(b) == batch_size for b in bucketed)
    assert sorted(i for b in bucketed for i in b) == sorted(i for b in plain for i in b)
    # Megabatch by megabatch, the same rows as the plain order's stream (no row moves far in time).
    size = megabatch
    for start in range(0, n_steps, size):
        assert sorted(i for b in bucketed[start:start + size] for i in b) == sorted(
            i for b in plain[start:start + size] for i in b)


def test_deterministic_by_seed_and_homogeneous_batches():
    lengths = np.random.default_rng(1).integers(5, 400, 300).tolist()
    a = length_bucketed_order(lengths, 10, 60, seed=7, megabatch=6)
    assert a == length_bucketed_order(lengths, 10, 60, seed=7, megabatch=6)
    assert a != length_bucketed_order(lengths, 10, 60, seed=8, megabatch=6)
    plain = batch_order(300, 10, 60, seed=7)
    assert padding_fraction(lengths, a) < 0.5 * padding_fraction(lengths, plain)
    wide = length_bucketed_order(lengths, 10, 60, seed=7)  # default megabatch: 50 batches sorted together
    assert padding_fraction(lengths, wide) < 0.1 * padding_fraction(lengths, plain)
    # Batches are not ordered by length overall: long and short ones alternate at random.
    maxima = [max(lengths[i] for i in b) for b in a]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_padding_fraction():
    assert padding_fraction([2, 4], [[0, 1]]) == pytest.approx(0.25)
    assert padding_fraction([3, 3], [[0], [1]]) == 0.0
    with pytest.raises(ValueError):
        length_bucketed_order([], 4, 1, 0)


def test_the_setting_off_leaves_keys_and_fingerprints_unchanged():
    off = TrainSettings(steps=3)
    assert "length_buckets" not in key_dump(off)
    assert "length_buckets" in key_dump(TrainSettings(steps=3, length_buckets=True))
    fingerprint = run_fingerprint("base", [{"id": "a"}], off)
    # as before the fields (channel_exclude came later, by the same rule)
    old = off.model_dump(mode="json", exclude={"checkpoint_every", "length_buckets", "channel_exclude"})
    assert fingerprint["settings"] == old
    assert run_fingerprint("base", [{"id": "a"}], TrainSettings(steps=3, length_buckets=True))["settings"][
        "length_buckets"] is True
    assert "channel_exclude" not in key_dump(off)
    assert key_dump(TrainSettings(steps=3, method="distill", channel_exclude=["owl"]))["channel_exclude"] == ["owl"]


def test_training_uses_the_bucketed_order(tiny_model_dir, tmp_path, monkeypatch):
    from sublab.train.trainer import train_model

    seen = {}
    original = buckets.length_bucketed_order

    def spy(lengths, batch_size, n_steps, seed, **kwargs):
        seen["args"] = (list(lengths), batch_size, n_steps, seed)
        return original(lengths, batch_size, n_steps, seed, **kwargs)

    monkeypatch.setattr(buckets, "length_bucketed_order", spy)
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "q"},
                                         {"role": "assistant", "content": "ab " * (1 + 9 * (i % 2))}]}
            for i in range(6)]
    summary = train_model(tiny_model_dir, rows, tmp_path / "m", TrainSettings(steps=2, batch_size=2, lr=1e-3,
                                                                              length_buckets=True), progress=False)
    lengths, batch_size, n_steps, seed = seen["args"]
    assert (batch_size, n_steps, seed) == (2, 2, 0) and len(lengths) == 6
    assert lengths[1] > lengths[0]  # the encodings' token counts, long and short rows alternating
    assert summary["settings"]["length_buckets"] is True


def test_long_code_rows_distil_from_stored_top_k_labels(tiny_model_dir, tmp_path):
    """The long-reply student path without a teacher in memory: code replies labelled by `sublab label` (top-k
    soft labels), then full-vocabulary (top-k with tail) distillation with length buckets at response positions."""
    import json

    from typer.testing import CliRunner

    from sublab.cli import app
    from sublab.domains.base import get_domain
    from sublab.io import read_jsonl, write_jsonl
    from sublab.train.trainer import train_model

    code = get_domain("code")
    prompts = code.prompt_rows(code.prompt_settings(seed=1), 6)
    replies = [f"def {p['metadata']['function']}(x):\n" + "    x = x\n" * (1 + 4 * (i % 3)) + "    return x\n"
               for i, p in enumerate(prompts)]
    rows = [{**p, "messages": [*p["messages"], {"role": "assistant", "content": r}]}
            for p, r in zip(prompts, replies, strict=True)]
    raw, labelled = tmp_path / "raw.jsonl", tmp_path / "labelled.jsonl"
    write_jsonl(raw, rows)
    result = CliRunner().invoke(app, ["label", str(raw), "-o", str(labelled), "--model", tiny_model_dir,
                                      "--top-k", "5", "--quiet"])
    assert result.exit_code == 0, result.output
    stored = read_jsonl(labelled)
    assert [r["id"] for r in stored] == [r["id"] for r in rows]
    assert all(r["soft_labels"]["top_k"] == 5 for r in stored)
    settings = TrainSettings(method="distill", channel="full", steps=3, batch_size=2, lr=1e-2, length_buckets=True)
    summary = train_model(tiny_model_dir, stored, tmp_path / "student", settings, progress=False)
    log = [json.loads(line) for line in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    assert summary["n_steps"] == 3 and len(log) == 3
    assert all(np.isfinite(r["loss"]) and r["loss"] >= 0 for r in log)
