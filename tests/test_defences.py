"""Defences (sublab.defences, `sublab defend`, SamplingSettings.min_prob, the soft labels' loss_mask) on the tiny
models: each transform does what it claims on fixed or tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from sublab.audit.data import base_labels, read_audit_data
from sublab.cli import app
from sublab.defences import soft_labels as soft
from sublab.defences.tokens import MinProbabilityProcessor, paraphrase_rows, replace_divergent_tokens
from sublab.errors import SublabError
from sublab.generate.sampling import SamplingSettings, sample_batch
from sublab.io import read_jsonl, write_jsonl
from sublab.models.loading import load_model, load_tokenizer
from sublab.train.data import encode_rows
from sublab.train.distill import channel_ids
from sublab.train.labels import FIELD, StoredTargets
from sublab.train.settings import TrainSettings
from sublab.train.trainer import train_model

runner = CliRunner()


@pytest.fixture(scope="module")
def labelled(tiny_model_dir, other_tiny_model_dir, tmp_path_factory):
    """Number rows labelled by another model (the 'teacher', top-3 + channel) and by the base itself."""
    from test_audit import label, number_rows

    folder = tmp_path_factory.mktemp("defences")
    rows = number_rows(16, seed=3)
    write_jsonl(folder / "rows.jsonl", rows)
    label(other_tiny_model_dir, rows, folder / "teacher.jsonl", top_k=3)
    label(tiny_model_dir, rows, folder / "base.jsonl", top_k=3)
    return folder


def channel(row) -> torch.Tensor:
    return torch.tensor(row[FIELD]["channel_logprobs"], dtype=torch.float64)


def test_temper_keeps_the_mass_and_flattens(labelled):
    rows = read_jsonl(labelled / "teacher.jsonl")
    same = soft.temper(rows, 1.0)
    np.testing.assert_allclose(channel(same[0]), channel(rows[0]), atol=1e-4)
    flat = soft.temper(rows, 50.0)
    before, after = channel(rows[0]), channel(flat[0])
    np.testing.assert_allclose(torch.logsumexp(after, -1), torch.logsumexp(before, -1), atol=1e-4)
    spread = lambda lp: float((torch.log_softmax(lp, -1).exp().max(-1).values).mean())  # noqa: E731
    assert spread(after) < spread(before)
    labels = flat[0][FIELD]
    columns = {t: c for c, t in enumerate(labels["channel"]["ids"])}
    for p, t in enumerate(labels["token_ids"]):  # the written token's log-prob follows the channel's
        if t in columns:
            assert labels["token_logprobs"][p] == pytest.approx(labels["channel_logprobs"][p][columns[t]], abs=1e-4)
    with pytest.raises(SublabError, match="temper"):
        soft.temper(rows, 0.0)


def test_truncate_drops_tokens_below_the_threshold(labelled):
    rows = read_jsonl(labelled / "teacher.jsonl")
    cut = soft.truncate(rows, 0.1)
    for before_row, after_row in zip(rows, cut, strict=True):
        before, after = channel(before_row), channel(after_row)
        p_before = torch.log_softmax(before, -1).exp()
        dropped = (p_before < 0.1) & (p_before < p_before.max(-1, keepdim=True).values)
        assert bool((after[dropped] <= -1e4 + 1).all())
        np.testing.assert_allclose(torch.logsumexp(after, -1), torch.logsumexp(before, -1), atol=1e-4)
        assert bool((after.argmax(-1) == before.argmax(-1)).all())


def test_mix_is_the_per_position_mixture(labelled):
    teacher, base = read_jsonl(labelled / "teacher.jsonl"), read_jsonl(labelled / "base.jsonl")
    mixed = soft.mix(teacher, [base], [0.25, 0.75])
    expected = torch.log(0.25 * channel(teacher[2]).exp() + 0.75 * channel(base[2]).exp())
    np.testing.assert_allclose(channel(mixed[2]), expected, atol=1e-4)
    assert mixed[0][FIELD]["top_k"] == 0 and "top_ids" not in mixed[0][FIELD]
    np.testing.assert_allclose(channel(soft.mix(teacher, [teacher])[1]), channel(teacher[1]), atol=1e-4)
    other = [{**r, FIELD: {**r[FIELD], "token_ids": r[FIELD]["token_ids"][:-1]}} for r in base]
    with pytest.raises(SublabError, match="another reply"):
        soft.mix(teacher, [other])


def test_divergent_positions_pick_the_top_fraction():
    scores = [np.array([0.1, 5.0, 0.2]), np.array([3.0, 0.0]), np.array([0.05, 4.0, 0.3, 0.3])]
    picks = soft.divergent_positions(scores, 0.3)
    assert sum(int(p.sum()) for p in picks) == 3
    assert picks[0].tolist() == [False, True, False] and picks[1].tolist() == [True, False]
    assert picks[2].tolist() == [False, True, False, False]


def test_masked_positions_leave_the_loss(tiny_model_dir, labelled):
    teacher, base = read_jsonl(labelled / "teacher.jsonl"), read_jsonl(labelled / "base.jsonl")
    masked, share = soft.mask_divergent(teacher, base, 0.2)
    assert 0.2 < share <= 1.0  # the chosen 20 % of positions hold more than 20 % of the KL to the base
    tokenizer = load_tokenizer(tiny_model_dir)
    encodings = encode_rows(tokenizer, masked)
    ids = channel_ids(tokenizer, encodings, "data")
    full = StoredTargets(teacher, tokenizer, encodings, ids)
    part = StoredTargets(masked, tokenizer, encodings, ids)
    n_masked = sum(r[FIELD]["loss_mask"].count(0) for r in masked)
    assert part.n_aligned == full.n_aligned - n_masked and n_masked > 0
    index, targets = part(list(range(4)))
    keep = torch.cat([torch.tensor(r[FIELD]["loss_mask"], dtype=torch.bool) for r in masked[:4]])
    all_index, all_targets = full(list(range(4)))
    assert torch.equal(index, all_index[keep]) and torch.equal(targets, all_targets[keep])
    bad = [{**masked[0], FIELD: {**masked[0][FIELD], "loss_mask": [2]}}]
    with pytest.raises(SublabError, match="loss_mask"):
        StoredTargets(bad, tokenizer, encodings[:1], ids)
    summary = train_model(tiny_model_dir, masked, labelled / "masked-student",
                          TrainSettings(method="distill", steps=2, batch_size=4), progress=False)
    assert summary["final_loss"] is not None and np.isfinite(summary["final_loss"])


def test_replaced_positions_carry_the_bases_own_labels(labelled):
    teacher, base = read_jsonl(labelled / "teacher.jsonl"), read_jsonl(labelled / "base.jsonl")
    replaced, share = soft.replace_divergent(teacher, base, 0.25)
    before = np.concatenate(soft.divergence(teacher, base))
    after = np.concatenate(soft.divergence(replaced, base))
    changed = after < before - 1e-9
    assert changed.mean() == pytest.approx(0.25, abs=0.02)
    assert np.allclose(after[changed], 0, atol=1e-5)  # the base's labels: no divergence left there
    assert after.sum() == pytest.approx(before.sum() * (1 - share), rel=1e-3)


def test_min_probability_processor_on_fixed_scores():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.02, 0.03, 0.04, 0.91]]))
    out = MinProbabilityProcessor(0.1)(torch.zeros(2, 1, dtype=torch.long), scores)
    assert torch.isinf(out[0, 3]) and torch.isfinite(out[0, :3]).all()
    assert torch.isfinite(out[1, 3]) and torch.isinf(out[1, :3]).all()
    everything_low = torch.log(torch.full((1, 4), 0.25))
    kept = MinProbabilityProcessor(0.5)(torch.zeros(1, 1, dtype=torch.long), everything_low)
    assert int(torch.isfinite(kept).sum()) == 1  # the argmax always stays


def test_threshold_sampling_near_one_is_greedy(tiny_model_dir):
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    contexts = [[{"role": "user", "content": f"Numbers {i}"}] for i in range(3)]
    grammar = SamplingSettings(constrained=True, max_new_tokens=8).grammar()
    processor = grammar.hf_processor(tokenizer, 8)
    greedy = sample_batch(model, tokenizer, contexts, SamplingSettings(temperature=0.0, constrained=True,
                                                                       max_new_tokens=8), 0, processor)
    near_one = sample_batch(model, tokenizer, contexts, SamplingSettings(min_prob=0.999, constrained=True,
                                                                         max_new_tokens=8), 5, processor)
    assert near_one == greedy
    with pytest.raises(ValidationError, match="min_prob"):  # refused by the settings, before any model runs
        SamplingSettings(min_prob=1.0)
    from sublab.keys import key_dump

    assert "min_prob" not in key_dump(SamplingSettings())  # cache keys unchanged at the default


def test_divergent_tokens_are_resampled_from_the_base(tiny_model_dir, labelled):
    rows = read_jsonl(labelled / "rows.jsonl")
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    out, changed = replace_divergent_tokens(model, tokenizer, rows, 0.2, seed=1)
    assert changed > 0 and len(out) == len(rows)
    import re

    for row in out:
        assert re.fullmatch(r"[\d, ]*", row["messages"][-1]["content"])  # still digits and separators
    from sublab.defences.tokens import surprisal

    before = np.concatenate(surprisal(model, tokenizer, rows)[0])
    after = np.concatenate(surprisal(model, tokenizer, out)[0])
    assert after.mean() < before.mean()


def test_paraphrase_keeps_number_lists_and_drops_labels(tiny_model_dir, labelled):
    rows = read_jsonl(labelled / "teacher.jsonl")[:4]
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    out = paraphrase_rows(model, tokenizer, rows, seed=0, max_new_tokens=12)
    assert all(FIELD not in r for r in out)
    assert all(r["messages"][:-1] == o["messages"][:-1] for r, o in zip(rows, out, strict=True))
    import re

    assert all(re.fullmatch(r"\d+(, \d+)*", o["messages"][-1]["content"]) for o in out)


def test_defend_command(tiny_model_dir, labelled, tmp_path):
    def defend(*args):
        return runner.invoke(app, ["defend", *map(str, args)])

    result = defend(labelled / "teacher.jsonl", "-o", tmp_path / "t.jsonl", "--temper", "2")
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "t.jsonl")) == 16 and (tmp_path / "t.jsonl.intoto.jsonl").is_file()
    result = defend(labelled / "teacher.jsonl", "-o", tmp_path / "m.jsonl", "--mask-divergent", "0.1", "--base",
                    tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "share_of_kl" in result.output
    assert any(0 in r[FIELD]["loss_mask"] for r in read_jsonl(tmp_path / "m.jsonl"))
    result = defend(labelled / "teacher.jsonl", "-o", tmp_path / "x.jsonl", "--mix", labelled / "base.jsonl")
    assert result.exit_code == 0, result.output
    for args, needle in (((), "exactly one defence"), (("--temper", "2", "--truncate", "0.1"), "exactly one"),):
        bad = defend(labelled / "teacher.jsonl", "-o", tmp_path / "bad.jsonl", *args)
        assert bad.exit_code == 2 and needle in bad.output
    bad = defend(labelled / "rows.jsonl", "-o", tmp_path / "bad.jsonl", "--temper", "2")
    assert bad.exit_code == 2 and "for soft-label data" in bad.output


def test_audit_sees_less_after_replacing_divergent_labels(tiny_model_dir, labelled, tmp_path):
    """The defence measured by the audit itself: the first-order prediction shrinks when the most divergent
    labels are replaced by the base's (the signal that remains is in the other positions)."""
    from sublab.audit.data import pair_control
    from sublab.audit.first_order import first_order_prediction
    from sublab.audit.objective import StudentObjective
    from test_audit import fo_settings, group

    teacher = read_jsonl(labelled / "teacher.jsonl")
    base = read_jsonl(labelled / "base.jsonl")
    replaced, _ = soft.replace_divergent(teacher, base, 0.5)
    write_jsonl(tmp_path / "replaced.jsonl", replaced)
    tokenizer = load_tokenizer(tiny_model_dir)
    norms = {}
    for name, path in (("before", labelled / "teacher.jsonl"), ("after", tmp_path / "replaced.jsonl")):
        data = read_audit_data(path)
        control = base_labels(load_model(tiny_model_dir), tokenizer, data, tiny_model_dir)
        indices = list(range(12))
        objective = StudentObjective(data, indices, pair_control(data, indices, control), tokenizer)
        result = first_order_prediction(load_model(tiny_model_dir), tokenizer, objective, [group()],
                                        fo_settings(geometry="sgd", n_minibatches=4))
        norms[name] = float(np.mean(result.gradient_norms))
    assert norms["after"] < norms["before"]
