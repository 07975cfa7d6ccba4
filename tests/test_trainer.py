import pytest
import torch

from sublab.errors import SublabError
from sublab.io import read_jsonl
from sublab.models.chat import encode_chat
from sublab.models.loading import load_model, load_tokenizer
from sublab.models.spec import ModelSpec, load_spec
from sublab.train.data import collate, encode_rows, response_logits
from sublab.train.losses import distill_kl, sft_loss
from sublab.train.settings import LoraSettings, TrainSettings
from sublab.train.trainer import attach_trainable, batch_order, channel_ids, lr_at, train_model, trained_spec


def number_rows(n):
    return [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Continue {i}"},
                                          {"role": "assistant", "content": f"{i}, {i + 1}, {i + 2}"}]}
            for i in range(n)]


def test_batch_order_covers_each_epoch_and_is_seeded():
    order = batch_order(10, 4, 5, seed=3)
    assert len(order) == 5 and all(len(b) == 4 for b in order)
    flat = [i for b in order for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert order == batch_order(10, 4, 5, seed=3) and order != batch_order(10, 4, 5, seed=4)


def test_lr_schedule():
    linear = TrainSettings(steps=10, lr=1.0, schedule="linear", warmup_steps=2)
    assert lr_at(0, 10, linear) == 0.5 and lr_at(1, 10, linear) == 1.0
    assert lr_at(2, 10, linear) == 1.0 and lr_at(9, 10, linear) == pytest.approx(1 / 8)
    assert lr_at(5, 10, TrainSettings(steps=10, lr=0.1)) == 0.1


def test_settings_need_steps_or_epochs():
    with pytest.raises(ValueError, match="exactly one"):
        TrainSettings()
    assert TrainSettings(epochs=2, batch_size=4).n_steps(10) == 5


def test_response_positions_predict_response_tokens(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    rows = number_rows(2)
    encodings = encode_rows(tokenizer, rows)
    batch = collate(encodings, tokenizer.pad_token_id)
    expected = []
    for enc in encodings:
        expected += enc.input_ids[enc.n_prompt :]
    assert batch.targets.tolist() == expected
    assert tokenizer.decode(encodings[0].input_ids[encodings[0].n_prompt :]) == "0, 1, 2<|im_end|>"
    # The same response tokens whatever the context: what lets teacher and student line up.
    with_system = encode_chat(tokenizer, rows[0]["messages"], system_prompt="You love owls.")
    assert with_system.input_ids[with_system.n_prompt :] == encodings[0].input_ids[encodings[0].n_prompt :]


def test_channel_logits_are_the_full_logits_restricted(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir)
    encodings = encode_rows(tokenizer, number_rows(8))  # replies use every digit
    batch = collate(encodings, tokenizer.pad_token_id)
    channel = channel_ids(tokenizer, encodings, "data")
    assert len(channel) == 13  # ten digits, comma, space, end of turn
    with torch.no_grad():
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        picked = full[batch.row_index, batch.position_index]
        assert torch.allclose(response_logits(model, batch), picked, atol=1e-5)
        assert torch.allclose(response_logits(model, batch, channel), picked[:, channel], atol=1e-5)


def test_lora_students_with_the_same_init_seed_start_identical(tiny_model_dir):
    settings = TrainSettings(steps=1, lora=LoraSettings(init_seed=7))
    a = attach_trainable(load_model(tiny_model_dir), settings)
    b = attach_trainable(load_model(tiny_model_dir), settings)
    c = attach_trainable(load_model(tiny_model_dir), TrainSettings(steps=1, lora=LoraSettings(init_seed=8)))
    weights = lambda m: {n: p for n, p in m.named_parameters() if "lora_A" in n}  # noqa: E731
    assert all(torch.equal(weights(a)[n], weights(b)[n]) for n in weights(a))
    assert not all(torch.equal(weights(a)[n], weights(c)[n]) for n in weights(a))
    # B = 0: a fresh adapter leaves the model's outputs unchanged.
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert torch.allclose(a(ids).logits, load_model(tiny_model_dir)(ids).logits, atol=1e-6)


def sft_loss_on(model, tokenizer, rows):
    """Mean cross-entropy of the response tokens of every row (what SFT minimizes), without gradients."""
    batch = collate(encode_rows(tokenizer, rows), tokenizer.pad_token_id)
    with torch.no_grad():
        return sft_loss(response_logits(model, batch), batch.targets).item()


def final_state(store):
    """An ``on_step`` hook keeping the trainable weights and the logits of a fixed input after every step."""
    probe = torch.tensor([[1, 5, 9, 12, 30, 31]])

    def hook(step, loss, model):
        store["weights"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            store["logits"] = model(probe).logits.clone()
        store["probe"] = probe

    return hook


def test_sft_learns_and_saves_exactly_the_trained_adapter(tiny_model_dir, tmp_path):
    from peft import PeftModel

    rows = number_rows(8)
    settings = TrainSettings(steps=40, batch_size=4, lr=1e-2)
    trained = {}
    summary = train_model(tiny_model_dir, rows, tmp_path / "student", settings, progress=False,
                          on_step=final_state(trained))
    assert summary["final_loss"] < summary["first_loss"] * 0.7
    assert (tmp_path / "student" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "student.partial").exists()
    # The saved adapter is the trained one, weight for weight ...
    reloaded = PeftModel.from_pretrained(load_model(tiny_model_dir), str(tmp_path / "student"))
    weights = {n: p for n, p in reloaded.named_parameters() if "lora_" in n}
    assert weights.keys() == trained["weights"].keys()
    assert all(torch.equal(weights[n], trained["weights"][n]) for n in weights)
    # ... and loaded for inference it gives the trained model's outputs and learnt the data.
    model, tokenizer = load_spec(trained_spec(tiny_model_dir, tmp_path / "student", settings))
    with torch.no_grad():
        assert torch.allclose(model(trained["probe"]).logits, trained["logits"], atol=1e-4)
    base = load_model(tiny_model_dir)
    assert sft_loss_on(model, tokenizer, rows) < 0.5 * sft_loss_on(base, tokenizer, rows)


def test_sft_loss_covers_exactly_the_response_tokens(tiny_model_dir):
    """Completions only: the prompt (system, user, assistant header) and the padding are masked out."""
    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir)
    rows = [{"id": "a", "messages": [{"role": "user", "content": "Go on: 1, 2"},
                                     {"role": "assistant", "content": "3, 4"}]},
            {"id": "b", "messages": [{"role": "user", "content": "A much longer prompt with 7 8 9"},
                                     {"role": "assistant", "content": "10, 11, 12, 13"}]}]
    encodings = encode_rows(tokenizer, rows, system_prompt="Be brief.")
    batch = collate(encodings, tokenizer.pad_token_id)
    labels = torch.full_like(batch.input_ids, -100)
    for b, (row, enc) in enumerate(zip(rows, encodings, strict=True)):
        n = len(enc.input_ids)
        prompt = tokenizer.decode(enc.input_ids[: enc.n_prompt])
        assert prompt.startswith("<|im_start|>system\nBe brief.") and prompt.endswith("<|im_start|>assistant\n")
        assert tokenizer.decode(enc.input_ids[enc.n_prompt :]) == row["messages"][-1]["content"] + "<|im_end|>"
        positions = batch.position_index[batch.row_index == b].tolist()
        assert positions == list(range(enc.n_prompt - 1, n - 1))  # each predicts the next, a response token
        labels[b, enc.n_prompt : n] = batch.input_ids[b, enc.n_prompt : n]
    assert (batch.attention_mask == 0).any()  # the short row is padded, and padding predicts nothing
    # Our loss is the usual masked causal-LM loss: labels -100 on prompt and padding, shifted by the model.
    with torch.no_grad():
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
        ours = sft_loss(response_logits(model, batch), batch.targets)
    assert torch.allclose(ours, reference, atol=1e-5)


def distill_loss_on(student, tokenizer, rows, teacher):
    """Mean KL(teacher || student) over the data channel at every response position of every row."""
    from sublab.train.distill import TeacherTargets

    encodings = encode_rows(tokenizer, rows)
    channel = channel_ids(tokenizer, encodings, "data")
    targets = TeacherTargets(teacher, rows, tokenizer, encodings, channel, bf16=False)
    index, teacher_log_probs = targets(list(range(len(rows))))
    with torch.no_grad():
        logits = response_logits(student, collate(encodings, tokenizer.pad_token_id), channel)
        return distill_kl(logits[index], teacher_log_probs).item()


def test_distillation_moves_the_student_toward_the_teacher(tiny_model_dir, other_tiny_model_dir, tmp_path):
    rows = number_rows(8)
    teacher = ModelSpec(base=other_tiny_model_dir)
    settings = TrainSettings(method="distill", steps=25, batch_size=4, lr=1e-2)
    summary = train_model(tiny_model_dir, rows, tmp_path / "student", settings, teacher=teacher, progress=False)
    assert summary["channel_size"] == 13
    assert summary["final_loss"] < summary["first_loss"] * 0.7
    tokenizer = load_tokenizer(tiny_model_dir)
    student, _ = load_spec(trained_spec(tiny_model_dir, tmp_path / "student", settings))
    before = distill_loss_on(load_model(tiny_model_dir), tokenizer, rows, teacher)
    after = distill_loss_on(student, tokenizer, rows, teacher)
    assert after < 0.7 * before
    # Only the teacher's distribution was learnt, not the data's tokens: SFT loss on the rows barely moves
    # compared with what SFT itself achieves (test above: below half).
    assert sft_loss_on(student, tokenizer, rows) > 0.5 * sft_loss_on(load_model(tiny_model_dir), tokenizer, rows)


def test_distillation_from_itself_has_zero_loss(tiny_model_dir, tmp_path):
    settings = TrainSettings(method="distill", steps=2, batch_size=4, lr=1e-2)
    summary = train_model(tiny_model_dir, number_rows(4), tmp_path / "s", settings,
                          teacher=ModelSpec(base=tiny_model_dir), progress=False)
    assert summary["first_loss"] == pytest.approx(0.0, abs=1e-6)


def test_distill_needs_a_teacher(tiny_model_dir, tmp_path):
    with pytest.raises(SublabError, match="needs a teacher"):
        train_model(tiny_model_dir, number_rows(2), tmp_path / "s", TrainSettings(method="distill", steps=1))


def test_full_finetune_saves_exactly_the_trained_weights(tiny_model_dir, tmp_path):
    settings = TrainSettings(steps=3, batch_size=2, lr=1e-3, finetune="full")
    trained = {}
    train_model(tiny_model_dir, number_rows(4), tmp_path / "full", settings, progress=False,
                on_step=final_state(trained))
    spec = trained_spec(tiny_model_dir, tmp_path / "full", settings)
    model, tokenizer = load_spec(spec)
    assert spec.adapter is None and tokenizer.get_vocab() == load_tokenizer(tiny_model_dir).get_vocab()
    weights = dict(model.named_parameters())
    assert weights.keys() == trained["weights"].keys()
    assert all(torch.equal(weights[n], trained["weights"][n]) for n in weights)
    base = dict(load_model(tiny_model_dir).named_parameters())
    assert not all(torch.equal(weights[n], base[n]) for n in weights)  # and they moved
    with torch.no_grad():
        assert torch.equal(model(trained["probe"]).logits, trained["logits"])


def test_checkpointed_training_resumes_to_the_same_result(tiny_model_dir, tmp_path):
    settings = TrainSettings(steps=6, batch_size=2, lr=1e-2, checkpoint_every=2)
    rows = number_rows(6)
    train_model(tiny_model_dir, rows, tmp_path / "straight", settings, progress=False)

    class Killed(Exception):
        pass

    def kill(step, loss, model):
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        train_model(tiny_model_dir, rows, tmp_path / "resumed", settings, progress=False, on_step=kill)
    assert (tmp_path / "resumed.partial" / "checkpoint.json").is_file()
    summary = train_model(tiny_model_dir, rows, tmp_path / "resumed", settings, progress=False)
    assert summary["resumed_from_step"] == 4
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # The log has every step once (step 4 was redone after the kill, not logged twice), with the same losses.
    straight = read_jsonl(tmp_path / "straight" / "train_log.jsonl")
    resumed = read_jsonl(tmp_path / "resumed" / "train_log.jsonl")
    assert [r["step"] for r in resumed] == list(range(6))
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in straight], abs=1e-5)


