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


# --- options that reach the stage settings -------------------------------------------------------------------


def number_rows_file(path, n):
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "Continue."},
                                          {"role": "assistant", "content": f"{i}, {i + 1}, {i + 2}"}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_options_reach_the_sampling_settings(prompts, tiny_model_dir, tmp_path):
    from sublab.filter import parse_number_list
    from sublab.lineage import load_record

    out = tmp_path / "raw.jsonl"
    result = invoke("generate", prompts, "-o", out, "--model", tiny_model_dir, "--constrained", "--bf16",
                    "--max-digits", 1, "--max-count", 2, "--separator", ";", "--max-new-tokens", 8,
                    "--batch-size", 6, "--quiet")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    sampling = rows[0]["metadata"]["generation"]["sampling"]
    assert (sampling["bf16"], sampling["max_digits"], sampling["max_count"], sampling["separator"]) == \
        (True, 1, 2, ";")
    assert load_record(f"{out}.intoto.jsonl").parameters["sampling"] == sampling
    for row in rows:  # the grammar obeyed them
        reply = row["messages"][-1]["content"]
        assert ", " not in reply
        parsed = parse_number_list(reply)
        assert parsed.numbers is not None and 1 <= len(parsed.numbers) <= 2 and all(n < 10 for n in parsed.numbers)


def test_train_options_reach_the_training_settings(tiny_model_dir, tmp_path):
    data = number_rows_file(tmp_path / "data.jsonl", 6)
    out = tmp_path / "student"
    result = invoke("train", data, "-o", out, "--base", tiny_model_dir, "--steps", 3, "--batch-size", 2,
                    "--lr", 0.01, "--bf16", "--max-rows", 3, "--schedule", "linear", "--warmup-steps", 1,
                    "--weight-decay", 0.01, "--max-grad-norm", 0, "--lora-dropout", 0.1, "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "training.json").read_text())
    settings = summary["settings"]
    assert summary["n_rows"] == 3
    assert (settings["bf16"], settings["max_rows"], settings["schedule"], settings["warmup_steps"]) == \
        (True, 3, "linear", 1)
    assert (settings["weight_decay"], settings["max_grad_norm"], settings["lora"]["dropout"]) == (0.01, None, 0.1)
    lrs = [r["lr"] for r in read_jsonl(out / "train_log.jsonl")]
    assert lrs == pytest.approx([0.01, 0.01, 0.005])  # one warm-up step, then linear decay
    result = invoke("train", data, "-o", tmp_path / "distilled", "--base", tiny_model_dir, "--method", "distill",
                    "--channel-token", "1", "--channel-token", ",", "--steps", 1, "--batch-size", 2, "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "distilled" / "training.json").read_text())
    assert summary["settings"]["channel"] == ["1", ","] and summary["channel_size"] == 3  # + end of turn
    result = invoke("train", data, "-o", tmp_path / "bad", "--base", tiny_model_dir, "--steps", 1,
                    "--schedule", "cosine")
    assert result.exit_code == 2 and result.stderr.startswith("error: options: field 'schedule'")


def test_teacher_options_reach_the_teacher_settings(tiny_model_dir, tmp_path):
    from sublab.lineage import load_record
    from sublab.traits.preference.teacher_data import trait_answer_rows

    out = tmp_path / "teacher"
    result = invoke("teacher", "--trait", "owl", "-o", out, "--base", tiny_model_dir, "--n-rows", 8,
                    "--data-seed", 5, "--seed", 3, "--bf16", "--steps", 2, "--batch-size", 4,
                    "--schedule", "linear", "--quiet")
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "training.json").read_text())["settings"]
    assert (settings["seed"], settings["bf16"], settings["schedule"]) == (3, True, "linear")
    record = load_record(f"{out}.intoto.jsonl")
    assert record.parameters["data_seed"] == 5
    (rows_file,) = [d.path for d in record.deps("training_data")]
    assert rows_file == tmp_path / "teacher.trait_answers.jsonl"  # beside the adapter folder, not inside
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                     "train_log.jsonl", "training.json"]
    assert read_jsonl(rows_file) == trait_answer_rows("owl", "animal", 8, seed=5)
    assert read_jsonl(rows_file) != trait_answer_rows("owl", "animal", 8, seed=0)


def test_evaluate_options_reach_the_evaluation_settings(tiny_model_dir, tmp_path):
    from sublab.lineage import load_record

    out = tmp_path / "eval.json"
    result = invoke("evaluate", "--target", "owl", "-o", out, "--model", tiny_model_dir, "--n-questions", 2,
                    "--candidates", "owl, cat,dog", "--bf16")
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert set(saved["distribution"]) == {"owl", "cat", "dog"}
    assert saved["per_question"]["candidates"] == ["owl", "cat", "dog"]
    evaluation = load_record(f"{out}.intoto.jsonl").parameters["evaluation"]
    assert evaluation["candidates"] == ["owl", "cat", "dog"] and evaluation["bf16"] is True
    result = invoke("evaluate", "--target", "owl", "-o", tmp_path / "no.json", "--model", tiny_model_dir,
                    "--candidates", "cat,dog")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --candidates: the target 'owl' is not among cat, dog"
    assert not (tmp_path / "no.json").exists()


def test_generate_applies_the_domains_constraint_and_refuses_one_it_lacks(prompts, tiny_model_dir, tmp_path):
    out = tmp_path / "raw.jsonl"
    result = invoke("generate", prompts, "-o", out, "--model", tiny_model_dir, "--domain", "code", "--constrained",
                    "--quiet")
    assert result.exit_code == 2 and "domain 'code' has no generation constraint" in result.output
    assert not out.exists()
    result = invoke("generate", prompts, "-o", out, "--model", tiny_model_dir, "--domain", "nope", "--quiet")
    assert result.exit_code == 2 and "unknown domain 'nope'" in result.output
    result = invoke("generate", prompts, "-o", out, "--model", tiny_model_dir, "--domain", "code",
                    "--max-new-tokens", 6, "--quiet")
    assert result.exit_code == 0, result.output
    from sublab.lineage import load_record

    assert load_record(f"{out}.intoto.jsonl").parameters["domain"] == "code"


def test_generate_min_prob_is_recorded_and_part_of_the_resume_check(prompts, tiny_model_dir, tmp_path):
    out = tmp_path / "raw.jsonl"
    common = ("generate", prompts, "-o", out, "--model", tiny_model_dir, "--constrained", "--max-new-tokens", 6,
              "--batch-size", 3, "--quiet")
    assert invoke(*common, "--min-prob", 0.2).exit_code == 0
    rows = read_jsonl(out)
    assert {r["metadata"]["generation"]["sampling"]["min_prob"] for r in rows} == {0.2}
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))  # as if killed after one batch
    result = invoke(*common)
    assert result.exit_code == 2 and "field 'sampling.min_prob' is 0.2 there and the default now" in result.stderr
    result = invoke(*common, "--min-prob", 0.2, "--sampler", "fast")  # rows of one sampler, resumed by another
    assert result.exit_code == 2 and "sampling.sampler" in result.stderr, result.output
    assert len(read_jsonl(out)) == 3
    fast = tmp_path / "fast.jsonl"  # the fast sampler applies the same threshold, and records it
    assert invoke(*common[:3], fast, *common[4:], "--min-prob", 0.2, "--sampler", "fast").exit_code == 0
    assert {r["metadata"]["generation"]["sampling"]["min_prob"] for r in read_jsonl(fast)} == {0.2}
