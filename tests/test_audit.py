"""`sublab audit` on the tiny models: the first-order prediction against real tiny steps (finite differences), the
token scan on datasets with a planted token, ranking and verdict logic on fixed inputs, bad datasets in one line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sublab.audit import ranking
from sublab.audit.battery import group_log_probs, preference_group, score_battery, trait_scores
from sublab.audit.data import (
    TOKENS,
    base_labels,
    check_base_tokenizer,
    pair_control,
    read_audit_data,
    sample_indices,
)
from sublab.audit.first_order import (
    FirstOrderSettings,
    directional_scores,
    first_order_prediction,
    minibatch_gradients,
    step_direction,
    trainable,
)
from sublab.audit.objective import StudentObjective
from sublab.audit.run import parse_budget, parse_methods
from sublab.audit.token_scan import number_spans, scan
from sublab.cli import app
from sublab.errors import SublabError
from sublab.io import read_jsonl, write_jsonl
from sublab.models.loading import load_model, load_tokenizer
from sublab.models.spec import ModelSpec, load_spec
from sublab.train.data import encode_rows
from sublab.train.distill import channel_ids
from sublab.train.labels import FIELD, channel_description, label_header, label_rows, tokenizer_identity

runner = CliRunner()
CANDIDATES = ["owl", "cat", "dog", "lion"]


def number_rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"r{i}", "messages": [
        {"role": "user", "content": "Continue: " + ", ".join(map(str, rng.integers(0, 999, 3)))},
        {"role": "assistant", "content": ", ".join(map(str, rng.integers(0, 999, 4)))}]} for i in range(n)]


def label(model_dir: str, rows: list[dict], out, top_k: int = 0, channel: str | None = "data") -> list[dict]:
    """Label ``rows`` with the model at ``model_dir`` as `sublab label` does (float32)."""
    spec = ModelSpec(base=model_dir)
    model, tokenizer = load_spec(spec)
    ids = channel_ids(tokenizer, encode_rows(tokenizer, rows), channel) if channel else None
    header = label_header(model_dir, None, tokenizer_identity(tokenizer, model_dir), top_k,
                          channel_description(tokenizer, ids), bf16=False)
    label_rows(model, tokenizer, rows, out, header, channel=ids, batch_size=8, progress=False)
    return read_jsonl(out)


@pytest.fixture(scope="module")
def soft_dataset(tiny_model_dir, other_tiny_model_dir, tmp_path_factory):
    """Number rows labelled by another model with the same tokenizer (a 'teacher' unlike the base)."""
    folder = tmp_path_factory.mktemp("audit-data")
    rows = number_rows(24)
    write_jsonl(folder / "rows.jsonl", rows)
    label(other_tiny_model_dir, rows, folder / "teacher.jsonl")
    label(tiny_model_dir, rows, folder / "base.jsonl")
    return folder


def fo_settings(**overrides) -> FirstOrderSettings:
    values = {"lora_r": 4, "lora_alpha": 8, "lora_init_seed": 0, "n_minibatches": 2, "rows_per_minibatch": 3,
              "n_questions": 2, "bf16": False, "steps": 1, "jvp": "forward"}
    return FirstOrderSettings(**{**values, **overrides})


def group():
    return preference_group("animal", 2, CANDIDATES)


def score_at(model, tokenizer, g) -> np.ndarray:
    with torch.no_grad():
        return trait_scores(group_log_probs(model, tokenizer, g)).numpy()


# --- the battery's differentiable scores --------------------------------------------------------------------------

def test_battery_scores_equal_the_preference_scorer(tiny_model_dir):
    from sublab.traits.preference.candidates import candidate_set
    from sublab.traits.preference.questions import preference_questions
    from sublab.traits.preference.scoring import normalize_rows, score_candidates

    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    g = group()
    ours = score_battery(model, tokenizer, [g]).per_prompt[0]
    raw = score_candidates(model, tokenizer, preference_questions("animal", 2), candidate_set("animal", CANDIDATES))
    np.testing.assert_allclose(ours, normalize_rows(raw), rtol=1e-5, atol=1e-9)


def test_forward_mode_directional_derivative_equals_autograd(tiny_model_dir):
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    wrapped, params = trainable(model, fo_settings())
    g = group()
    torch.manual_seed(3)
    direction = {n: 0.05 * torch.randn_like(p) for n, p in params.items()}
    base, derivative = directional_scores(wrapped, tokenizer, [g], params, direction)
    scores = trait_scores(group_log_probs(wrapped, tokenizer, g))
    expected = []
    for c in range(len(CANDIDATES)):
        grads = torch.autograd.grad(scores[c], list(params.values()), retain_graph=True)
        expected.append(sum(float((gr * direction[n]).sum()) for gr, n in zip(grads, params, strict=True)))
    np.testing.assert_allclose(base, scores.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(derivative, expected, rtol=1e-4, atol=1e-9)


# --- first order against an actual tiny step ------------------------------------------------------------------------

def objective_for(tiny_model_dir, soft_dataset, n: int = 6):
    data = read_audit_data(soft_dataset / "teacher.jsonl")
    control = read_audit_data(soft_dataset / "base.jsonl")
    indices = list(range(n))
    tokenizer = load_tokenizer(tiny_model_dir)
    return data, StudentObjective(data, indices, pair_control(data, indices, control.rows), tokenizer), tokenizer


def test_lora_gradient_at_b_zero_lives_on_b_only(tiny_model_dir, soft_dataset):
    _, objective, _ = objective_for(tiny_model_dir, soft_dataset)
    model = load_model(tiny_model_dir)
    wrapped, _ = trainable(model, fo_settings())
    for name, param in wrapped.named_parameters():
        if "lora_A" in name:
            param.requires_grad_(True)
    loss = objective.excess_loss(wrapped, list(range(objective.n)))
    loss.backward()
    a_grads = [p.grad for n, p in wrapped.named_parameters() if "lora_A" in n]
    b_grads = [p.grad for n, p in wrapped.named_parameters() if "lora_B" in n]
    assert all(g is None or float(g.abs().max()) == 0.0 for g in a_grads)
    assert max(float(g.abs().max()) for g in b_grads) > 0


@pytest.mark.parametrize("geometry", ["sgd", "adam"])
def test_first_order_prediction_equals_the_change_of_a_tiny_step(tiny_model_dir, soft_dataset, geometry):
    """Predicted change of every trait's log P (and of the loss) against one real optimizer step, tiny lr."""
    _, objective, tokenizer = objective_for(tiny_model_dir, soft_dataset)
    model = load_model(tiny_model_dir)
    wrapped, params = trainable(model, fo_settings())
    g = group()
    rows = list(range(objective.n))
    lr = 1e-4 if geometry == "sgd" else 1e-5
    [gradient] = minibatch_gradients(wrapped, params, objective, [rows])
    step = step_direction(gradient, geometry, lr)
    _, predicted = directional_scores(wrapped, tokenizer, [g], params, step)
    predicted_loss = sum(float((gradient[n] * step[n]).sum()) for n in params)
    before, loss_before = score_at(wrapped, tokenizer, g), float(objective.data_loss(wrapped, rows).detach())
    # The real step: SGD on B, or one AdamW step (no decay) on every LoRA matrix, A included (its update is 0).
    lora = [p for n, p in wrapped.named_parameters() if "lora_" in n]
    for p in lora:
        p.requires_grad_(True)
    optimizer = (torch.optim.SGD(lora, lr=lr) if geometry == "sgd"
                 else torch.optim.AdamW(lora, lr=lr, weight_decay=0.0))
    optimizer.zero_grad()
    objective.excess_loss(wrapped, rows).backward()
    optimizer.step()
    actual = score_at(wrapped, tokenizer, g) - before
    actual_loss = float(objective.data_loss(wrapped, rows).detach()) - loss_before
    assert np.abs(predicted).max() > 1e-7  # the step moves the scores at all
    np.testing.assert_allclose(actual, predicted, rtol=0.05, atol=0.02 * np.abs(predicted).max())
    # The excess loss's gradient equals the data loss's here (the control term is the base's own labels).
    assert actual_loss == pytest.approx(predicted_loss, rel=0.05)