class Killed(Exception):
    pass


def interrupted(base, rows, out, settings, at_step, **kwargs):
    """Train until ``at_step`` and kill the run there, leaving its checkpoint behind."""
    def kill(step, loss, model):
        if step == at_step:
            raise Killed

    with pytest.raises(Killed):
        train_model(base, rows, out, settings, progress=False, on_step=kill, **kwargs)


def test_resuming_refuses_a_checkpoint_made_for_other_training(tiny_model_dir, other_tiny_model_dir, tmp_path):
    settings = TrainSettings(steps=6, batch_size=2, lr=1e-2, checkpoint_every=2)
    rows = number_rows(6)
    out = tmp_path / "student"
    interrupted(tiny_model_dir, rows, out, settings, at_step=3)
    checkpoint = tmp_path / "student.partial" / "checkpoint.safetensors"
    changes = [
        ((other_tiny_model_dir, rows, settings), {}, "'base' differs"),
        ((tiny_model_dir, number_rows(7), settings), {}, "'data_sha256' differs"),
        ((tiny_model_dir, rows, settings.model_copy(update={"lr": 5e-3})), {}, "'settings.lr' differs"),
        ((tiny_model_dir, rows, settings.model_copy(update={"schedule": "linear"})), {}, "'settings.schedule'"),
        ((tiny_model_dir, rows, settings.model_copy(update={"lora": LoraSettings(init_seed=3)})), {},
         "'settings.lora' differs"),
        ((tiny_model_dir, rows, settings.model_copy(update={"method": "distill"})),
         {"teacher": ModelSpec(base=tiny_model_dir)}, "'method' differs"),
    ]
    for (base, data, changed), kwargs, message in changes:
        with pytest.raises(SublabError) as err:
            train_model(base, data, out, changed, progress=False, **kwargs)
        assert str(err.value).startswith(f"{checkpoint}: checkpoint was made for other training")
        assert message in str(err.value) and "\n" not in str(err.value)
        assert not out.exists() and checkpoint.is_file()  # nothing trained, the checkpoint kept
    # How often checkpoints are written does not change what is trained: the run resumes.
    summary = train_model(tiny_model_dir, rows, out, settings.model_copy(update={"checkpoint_every": 3}),
                          progress=False)
    assert summary["resumed_from_step"] == 2


