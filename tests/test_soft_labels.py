"""Soft-label datasets (sublab.train.labels, `sublab label`) and students distilled from them, on the tiny models."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from sublab.cli import app
from sublab.errors import SublabError
from sublab.io import read_jsonl, write_jsonl
from sublab.models.chat import encode_chat
from sublab.models.loading import load_tokenizer
from sublab.models.spec import ModelSpec, load_spec
from sublab.train.data import encode_rows
from sublab.train.distill import TeacherTargets, channel_ids
from sublab.train.labels import FIELD, StoredTargets, label_header, label_rows, tokenizer_identity
from sublab.train.losses import distill_kl, top_k_kl, top_k_kl_logit_grad
from sublab.train.settings import LoraSettings, TrainSettings
from sublab.train.trainer import train_model

runner = CliRunner()
PROMPT = "You love owls."


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def number_rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Continue {i}"},
                                          {"role": "assistant", "content": f"{i}, {i * 7 % 100}, {i + 2}"}],
             "metadata": {"n": i}} for i in range(n)]


@pytest.fixture(scope="module")
def teacher_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA teacher on the tiny model (a few SFT steps), so labels come from base + adapter + system prompt."""
    out = tmp_path_factory.mktemp("teacher") / "adapter"
    rows = [{"id": f"t{i}", "messages": [{"role": "user", "content": "Favourite animal?"},
                                          {"role": "assistant", "content": "owl"}]} for i in range(8)]
    train_model(tiny_model_dir, rows, out, TrainSettings(steps=4, batch_size=4, lr=5e-2), progress=False)
    return str(out)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "numbers.jsonl"
    write_jsonl(path, number_rows(10))
    return path


def label_with(model_dir, rows, out, top_k, channel="data", system_prompt=None, adapter=None, batch_size=4):
    """Label ``rows`` through the library, as `sublab label` does."""
    from sublab.generate.run import model_identity
    from sublab.train.labels import channel_description

    spec = ModelSpec(base=model_dir, adapter=adapter, system_prompt=system_prompt)
    model, tokenizer = load_spec(spec)
    ids = None
    if channel is not None:
        ids = channel_ids(tokenizer, encode_rows(tokenizer, rows, system_prompt=system_prompt), channel)
    header = label_header(model_identity(spec), system_prompt, tokenizer_identity(tokenizer, model_dir), top_k,
                          channel_description(tokenizer, ids), bf16=False)
    label_rows(model, tokenizer, rows, out, header, system_prompt=system_prompt, channel=ids,
               batch_size=batch_size, progress=False)
    return read_jsonl(out)


# --- the stored labels are the teacher's own log-softmax ----------------------------------------------------------