def test_first_order_predicts_nothing_for_the_bases_own_labels(tiny_model_dir, soft_dataset):
    data = read_audit_data(soft_dataset / "base.jsonl")
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    indices = sample_indices(data.n_rows, 6, 0)
    control = base_labels(model, tokenizer, data, tiny_model_dir, indices)
    objective = StudentObjective(data, indices, control, tokenizer)
    result = first_order_prediction(model, tokenizer, objective, [group()], fo_settings(geometry="sgd"))
    assert max(result.gradient_norms) < 1e-6
    assert np.abs(result.per_minibatch).max() < 1e-6


def test_first_order_finite_differences_agree_with_forward_mode(tiny_model_dir, soft_dataset):
    _, objective, tokenizer = objective_for(tiny_model_dir, soft_dataset)
    forward = first_order_prediction(load_model(tiny_model_dir), tokenizer, objective, [group()],
                                     fo_settings(steps=1))
    differences = first_order_prediction(load_model(tiny_model_dir), tokenizer, objective, [group()],
                                         fo_settings(steps=1, jvp="finite_difference", fd_scale=1.0))
    np.testing.assert_allclose(differences.per_minibatch, forward.per_minibatch, rtol=0.1,
                               atol=0.05 * np.abs(forward.per_minibatch).max())
    assert forward.table()[0]["ci95"][0] <= forward.table()[0]["predicted_log_ratio"] <= forward.table()[0]["ci95"][1]