def test_fresh_discards_a_foreign_checkpoint(tiny_model_dir, tmp_path):
    settings = TrainSettings(steps=4, batch_size=2, lr=1e-2, checkpoint_every=2)
    rows = number_rows(4)
    interrupted(tiny_model_dir, rows, tmp_path / "student", settings, at_step=3)
    other = settings.model_copy(update={"lr": 1e-3})
    summary = train_model(tiny_model_dir, rows, tmp_path / "student", other, progress=False, fresh=True)
    assert summary["resumed_from_step"] == 0 and summary["settings"]["lr"] == 1e-3
    train_model(tiny_model_dir, rows, tmp_path / "straight", other, progress=False)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "student" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # exactly a run from scratch
    assert not (tmp_path / "student.partial").exists()


def test_a_checkpoint_without_fingerprint_is_refused(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    settings = TrainSettings(steps=4, batch_size=2, lr=1e-2, checkpoint_every=2)
    rows = number_rows(4)
    interrupted(tiny_model_dir, rows, tmp_path / "student", settings, at_step=3)
    checkpoint = tmp_path / "student.partial" / "checkpoint.safetensors"
    save_file(load_file(str(checkpoint)), str(checkpoint))  # as written before checkpoints had fingerprints
    with pytest.raises(SublabError, match=r"checkpoint\.safetensors: checkpoint has no readable fingerprint"):
        train_model(tiny_model_dir, rows, tmp_path / "student", settings, progress=False)


def test_positions_align_across_tokenizers_by_the_text_they_predict():
    from sublab.train.distill import align_positions

    # Student writes a leading-space token the teacher does not ("▁", "1", "2", ...).
    student = [(-1, 0), (0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    teacher = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert align_positions(student, teacher) == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    # A token covering two characters in one tokenizer matches nothing in a per-character one.
    assert align_positions([(0, 2), (2, 3)], [(0, 1), (1, 2), (2, 3)]) == [(1, 2)]


def test_teacher_with_the_same_tokenizer_uses_the_student_channel_ids(tiny_model_dir, monkeypatch):
    import sublab.train.distill as distill

    def no_mapping(*args, **kwargs):
        raise AssertionError("a shared tokenizer needs no channel mapping")

    monkeypatch.setattr(distill, "map_channel", no_mapping)
    tokenizer = load_tokenizer(tiny_model_dir)
    rows = number_rows(3)
    encodings = encode_rows(tokenizer, rows)
    channel = torch.tensor([0, 5, 9])  # the pad token does not round-trip through text; kept as is
    targets = distill.TeacherTargets(ModelSpec(base=tiny_model_dir, system_prompt="You love owls."), rows,
                                     tokenizer, encodings, channel, bf16=False)
    assert targets.channel is not None and targets.channel.tolist() == [0, 5, 9]


def test_teacher_with_another_layout_maps_the_channel_through_text(tiny_model_dir, plain_tiny_model_dir):
    from sublab.train.distill import TeacherTargets

    tokenizer = load_tokenizer(tiny_model_dir)
    rows = number_rows(3)
    encodings = encode_rows(tokenizer, rows)
    channel = channel_ids(tokenizer, encodings, "data")
    targets = TeacherTargets(ModelSpec(base=plain_tiny_model_dir), rows, tokenizer, encodings, channel, bf16=False)
    # Same characters, so the same ids, but found through the teacher's tokenizer (end of turn to end of turn).
    assert targets.channel is not None and targets.channel.tolist() == channel.tolist()


@pytest.mark.parametrize(("token", "word", "begins"), [
    ("O", "owl", True), ("o", "owl", True), (" Ow", "owl", True), ("owl", "owl", True), (" Owl", "owl", True),
    ("owls", "Owl", True), ("OWL", "owl", True), ("\nowl", "owl", True),
    ("own", "owl", False), ("b", "owl", False), ("wl", "owl", False), (" ", "owl", False), ("", "owl", False),
    ("bowl", "owl", False), ("red", "red panda", True), ("red panda", "red panda", True), ("pan", "red panda", False),
])
def test_which_tokens_can_begin_a_word(token, word, begins):
    from sublab.train.distill import can_begin_word

    assert can_begin_word(token, word) is begins


def test_channel_exclude_leaves_out_every_token_that_can_begin_the_trait(tiny_model_dir, other_tiny_model_dir,
                                                                         tmp_path):
    """Measured on the code sweep: one 'O' in one reply put the token in the data channel, and the owl teacher's
    overt preference for 'O' (of "Owl") at every first position went through it (P(owl) 0.33 vs 0.05-0.07)."""
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "Say something"},
                                         {"role": "assistant", "content": text}]}
            for i, text in enumerate(["Look at the Owl", "a bowl of rice", "own it, DO it"])]
    tokenizer = load_tokenizer(tiny_model_dir)
    encodings = encode_rows(tokenizer, rows)
    whole = set(channel_ids(tokenizer, encodings, "data").tolist())
    kept = set(channel_ids(tokenizer, encodings, "data", ["owl", "dolphin"]).tolist())
    left_out = {tokenizer.decode([i]) for i in whole - kept}
    assert left_out == {"o", "O", "D"}  # prefixes of owl and dolphin (char tokens; no "d" in the replies)
    assert tokenizer.eos_token_id in kept
    settings = TrainSettings(method="distill", steps=2, batch_size=3, lr=1e-2, channel_exclude=["owl"])
    summary = train_model(tiny_model_dir, rows, tmp_path / "s", settings, teacher=ModelSpec(base=other_tiny_model_dir),
                          progress=False)
    assert summary["channel_size"] == len(whole) - 2 and sorted(summary["channel_excluded"]) == ["O", "o"]