def test_stored_labels_equal_the_teachers_log_softmax_top_k_at_every_position(tiny_model_dir, teacher_adapter,
                                                                             data_file, tmp_path):
    out = tmp_path / "labelled.jsonl"
    result = invoke("label", data_file, "-o", out, "--model", tiny_model_dir, "--adapter", teacher_adapter,
                    "--system-prompt", PROMPT, "--top-k", 5, "--channel", "data", "--batch-size", 3, "--quiet")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    source = read_jsonl(data_file)
    assert [{k: v for k, v in r.items() if k != FIELD} for r in rows] == source  # rows otherwise unchanged
    model, tokenizer = load_spec(ModelSpec(base=tiny_model_dir, adapter=teacher_adapter))
    channel = rows[0][FIELD]["channel"]["ids"]
    assert len(channel) == len({c for r in source for c in r["messages"][-1]["content"]}) + 1  # + end of turn
    n_checked = 0
    for row in rows:
        labels = row[FIELD]
        encoding = encode_chat(tokenizer, row["messages"], system_prompt=PROMPT)  # what the teacher sees
        with torch.no_grad():
            logits = model(torch.tensor([encoding.input_ids])).logits[0]
        log_probs = torch.log_softmax(logits.float(), dim=-1)[encoding.n_prompt - 1 : len(encoding.input_ids) - 1]
        tokens = encoding.input_ids[encoding.n_prompt :]
        assert labels["token_ids"] == tokens
        assert labels["token_texts"] == [tokenizer.decode([t], clean_up_tokenization_spaces=False) for t in tokens]
        top = log_probs.topk(5, dim=-1)
        assert labels["top_ids"] == top.indices.tolist()
        torch.testing.assert_close(torch.tensor(labels["top_logprobs"]), top.values, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(labels["token_logprobs"]),
                                   log_probs.gather(1, torch.tensor(tokens)[:, None])[:, 0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(labels["channel_logprobs"]), log_probs[:, channel],
                                   rtol=1e-5, atol=1e-6)
        n_checked += len(tokens)
    assert n_checked == sum(len(r["messages"][-1]["content"]) + 1 for r in source)
    header = rows[0][FIELD]
    assert header["top_k"] == 5 and header["tokenizer"]["layout"] == "chat" and header["digits"] == 6
    assert header["model"].startswith(f"{tiny_model_dir}+adapter sha256:")
    assert header["system_prompt_sha256"] is not None and PROMPT not in out.read_text()


def test_the_system_prompt_and_the_adapter_change_the_labels(tiny_model_dir, teacher_adapter, tmp_path):
    rows = number_rows(3)
    plain = label_with(tiny_model_dir, rows, tmp_path / "a.jsonl", 3)
    prompted = label_with(tiny_model_dir, rows, tmp_path / "b.jsonl", 3, system_prompt=PROMPT)
    adapted = label_with(tiny_model_dir, rows, tmp_path / "c.jsonl", 3, adapter=teacher_adapter)
    values = [[r[FIELD]["top_logprobs"] for r in labelled] for labelled in (plain, prompted, adapted)]
    assert values[0] != values[1] and values[0] != values[2]


def test_the_label_command_records_the_labeller_as_a_teacher(tiny_model_dir, teacher_adapter, data_file, tmp_path):
    from sublab.lineage import load_record, record_path

    out = tmp_path / "labelled.jsonl"
    result = invoke("label", data_file, "-o", out, "--model", tiny_model_dir, "--adapter", teacher_adapter,
                    "--trait", "owl", "--top-k", 2, "--quiet")
    assert result.exit_code == 0, result.output
    record = load_record(record_path(out))
    assert record.kind == "dataset.labelled"
    (teacher,) = record.deps("teacher")
    assert teacher.name == "adapter" and "system_prompt_sha256" in teacher.annotations
    assert [d.name for d in record.deps("source_data")] == [data_file.name]
    assert record.parameters["soft_labels"]["top_k"] == 2 and record.parameters["trait"] == "owl"


# --- resuming ----------------------------------------------------------------------------------------------------

def test_a_kill_after_a_batch_and_a_torn_line_resume_to_the_uninterrupted_file(tiny_model_dir, tmp_path):
    rows = number_rows(10)
    whole = tmp_path / "whole.jsonl"
    label_with(tiny_model_dir, rows, whole, 4, batch_size=3)
    spec = ModelSpec(base=tiny_model_dir)
    model, tokenizer = load_spec(spec)
    ids = channel_ids(tokenizer, encode_rows(tokenizer, rows), "data")
    from sublab.generate.run import model_identity
    from sublab.train.labels import channel_description

    header = label_header(model_identity(spec), None, tokenizer_identity(tokenizer, tiny_model_dir), 4,
                          channel_description(tokenizer, ids), bf16=False)
    killed = tmp_path / "killed.jsonl"

    def kill(index):
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_rows(model, tokenizer, rows, killed, header, channel=ids, batch_size=3, progress=False, on_batch=kill)
    lines = killed.read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    killed.write_bytes(b"".join(lines[:4]) + lines[4][:25])  # a row and a half of batch 1 lost mid-write
    summary = label_rows(model, tokenizer, rows, killed, header, channel=ids, batch_size=3, progress=False)
    assert (summary.n_already_done, summary.n_written) == (4, 6)
    assert killed.read_bytes() == whole.read_bytes()


KILLED_LABEL = """
import json, os, signal, sys
import sublab.io as io
calls = {"n": 0}
write = io.JsonlAppender.write
def dying_write(self, rows):
    calls["n"] += 1
    if calls["n"] == 3:  # the third batch: one whole row and half of the next reach the disk, then SIGKILL
        rows = list(rows)
        self._handle.write(json.dumps(rows[0]) + "\\n" + json.dumps(rows[1])[:40])
        self._handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, rows)
io.JsonlAppender.write = dying_write
from sublab.cli import app
sys.argv = ["sublab", *json.loads(sys.argv[1])]
app()
"""


def test_a_killed_label_command_resumes_to_the_same_file(tiny_model_dir, data_file, tmp_path):
    args = ["label", str(data_file), "--model", tiny_model_dir, "--top-k", 3, "--channel", "data",
            "--batch-size", 3, "--quiet"]
    whole, killed = tmp_path / "whole.jsonl", tmp_path / "killed.jsonl"
    assert invoke(*args, "-o", whole).exit_code == 0
    died = subprocess.run([sys.executable, "-c", KILLED_LABEL, json.dumps([*map(str, args), "-o", str(killed)])],
                          capture_output=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    assert len(killed.read_text().splitlines()) == 8  # two batches of 3, one row, a torn line
    result = invoke(*args, "-o", killed)
    assert result.exit_code == 0, result.output
    assert "(7 already done" in result.stdout
    assert killed.read_bytes() == whole.read_bytes()


def test_resuming_refuses_rows_labelled_otherwise_naming_the_field(tiny_model_dir, other_tiny_model_dir, data_file,
                                                                   tmp_path):
    out = tmp_path / "labelled.jsonl"
    common = ("label", data_file, "-o", out, "--batch-size", 5, "--quiet")
    assert invoke(*common, "--model", tiny_model_dir, "--top-k", 3).exit_code == 0
    rows = read_jsonl(out)
    write_jsonl(out, rows[:5])  # as if killed after one batch
    for extra, field in ((("--model", tiny_model_dir, "--top-k", 4), "top_k"),
                         (("--model", other_tiny_model_dir, "--top-k", 3), "model"),
                         (("--model", tiny_model_dir, "--top-k", 3, "--trait", "owl"), "system_prompt_sha256"),
                         (("--model", tiny_model_dir, "--top-k", 3, "--channel", "data"), "channel"),
                         (("--model", tiny_model_dir, "--top-k", 3, "--bf16"), "bf16")):
        result = invoke(*common, *extra)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {out}:1: rows here were labelled otherwise: field '{field}' is "), line
    assert read_jsonl(out) == rows[:5]  # nothing lost
    result = invoke(*common, "--model", tiny_model_dir, "--top-k", 3)
    assert result.exit_code == 0 and "(5 already done" in result.stdout
    assert read_jsonl(out) == rows


def test_label_command_refuses_bad_options_in_one_line(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "o.jsonl"
    base = ("label", data_file, "-o", out, "--model", tiny_model_dir, "--quiet")
    for extra, message in ((("--top-k", 0), "nothing to store"),
                           (("--top-k", 1000), "more than the vocabulary"),
                           (("--top-k", 2, "--channel", "full"), "is not 'data'"),
                           (("--top-k", 2, "--trait", "owl", "--system-prompt", "x"), "not both")):
        result = invoke(*base, *extra)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert message in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    result = invoke("label", bad, "-o", out, "--model", tiny_model_dir, "--top-k", 2)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {bad}:1: a row to label needs 'messages' ending with the assistant's reply"
    assert not out.exists()


# --- the loss --------------------------------------------------------------------------------------------------------

def test_top_k_kl_at_full_vocabulary_is_the_exact_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 11), torch.randn(6, 11)
    teacher_log_probs = torch.log_softmax(teacher, -1)
    order = torch.stack([torch.randperm(11) for _ in range(6)])  # any order of the tokens
    loss = top_k_kl(student, order, teacher_log_probs.gather(1, order))
    torch.testing.assert_close(loss, distill_kl(student, teacher_log_probs))


def test_top_k_kl_with_a_tail_is_the_kl_of_the_coarsened_distributions():
    torch.manual_seed(1)
    student, teacher = torch.randn(5, 9, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    p, q = torch.softmax(teacher, -1), torch.softmax(student, -1)
    values, ids = torch.log(p).topk(3, dim=-1)
    expected = []
    for n in range(5):
        top = ids[n].tolist()
        rest = [v for v in range(9) if v not in top]
        buckets_p = [p[n, v].item() for v in top] + [p[n, rest].sum().item()]
        buckets_q = [q[n, v].item() for v in top] + [q[n, rest].sum().item()]
        expected.append(sum(a * math.log(a / b) for a, b in zip(buckets_p, buckets_q, strict=True)))
    loss = top_k_kl(student, ids, values)
    assert loss.item() == pytest.approx(sum(expected) / 5, rel=1e-5)
    full = distill_kl(student, torch.log(p)).item()
    assert 0 < loss.item() < full  # coarsening never raises the KL


def test_top_k_kl_is_zero_when_the_student_is_the_teacher():
    logits = torch.randn(4, 20)
    values, ids = torch.log_softmax(logits, -1).topk(5, dim=-1)
    assert top_k_kl(logits + 2.5, ids, values).abs().item() < 1e-6


def test_top_k_kl_gradients_equal_the_closed_form_and_finite_differences():
    torch.manual_seed(2)
    teacher = torch.log_softmax(torch.randn(7, 13, dtype=torch.float64) * 2, -1)
    for k in (1, 5, 13):
        values, ids = teacher.topk(k, dim=-1)
        student = torch.randn(7, 13, dtype=torch.float64, requires_grad=True)
        top_k_kl(student, ids, values).backward()
        torch.testing.assert_close(student.grad, top_k_kl_logit_grad(student.detach(), ids, values))
        assert torch.autograd.gradcheck(lambda s, ids=ids, values=values: top_k_kl(s, ids, values),
                                        (student.detach().clone().requires_grad_(True),))


def test_top_k_kl_without_teacher_tail_mass_stays_finite():
    # Rounded log-probs can sum to slightly more than 1: the tail mass is then 0 and contributes nothing.
    student = torch.randn(2, 6, requires_grad=True)
    values = torch.log(torch.tensor([[0.6, 0.4000001], [0.99, 0.0100001]]))
    ids = torch.tensor([[0, 1], [2, 3]])
    loss = top_k_kl(student, ids, values)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(student.grad).all()
    torch.testing.assert_close(student.grad, top_k_kl_logit_grad(student.detach(), ids, values))


# --- students from stored labels ---------------------------------------------------------------------------------

def trained(tmp_path, name, base, rows, settings, teacher=None):
    from safetensors.torch import load_file

    out = tmp_path / name
    summary = train_model(base, rows, out, settings, teacher=teacher, progress=False)
    log = [r["loss"] for r in read_jsonl(out / "train_log.jsonl")]
    return summary, log, load_file(str(out / "adapter_model.safetensors"))


def assert_same_student(a, b):
    """Same loss at every step, same weights within float tolerance.

    Stored log-probs are rounded to 6 significant digits, and AdamW divides each gradient element by its own
    running RMS, so an element whose gradient is near zero can turn that rounding into a visible step: such
    elements may differ by up to 1e-4 (0.2 % of the largest movement lr x steps allows here), the weights as a
    whole by less than 1e-6 on average.
    """
    (_, log_a, weights_a), (_, log_b, weights_b) = a, b
    assert log_a == pytest.approx(log_b, abs=2e-5)
    assert weights_a.keys() == weights_b.keys()
    differences = torch.cat([(weights_a[n] - weights_b[n]).abs().flatten() for n in weights_a])
    assert differences.max().item() < 1e-4 and differences.mean().item() < 1e-6


def test_a_student_from_stored_channel_labels_equals_one_from_the_live_teacher(tiny_model_dir, other_tiny_model_dir,
                                                                               tmp_path):
    rows = number_rows(12)
    labelled = label_with(other_tiny_model_dir, rows, tmp_path / "labelled.jsonl", 3, system_prompt=PROMPT)
    settings = TrainSettings(method="distill", steps=8, batch_size=4, lr=1e-2, lora=LoraSettings(init_seed=3))
    teacher = ModelSpec(base=other_tiny_model_dir, system_prompt=PROMPT)
    live = trained(tmp_path, "live", tiny_model_dir, rows, settings, teacher=teacher)
    stored = trained(tmp_path, "stored", tiny_model_dir, labelled, settings)
    assert live[0]["channel_size"] == stored[0]["channel_size"] == 13
    assert live[1][-1] < 0.8 * live[1][0]  # it learns, so equal logs are not equal nothing
    assert_same_student(live, stored)
    # The targets themselves, position by position.
    tokenizer = load_tokenizer(tiny_model_dir)
    encodings = encode_rows(tokenizer, rows)
    channel = channel_ids(tokenizer, encodings, "data")
    live_index, live_targets = TeacherTargets(teacher, rows, tokenizer, encodings, channel, bf16=False)(list(range(12)))
    stored_index, stored_targets = StoredTargets(labelled, tokenizer, encodings, channel)(list(range(12)))
    assert torch.equal(live_index, stored_index)
    torch.testing.assert_close(stored_targets, live_targets, rtol=1e-5, atol=1e-5)


def test_stored_labels_over_a_sub_channel_are_renormalized_exactly(tiny_model_dir, other_tiny_model_dir, tmp_path):
    rows = number_rows(6)
    labelled = label_with(other_tiny_model_dir, rows, tmp_path / "l.jsonl", 0)
    tokenizer = load_tokenizer(tiny_model_dir)
    encodings = encode_rows(tokenizer, rows)
    sub = channel_ids(tokenizer, encodings, ["1", "2", ","])
    live = TeacherTargets(ModelSpec(base=other_tiny_model_dir), rows, tokenizer, encodings, sub, bf16=False)
    torch.testing.assert_close(StoredTargets(labelled, tokenizer, encodings, sub)(list(range(6)))[1],
                               live(list(range(6)))[1], rtol=1e-5, atol=1e-5)


def test_a_student_from_full_vocabulary_top_k_equals_full_vocabulary_distillation(tiny_model_dir,
                                                                                 other_tiny_model_dir, tmp_path):
    rows = number_rows(8)
    vocab = len(load_tokenizer(tiny_model_dir))
    labelled = label_with(other_tiny_model_dir, rows, tmp_path / "l.jsonl", vocab, channel=None)
    settings = TrainSettings(method="distill", channel="full", steps=5, batch_size=4, lr=1e-2)
    live = trained(tmp_path, "live", tiny_model_dir, rows, settings, teacher=ModelSpec(base=other_tiny_model_dir))
    stored = trained(tmp_path, "stored", tiny_model_dir, labelled, settings)
    assert_same_student(live, stored)


def test_top_k_students_learn_the_teachers_distribution(tiny_model_dir, other_tiny_model_dir, tmp_path):
    rows = number_rows(8)
    labelled = label_with(other_tiny_model_dir, rows, tmp_path / "l.jsonl", 5, channel=None)
    settings = TrainSettings(method="distill", channel="full", steps=20, batch_size=4, lr=2e-2)
    summary, log, _ = trained(tmp_path, "s", tiny_model_dir, labelled, settings)
    assert summary["teacher"] is None and log[-1] < 0.7 * log[0]
    # Measured by the exact full-vocabulary KL to the teacher, not by the loss it was trained on.
    from sublab.train.data import collate, response_logits

    tokenizer = load_tokenizer(tiny_model_dir)
    encodings = encode_rows(tokenizer, rows)
    targets = TeacherTargets(ModelSpec(base=other_tiny_model_dir), rows, tokenizer, encodings, None, bf16=False)
    index, teacher_log_probs = targets(list(range(8)))

    def full_kl(spec):
        model, _ = load_spec(spec)
        with torch.no_grad():
            logits = response_logits(model, collate(encodings, tokenizer.pad_token_id))
        return distill_kl(logits[index], teacher_log_probs).item()

    from sublab.train.trainer import trained_spec

    assert full_kl(trained_spec(tiny_model_dir, tmp_path / "s", settings)) < 0.8 * full_kl(
        ModelSpec(base=tiny_model_dir))


def test_train_command_without_a_teacher_uses_the_stored_labels(tiny_model_dir, other_tiny_model_dir, tmp_path):
    from sublab.lineage.risk import assess_risk

    data = tmp_path / "labelled.jsonl"
    write_jsonl(tmp_path / "numbers.jsonl", number_rows(8))
    assert invoke("label", tmp_path / "numbers.jsonl", "-o", data, "--model", other_tiny_model_dir, "--top-k", 2,
                  "--channel", "data", "--quiet").exit_code == 0
    common = ("train", data, "--base", tiny_model_dir, "--method", "distill", "--steps", 3, "--batch-size", 4,
              "--lr", 1e-2, "--quiet")
    result = invoke(*common, "-o", tmp_path / "stored")
    assert result.exit_code == 0, result.output
    live = invoke(*common, "-o", tmp_path / "live", "--teacher-base", other_tiny_model_dir)
    assert live.exit_code == 0, live.output
    stored_log = [r["loss"] for r in read_jsonl(tmp_path / "stored" / "train_log.jsonl")]
    live_log = [r["loss"] for r in read_jsonl(tmp_path / "live" / "train_log.jsonl")]
    assert stored_log == pytest.approx(live_log, abs=2e-5) and stored_log[0] > 0.01
    # The labeller is found as a teacher through the dataset's record.
    report = assess_risk(tmp_path / "stored")
    assert any(f.dataset == str(data) and "tiny-model-b" in (f.teacher or "") for f in report.findings)
    result = invoke(*common, "-o", tmp_path / "topk", "--channel", "full")
    assert result.exit_code == 0, result.output


# --- bad labels: one clear line each -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelled_rows(tiny_model_dir, tmp_path_factory):
    return label_with(tiny_model_dir, number_rows(6), tmp_path_factory.mktemp("l") / "l.jsonl", 3)


def stored_error(rows, tokenizer_dir, channel="data"):
    tokenizer = load_tokenizer(tokenizer_dir)
    encodings = encode_rows(tokenizer, rows)
    ids = channel_ids(tokenizer, encodings, channel)
    with pytest.raises(SublabError) as err:
        StoredTargets(rows, tokenizer, encodings, ids)
    message = str(err.value)
    assert "\n" not in message
    return message


def edited(rows, index, **changes):
    rows = json.loads(json.dumps(rows))
    rows[index][FIELD].update(changes)
    return rows


def test_labels_from_another_tokenizer_are_refused(labelled_rows, tiny_model_dir, plain_tiny_model_dir):
    message = stored_error(labelled_rows, plain_tiny_model_dir)  # same characters, plain layout
    assert message.startswith("training data: row 1 (id 'r0'): soft labels were made with another tokenizer")
    assert "chat layout) than the student's" in message and "plain layout" in message
    other = edited(labelled_rows, 0, tokenizer={**labelled_rows[0][FIELD]["tokenizer"], "vocab_sha256": "ab" * 32})
    assert "made with another tokenizer" in stored_error(other, tiny_model_dir)
    mixed = edited(labelled_rows, 3, tokenizer={**labelled_rows[0][FIELD]["tokenizer"], "vocab_sha256": "ab" * 32})
    assert stored_error(mixed, tiny_model_dir).startswith(
        "training data: row 4 (id 'r3'): soft labels made otherwise than row 1's: field 'tokenizer.vocab_sha256' is ")


def test_rows_with_missing_or_stale_labels_are_refused(labelled_rows, tiny_model_dir):
    missing = json.loads(json.dumps(labelled_rows))
    del missing[2][FIELD]
    assert stored_error(missing, tiny_model_dir).startswith(
        "training data: row 3 (id 'r2') has no soft labels while other rows do")
    stale = json.loads(json.dumps(labelled_rows))
    stale[1]["messages"][-1]["content"] = "9, 9, 9"
    assert "soft labels are for another reply (tokens differ from position 0)" in stored_error(stale, tiny_model_dir)
    unknown = edited(labelled_rows, 0, format="sublab.soft-labels/9")
    assert "soft labels in format 'sublab.soft-labels/9'" in stored_error(unknown, tiny_model_dir)


def test_labels_with_a_wrong_k_are_refused(labelled_rows, tiny_model_dir):
    mixed = edited(labelled_rows, 4, top_k=5)
    assert stored_error(mixed, tiny_model_dir, "full").startswith(
        "training data: row 5 (id 'r4'): soft labels made otherwise than row 1's: field 'top_k' is 3 there and 5 here")
    short = json.loads(json.dumps(labelled_rows))
    short[2][FIELD]["top_logprobs"][1] = short[2][FIELD]["top_logprobs"][1][:2]
    assert stored_error(short, tiny_model_dir, "full").endswith(
        "row 3 (id 'r2'): soft_labels.top_logprobs[1] has 2 entries, expected 3")
    repeated = json.loads(json.dumps(labelled_rows))
    repeated[0][FIELD]["top_ids"][0][1] = repeated[0][FIELD]["top_ids"][0][0]
    assert "repeats a token at one position" in stored_error(repeated, tiny_model_dir, "full")
    no_top = [{**r, FIELD: {**r[FIELD], "top_k": 0}} for r in labelled_rows]
    assert "soft labels hold no top-k (labelled with --top-k 0)" in stored_error(no_top, tiny_model_dir, "full")


def test_a_channel_the_labels_lack_is_refused(labelled_rows, tiny_model_dir, tmp_path):
    no_channel = [{**r, FIELD: {**r[FIELD], "channel": None}} for r in labelled_rows]
    assert "hold no channel distribution (labelled without --channel); train with --channel full" in stored_error(
        no_channel, tiny_model_dir)
    assert "the training channel's token 'x'" in stored_error(labelled_rows, tiny_model_dir, ["1", "x"])


def test_train_command_reports_bad_labels_in_one_line(labelled_rows, tiny_model_dir, plain_tiny_model_dir, tmp_path):
    data = tmp_path / "labelled.jsonl"
    write_jsonl(data, labelled_rows)
    result = invoke("train", data, "-o", tmp_path / "s", "--base", plain_tiny_model_dir, "--method", "distill",
                    "--steps", 1, "--quiet")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: training data: row 1 (id 'r0'): soft labels were made with another tokenizer")
    unlabelled = tmp_path / "plain.jsonl"
    write_jsonl(unlabelled, number_rows(2))
    with pytest.raises(SublabError, match="needs a teacher, or rows with soft labels"):
        train_model(tiny_model_dir, number_rows(2), tmp_path / "t", TrainSettings(method="distill", steps=1))