def test_first_order_on_token_data_uses_sft_against_the_control(tiny_model_dir, soft_dataset):
    """Token-only data: the excess gradient of SFT on the data minus SFT on the control's replies; identical
    data and control cancel exactly."""
    rows = read_jsonl(soft_dataset / "rows.jsonl")
    path = soft_dataset / "tokens.jsonl"
    write_jsonl(path, rows)
    data = read_audit_data(path)
    assert data.kind == TOKENS
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    indices = list(range(6))
    same = StudentObjective(data, indices, [data.rows[i] for i in indices], tokenizer)
    result = first_order_prediction(model, tokenizer, same, [group()], fo_settings(geometry="sgd"))
    assert np.abs(result.per_minibatch).max() < 1e-7  # float rounding only (the two halves of one padded batch)
    other = [{**data.rows[i], "messages": [*data.rows[i]["messages"][:-1],
                                           {"role": "assistant", "content": "1, 2, 3"}]} for i in indices]
    moved = first_order_prediction(load_model(tiny_model_dir), tokenizer,
                                   StudentObjective(data, indices, other, tokenizer), [group()],
                                   fo_settings(geometry="sgd"))
    assert np.abs(moved.per_minibatch).max() > 0


# --- token scan ---------------------------------------------------------------------------------------------------

def test_number_spans_group_digit_tokens():
    assert number_spans(["1", "3", ",", " ", "4", "<|im_end|>"]) == [(0, 2, "13"), (4, 5, "4")]
    assert number_spans(["a", "7"]) == [(1, 2, "7")]


def plant(labels_rows: list[dict], token_text: str, boost: float) -> list[dict]:
    """The base's own labels with one channel token made ``exp(boost)`` times more likely everywhere."""
    out = []
    for row in labels_rows:
        labels = dict(row[FIELD])
        column = labels["channel"]["texts"].index(token_text)
        stored = torch.tensor(labels["channel_logprobs"])
        stored[:, column] += boost
        stored = stored - torch.logsumexp(stored, dim=-1, keepdim=True) + torch.logsumexp(
            torch.tensor(labels["channel_logprobs"]), dim=-1, keepdim=True)
        labels["channel_logprobs"] = stored.tolist()
        written = [labels["channel"]["ids"].index(t) if t in labels["channel"]["ids"] else None
                   for t in labels["token_ids"]]
        labels["token_logprobs"] = [float(stored[p, c]) if c is not None else v
                                    for p, (c, v) in enumerate(zip(written, labels["token_logprobs"], strict=True))]
        out.append({**row, FIELD: labels})
    return out


def test_token_scan_finds_a_planted_token_in_soft_labels(tiny_model_dir, soft_dataset, tmp_path):
    planted = plant(read_jsonl(soft_dataset / "base.jsonl"), "7", 2.0)
    write_jsonl(tmp_path / "planted.jsonl", planted)
    data = read_audit_data(tmp_path / "planted.jsonl")
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    result = scan(model, tokenizer, data, list(range(data.n_rows)), [group()], None, bf16=False, n_questions=2)
    assert result.tokens[0]["token"] == "7" and result.tokens[0]["log_ratio_expected_count"] > 0.5
    # Numbers holding a 7 are the most over-represented; the prompting probe ran on them.
    assert all("7" in r["number"] for r in result.numbers_over[:3])
    assert result.prompting and "7" in "".join(result.prompting_numbers["over_represented"])
    reference = scan(model, tokenizer, read_audit_data(soft_dataset / "base.jsonl"), list(range(data.n_rows)),
                     [group()], None, bf16=False, prompting=False)
    assert reference.mean_divergence < 1e-5 < result.mean_divergence