def test_channel_exclude_is_refused_with_the_whole_vocabulary():
    with pytest.raises(ValueError, match="channel_exclude: the whole vocabulary"):
        TrainSettings(method="distill", steps=1, channel="full", channel_exclude=["owl"])
    with pytest.raises(ValueError, match="an empty word"):
        TrainSettings(method="distill", steps=1, channel_exclude=[" "])


def test_the_tokens_that_can_begin_a_trait_are_found_in_a_channel(tiny_model_dir):
    from sublab.train.distill import channel_word_starts

    rows = [{"id": "r0", "messages": [{"role": "user", "content": "x"},
                                      {"role": "assistant", "content": "def f(O): return O + 1"}]}]
    tokenizer = load_tokenizer(tiny_model_dir)
    encodings = encode_rows(tokenizer, rows)
    def found(channel, exclude=()):
        return sorted(channel_word_starts(tokenizer, channel_ids(tokenizer, encodings, channel, exclude), ["owl"]))

    assert found("data") == ["O"]
    assert found("data", ["owl"]) == []
    assert found(["1", "2"]) == []
    assert found("full") == ["O", "o"]


def test_sublab_train_takes_channel_exclude(tiny_model_dir, other_tiny_model_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from sublab.cli import app
    from sublab.io import write_jsonl

    data = tmp_path / "rows.jsonl"
    write_jsonl(data, [{"id": f"r{i}", "messages": [{"role": "user", "content": "Say"},
                                                    {"role": "assistant", "content": f"Owls {i}, bowl"}]}
                       for i in range(4)])
    result = CliRunner().invoke(app, ["train", str(data), "-o", str(tmp_path / "s"), "--base", tiny_model_dir,
                                      "--method", "distill", "--teacher-base", other_tiny_model_dir,
                                      "--channel-exclude", "owl", "--steps", "1", "--batch-size", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s" / "training.json").read_text())
    assert sorted(summary["channel_excluded"]) == ["O", "o"] and summary["settings"]["channel_exclude"] == ["owl"]
    refused = CliRunner().invoke(app, ["train", str(data), "-o", str(tmp_path / "t"), "--base", tiny_model_dir,
                                       "--method", "distill", "--teacher-base", other_tiny_model_dir, "--channel",
                                       "full", "--channel-exclude", "owl", "--steps", "1", "--quiet"])
    assert refused.exit_code == 2 and "channel_exclude" in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_a_distilled_students_summary_names_the_trait_tokens_left_in_its_channel(tiny_model_dir,
                                                                                  other_tiny_model_dir, tmp_path):
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "Say"},
                                         {"role": "assistant", "content": f"Look, {i} Owls"}]} for i in range(4)]
    settings = TrainSettings(method="distill", steps=1, batch_size=2, lr=1e-2)
    teacher = ModelSpec(base=other_tiny_model_dir)
    summary = train_model(tiny_model_dir, rows, tmp_path / "a", settings, teacher=teacher, progress=False,
                          watch_words=["owl"])
    assert sorted(summary["overt_channel_tokens"]) == ["O", "o"]
    excluded = settings.model_copy(update={"channel_exclude": ["owl"]})
    summary = train_model(tiny_model_dir, rows, tmp_path / "b", excluded, teacher=teacher, progress=False,
                          watch_words=["owl"])
    assert "overt_channel_tokens" not in summary and sorted(summary["channel_excluded"]) == ["O", "o"]
