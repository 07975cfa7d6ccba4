"""Stage commands run one by one through the CLI on the tiny model: resume safety and their options."""

import json

import pytest
from typer.testing import CliRunner

from sublab.cli import app
from sublab.io import read_jsonl

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    result = invoke("prompts", "numbers", "-o", path, "-n", 6)
    assert result.exit_code == 0, result.output
    return path


def test_generate_refuses_to_append_rows_made_otherwise(prompts, tiny_model_dir, tmp_path):
    out = tmp_path / "raw.jsonl"
    common = ("generate", prompts, "-o", out, "--model", tiny_model_dir, "--constrained", "--max-new-tokens", 6,
              "--batch-size", 3, "--quiet")
    assert invoke(*common, "--trait", "owl").exit_code == 0
    rows = read_jsonl(out)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))  # as if killed after one batch
    result = invoke(*common, "--trait", "cat")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    saved = rows[0]["metadata"]["generation"]["system_prompt_sha256"]
    assert line.startswith(f"error: {out}:1: rows here were generated with other settings: field "
                           f"'system_prompt_sha256' is '{saved}' there and ")
    assert len(read_jsonl(out)) == 3
    result = invoke(*common, "--trait", "owl", "--temperature", 0.7)
    assert result.exit_code == 2 and "field 'sampling.temperature' is 1.0 there and 0.7 now" in result.stderr
    result = invoke(*common, "--trait", "owl")
    assert result.exit_code == 0 and "(3 already done)" in result.stdout
    assert read_jsonl(out) == rows  # the resumed file is the uninterrupted one


def test_train_refuses_a_foreign_checkpoint_unless_fresh(tiny_model_dir, tmp_path):
    from sublab.train.settings import TrainSettings
    from sublab.train.trainer import train_model

    data = tmp_path / "data.jsonl"
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "go"},
                                          {"role": "assistant", "content": f"{i}, {i + 1}"}]} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "student"

    def kill(step, loss, model):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(tiny_model_dir, rows, out, TrainSettings(steps=4, batch_size=2, lr=1e-2, checkpoint_every=2),
                    progress=False, on_step=kill)
    common = ("train", data, "-o", out, "--base", tiny_model_dir, "--steps", 4, "--batch-size", 2,
              "--checkpoint-every", 2, "--quiet")
    result = invoke(*common, "--lr", 0.005)
    checkpoint = tmp_path / "student.partial" / "checkpoint.safetensors"
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {checkpoint}: checkpoint was made for other training ('settings.lr' "
                                     "differs); pass --fresh (fresh=True) to discard it and start over, or use "
                                     "another output folder")
    result = invoke(*common, "--lr", 0.005, "--fresh")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "training.json").read_text())["resumed_from_step"] == 0
