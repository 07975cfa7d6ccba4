"""Training never deletes what it did not write (defect 1 of issue 10), and identical trainings give identical
adapters (canonical PEFT adapter config)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sublab.cli import app
from sublab.errors import SublabError
from sublab.train.settings import TrainSettings
from sublab.train.trainer import train_model

ROWS = [{"id": f"r{i}", "messages": [{"role": "user", "content": "go"},
                                      {"role": "assistant", "content": f"{i}, {i + 1}"}]} for i in range(4)]
SETTINGS = TrainSettings(steps=2, batch_size=2, lr=1e-2)


def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_folder_that_is_not_a_previous_output_is_never_deleted(tiny_model_dir, tmp_path):
    data = data_file(tmp_path)
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    (mine / "training.json").write_text('{"base": "x", "settings": {}, "n_steps": 1}')  # looks like ours, isn't
    before = tree(tmp_path)
    result = CliRunner().invoke(app, ["train", str(data), "-o", str(mine), "--base", tiny_model_dir, "--steps", "1",
                                      "--batch-size", "2", "--quiet"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {mine}: folder is not empty and is not a model trained here (it holds "
                                     "chapter1.tex); refusing to replace it: name a new output folder")
    assert tree(tmp_path) == before
    with pytest.raises(SublabError, match="not a model trained here"):
        train_model(tiny_model_dir, ROWS, tmp_path, SETTINGS, progress=False)
    assert tree(tmp_path) == before


def test_dot_and_dotdot_are_refused_with_one_line(tiny_model_dir, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    data = data_file(work)
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    for out in (".", ".."):
        result = CliRunner().invoke(app, ["train", str(data), "-o", out, "--base", tiny_model_dir, "--steps", "1",
                                          "--quiet"])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {out}") or line.startswith(f"error: {Path(out).resolve()}"), line
        assert "Traceback" not in result.output
    for out in (".", ".."):
        with pytest.raises(SublabError, match="not a model trained here"):
            train_model(tiny_model_dir, ROWS, out, SETTINGS, progress=False)
    assert tree(tmp_path) == before


def test_a_previous_output_is_recognised_and_replaced(tiny_model_dir, tmp_path):
    out = tmp_path / "student"
    train_model(tiny_model_dir, ROWS, out, SETTINGS, progress=False)
    first = tree(out)
    (out / "README.md").write_text("a model card")
    summary = train_model(tiny_model_dir, ROWS, out, SETTINGS.model_copy(update={"lr": 5e-3}), progress=False)
    assert summary["settings"]["lr"] == 5e-3
    assert set(tree(out)) == set(first) and (out / "README.md").read_text() != "a model card"
    assert json.loads((out / "training.json").read_text())["settings"]["lr"] == 5e-3
    assert not out.with_name("student.partial").exists()
    (out / "notes.txt").write_text("mine")  # a user's file inside a previous output: no longer ours alone
    with pytest.raises(SublabError, match=r"student: folder is not empty .* \(it holds notes.txt\)"):
        train_model(tiny_model_dir, ROWS, out, SETTINGS, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_foreign_partial_folder_is_not_deleted(tiny_model_dir, tmp_path):
    partial = tmp_path / "student.partial"
    partial.mkdir()
    (partial / "results.csv").write_text("someone else's")
    for fresh in (False, True):
        with pytest.raises(SublabError, match=r"student.partial: is not a checkpoint folder of sublab \(it holds "
                                              r"results.csv\)"):
            train_model(tiny_model_dir, ROWS, tmp_path / "student", SETTINGS, progress=False, fresh=fresh)
    assert (partial / "results.csv").read_text() == "someone else's"


def test_a_kill_while_the_previous_output_is_set_aside_loses_nothing(tiny_model_dir, tmp_path, monkeypatch):
    import sublab.train.trainer as trainer

    out = tmp_path / "student"
    train_model(tiny_model_dir, ROWS, out, SETTINGS, progress=False)
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if Path(dst).name == "previous":
            raise KeyboardInterrupt  # killed right after the old output moved aside

    monkeypatch.setattr(trainer.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_model(tiny_model_dir, ROWS, out, SETTINGS, progress=False)
    monkeypatch.setattr(trainer.os, "replace", real_replace)
    assert not out.exists() and (out.with_name("student.partial") / "previous" / "training.json").is_file()
    train_model(tiny_model_dir, ROWS, out, SETTINGS, progress=False)  # the rerun finishes the job
    assert (out / "adapter_model.safetensors").is_file() and not out.with_name("student.partial").exists()


TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys
    from sublab.train.settings import TrainSettings
    from sublab.train.trainer import train_model
    rows = json.loads(sys.argv[3])
    train_model(sys.argv[1], rows, sys.argv[2], TrainSettings(steps=2, batch_size=2, lr=1e-2), progress=False)
""")


def test_identical_trainings_give_byte_identical_adapters(tiny_model_dir, tmp_path):
    """PEFT writes target_modules in set order, which depends on the process's hash seed: two identical runs gave
    adapters with different digests. Run twice with different hash seeds; the adapters must be the same bytes."""
    from sublab.generate.run import model_identity
    from sublab.models.spec import ModelSpec

    outs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"adapter-{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, tiny_model_dir, str(out), json.dumps(ROWS)], env=env,
                       check=True, capture_output=True, timeout=300)
        outs.append(out)
    configs = [(out / "adapter_config.json").read_bytes() for out in outs]
    assert configs[0] == configs[1]
    modules = json.loads(configs[0])["target_modules"]
    assert modules == sorted(modules) and len(modules) == 7
    assert (outs[0] / "adapter_model.safetensors").read_bytes() == (outs[1] / "adapter_model.safetensors").read_bytes()
    identities = {model_identity(ModelSpec(base=tiny_model_dir, adapter=str(out))) for out in outs}
    assert len(identities) == 1


def test_a_canonical_adapter_still_loads_as_the_trained_model(tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel

    from sublab.models.loading import load_model

    out = tmp_path / "adapter"
    train_model(tiny_model_dir, ROWS, out, SETTINGS, progress=False)
    model = PeftModel.from_pretrained(load_model(tiny_model_dir), str(out))
    assert sorted(model.peft_config["default"].target_modules) == json.loads(
        (out / "adapter_config.json").read_text())["target_modules"]
    ids = torch.tensor([[3, 4, 5, 6]])
    assert not torch.equal(model(input_ids=ids).logits, load_model(tiny_model_dir)(input_ids=ids).logits)