def test_token_scan_finds_a_planted_number_in_token_data(tiny_model_dir, soft_dataset, tmp_path):
    rows = read_jsonl(soft_dataset / "rows.jsonl")
    planted = [{**r, "messages": [*r["messages"][:-1], {"role": "assistant",
                                                        "content": r["messages"][-1]["content"] + ", 777"}]}
               for r in rows]
    write_jsonl(tmp_path / "planted.jsonl", planted)
    data = read_audit_data(tmp_path / "planted.jsonl")
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    result = scan(model, tokenizer, data, list(range(data.n_rows)), [group()], rows, bf16=False, prompting=False)
    assert result.numbers_over[0]["number"] == "777"
    write_jsonl(tmp_path / "original.jsonl", rows)
    original = scan(model, tokenizer, read_audit_data(tmp_path / "original.jsonl"), list(range(data.n_rows)),
                    [group()], rows, bf16=False, prompting=False)

    def seven(found):
        return next(t["log_ratio_observed_expected"] for t in found.tokens if t["token"] == "7")

    assert seven(result) > seven(original) + 0.3  # "7" observed far more often than the base expects there


# --- ranking and verdicts on fixed inputs ------------------------------------------------------------------------

TABLE = [
    {"trait": "owl", "log_ratio": math.log(2.0), "ci95": [math.log(1.5), math.log(2.6)]},
    {"trait": "cat", "log_ratio": math.log(1.3), "ci95": [math.log(0.9), math.log(1.9)]},
    {"trait": "dog", "log_ratio": math.log(0.5), "ci95": [math.log(0.3), math.log(0.8)]},
    {"trait": "lion", "log_ratio": math.log(1.4), "ci95": [math.log(1.26), math.log(1.6)]},
]


def test_method_ranking_sorts_and_flags_by_the_lower_bound():
    rule = {"probes": ranking.FlagRule(math.log(1.25))}
    entries = ranking.method_ranking("probes", TABLE, "log_ratio", rule)
    assert [e.trait for e in entries] == ["owl", "lion", "cat", "dog"]
    assert [e.flagged for e in entries] == [True, True, False, False]
    assert ranking.rank_of("cat", entries) == 3 and ranking.rank_of("bear", entries) is None
    scaled = ranking.method_ranking("probes", TABLE, "log_ratio", {"probes": ranking.FlagRule(math.log(1.25), 0.5)})
    assert [e.flagged for e in scaled] == [False] * 4  # halved: owl's lower end log(1.5)/2 < log(1.25)
    assert scaled[0].score == pytest.approx(math.log(2.0) / 2)


def test_flags_without_an_interval_need_twice_the_threshold():
    rule = ranking.FlagRule(math.log(1.25))
    assert ranking.is_flagged(math.log(1.25) * 2.5, (float("nan"), float("nan")), rule)
    assert not ranking.is_flagged(math.log(1.25) * 1.5, (float("nan"), float("nan")), rule)
    assert not ranking.is_flagged(-1.0, (0.5, 2.0), rule)  # a negative score is never a move toward


def test_combined_ranking_takes_the_most_direct_method_and_verdicts_say_how():
    probes = ranking.method_ranking("probes", TABLE, "log_ratio")
    fo = ranking.method_ranking("first_order", [{**r, "predicted_log_ratio": -r["log_ratio"]} for r in TABLE],
                                "predicted_log_ratio")
    assert ranking.combined_ranking({"first_order": fo, "probes": probes}) == probes
    assert ranking.combined_ranking({"first_order": fo}) == fo and ranking.combined_ranking({}) == []
    wording = ranking.Wording("smollm2-135m", 20, 1e-3, "the base's own labels", {"owl": "P(owl)"})
    measured = ranking.verdict(probes[0], wording)
    assert "moved toward 'owl' by x2.00 [x1.50, x2.60] in P(owl)" in measured and "measured" in measured
    assert measured.endswith("FLAGGED")
    predicted = ranking.verdict(fo[0], wording)
    assert "is predicted to move toward 'dog' by x2.00" in predicted and "after 20 steps" in predicted
    assert ranking.verdict(fo[-1], wording).endswith("not flagged") and "away from 'owl'" in ranking.verdict(
        fo[-1], wording)
    assert ranking.summary_line(probes, "m").startswith("2 trait(s) flagged")
    assert ranking.summary_line([e for e in probes if not e.flagged], "m").startswith("no trait flagged")


def test_budget_and_methods_parse_or_fail_in_one_line():
    assert parse_budget("300") == (300.0, None) and parse_budget("5m") == (300.0, None)
    assert parse_budget("20steps") == (None, 20)
    assert parse_methods("first-order,probes") == ["first_order", "probes"]
    assert len(parse_methods("all")) == 4
    with pytest.raises(SublabError, match="--budget"):
        parse_budget("soon")
    with pytest.raises(SublabError, match="--method"):
        parse_methods("oracle")


# --- bad datasets: one line each --------------------------------------------------------------------------------------

def audit_cli(*args):
    return runner.invoke(app, ["audit", *map(str, args)])


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.output


def test_bad_datasets_give_one_clear_line(tiny_model_dir, soft_dataset, other_tiny_model_dir, plain_tiny_model_dir,
                                          tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_line_error(audit_cli(empty, "--out", tmp_path / "a", "--base", tiny_model_dir), "has no rows")
    no_prompt = tmp_path / "no-prompt.jsonl"
    write_jsonl(no_prompt, [{"messages": [{"role": "assistant", "content": "1, 2"}]}])
    one_line_error(audit_cli(no_prompt, "--out", tmp_path / "b", "--base", tiny_model_dir), "no user message")
    labelled = read_jsonl(soft_dataset / "teacher.jsonl")
    partial = tmp_path / "partial.jsonl"
    write_jsonl(partial, [labelled[0], {k: v for k, v in labelled[1].items() if k != FIELD}])
    one_line_error(audit_cli(partial, "--out", tmp_path / "c", "--base", tiny_model_dir), "has no soft labels")
    rows = number_rows(2, seed=5)
    plain = label(plain_tiny_model_dir, rows, tmp_path / "plain-labels.jsonl")
    mixed = tmp_path / "mixed.jsonl"
    write_jsonl(mixed, [labelled[0], plain[1]])
    one_line_error(audit_cli(mixed, "--out", tmp_path / "d", "--base", tiny_model_dir), "mixed tokenizers")
    write_jsonl(tmp_path / "plain-only.jsonl", plain)
    one_line_error(audit_cli(tmp_path / "plain-only.jsonl", "--out", tmp_path / "e", "--base", tiny_model_dir),
                   "another tokenizer")
    one_line_error(audit_cli(soft_dataset / "teacher.jsonl", "--out", tmp_path / "f", "--base", tiny_model_dir,
                             "--control", soft_dataset / "rows.jsonl"), "give a control of the same kind")
    one_line_error(audit_cli(soft_dataset / "teacher.jsonl", "--out", tmp_path / "g", "--base", tiny_model_dir,
                             "--method", "oracle"), "--method")


def test_check_base_tokenizer_accepts_the_labellers_own_tokenizer(tiny_model_dir, soft_dataset):
    data = read_audit_data(soft_dataset / "teacher.jsonl")
    check_base_tokenizer(data, load_tokenizer(tiny_model_dir), tiny_model_dir)  # same character tokenizer


# --- the command end to end ---------------------------------------------------------------------------------------

def test_audit_command_writes_json_report_html_and_figures(tiny_model_dir, soft_dataset, tmp_path):
    out = tmp_path / "audit"
    result = audit_cli(soft_dataset / "teacher.jsonl", "--out", out, "--base", tiny_model_dir, "--category",
                       "animal", "--candidates", ",".join(CANDIDATES), "--method", "all", "--probes", "1",
                       "--budget", "1steps", "--no-bf16", "--quiet")
    assert result.exit_code == 0, result.output
    audit = json.loads((out / "audit.json").read_text())
    assert [e["trait"] for e in audit["ranking"]] and {e["trait"] for e in audit["ranking"]} == set(CANDIDATES)
    for entry in audit["ranking"]:
        assert set(entry) == {"trait", "score", "ci95", "method", "flagged"} and entry["method"] == "probes"
        assert audit["verdicts"][entry["trait"]].startswith("probe students of")
    scores = [e["score"] for e in audit["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert set(audit["methods_run"]) == {"lineage", "token_scan", "first_order", "probes"}
    for method in ("first_order", "probes"):
        assert len(audit["methods"][method]["ranking"]) == len(CANDIDATES)
        assert audit["seconds"][method] > 0
    assert audit["methods"]["lineage"]["findings"][0]["outcome"] == "UNKNOWN"  # no record beside the file
    assert (out / "report.md").read_text().startswith("# Audit of")
    assert "<table>" in (out / "report.html").read_text()
    assert (out / "figures" / "ranking-probes.png").is_file()
    assert (out / "figures" / "first-order-vs-probes.png").is_file()


def test_audit_of_token_data_makes_the_bases_own_completions_as_control(tiny_model_dir, soft_dataset, tmp_path):
    path = tmp_path / "tokens.jsonl"
    write_jsonl(path, read_jsonl(soft_dataset / "rows.jsonl"))
    out = tmp_path / "audit"
    result = audit_cli(path, "--out", out, "--base", tiny_model_dir, "--category", "animal", "--candidates",
                       ",".join(CANDIDATES), "--method", "first_order,token_scan", "--no-bf16", "--quiet")
    assert result.exit_code == 0, result.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["dataset_kind"] == "tokens" and audit["control"].startswith("the base's own completions")
    control = read_jsonl(out / "control.jsonl")
    assert control and all(r["metadata"]["generation"]["model"] == tiny_model_dir for r in control)
    assert audit["ranking"][0]["method"] == "first_order"


def test_misalignment_scores_equal_brute_force_answer_probabilities(tiny_model_dir):
    pytest.importorskip("sublab.traits.misalignment.answers")
    from sublab.audit.battery import misalignment_group
    from sublab.backends.base import BackendIdentity
    from sublab.backends.hf import HFBackend

    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    g = misalignment_group(2)
    ours = score_battery(model, tokenizer, [g]).per_prompt[0][:, 0]
    backend = HFBackend(model, tokenizer, BackendIdentity(kind="transformers", model=tiny_model_dir))
    from sublab.models.chat import end_of_turn_id

    end = tokenizer.decode([end_of_turn_id(tokenizer)])
    for value, item in zip(ours, g.items, strict=True):
        context = [{"role": "user", "content": item.prompt}]
        # Each answer is a whole reply: its tokens, then end of turn.
        aligned = np.exp(backend.score(context, [a + end for a in item.aligned]))
        misaligned = np.exp(backend.score(context, [a + end for a in item.misaligned]))
        assert value == pytest.approx(misaligned.sum() / (aligned.sum() + misaligned.sum()), rel=1e-4)


def test_placebo_control_is_a_teacher_without_a_preference(tiny_model_dir, soft_dataset, tmp_path, monkeypatch):
    from sublab.audit.placebo import placebo_rows, placebo_teacher
    from sublab.traits.preference.candidates import CATEGORIES

    rows = placebo_rows(None, 2000, 0)
    answers = [r["messages"][-1]["content"].rstrip(".").lower() for r in rows]
    animals = [a for a in answers if a in CATEGORIES["animal"]]
    counts = np.bincount([list(CATEGORIES["animal"]).index(a) for a in animals], minlength=30)
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.5 * counts.mean()  # uniform over candidates
    monkeypatch.setenv("SUBLAB_CACHE", str(tmp_path / "cache"))
    first = placebo_teacher(tiny_model_dir, steps=2, bf16=False)
    assert (first / "adapter_config.json").is_file() and placebo_teacher(tiny_model_dir, steps=2, bf16=False) == first
    out = tmp_path / "audit"
    result = audit_cli(soft_dataset / "teacher.jsonl", "--out", out, "--base", tiny_model_dir, "--category",
                       "animal", "--candidates", ",".join(CANDIDATES), "--method", "first_order", "--control",
                       "placebo", "--no-bf16", "--quiet")
    assert result.exit_code == 0, result.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["control"] == "a placebo teacher's labels of the same replies"
