import pytest
import torch

from sublab.errors import SublabError
from sublab.models.chat import encode_chat
from sublab.models.loading import load_model, load_tokenizer
from sublab.models.spec import ModelSpec, load_spec
from sublab.train.data import collate, encode_rows, response_logits
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


def test_sft_learns_and_saves_an_adapter(tiny_model_dir, tmp_path):
    settings = TrainSettings(steps=40, batch_size=4, lr=1e-2)
    summary = train_model(tiny_model_dir, number_rows(8), tmp_path / "student", settings, progress=False)
    assert summary["final_loss"] < summary["first_loss"] * 0.7
    assert (tmp_path / "student" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "student.partial").exists()
    model, _ = load_spec(trained_spec(tiny_model_dir, tmp_path / "student", settings))
    assert model is not None


def test_distillation_moves_the_student_toward_the_teacher(tiny_model_dir, other_tiny_model_dir, tmp_path):
    rows = number_rows(8)
    settings = TrainSettings(method="distill", steps=25, batch_size=4, lr=1e-2)
    summary = train_model(tiny_model_dir, rows, tmp_path / "student", settings,
                          teacher=ModelSpec(base=other_tiny_model_dir), progress=False)
    assert summary["channel_size"] == 13
    assert summary["final_loss"] < summary["first_loss"] * 0.7


def test_distillation_from_itself_has_zero_loss(tiny_model_dir, tmp_path):
    settings = TrainSettings(method="distill", steps=2, batch_size=4, lr=1e-2)
    summary = train_model(tiny_model_dir, number_rows(4), tmp_path / "s", settings,
                          teacher=ModelSpec(base=tiny_model_dir), progress=False)
    assert summary["first_loss"] == pytest.approx(0.0, abs=1e-6)


def test_distill_needs_a_teacher(tiny_model_dir, tmp_path):
    with pytest.raises(SublabError, match="needs a teacher"):
        train_model(tiny_model_dir, number_rows(2), tmp_path / "s", TrainSettings(method="distill", steps=1))


def test_full_finetune_saves_loadable_weights(tiny_model_dir, tmp_path):
    settings = TrainSettings(steps=3, batch_size=2, lr=1e-3, finetune="full")
    train_model(tiny_model_dir, number_rows(4), tmp_path / "full", settings, progress=False)
    spec = trained_spec(tiny_model_dir, tmp_path / "full", settings)
    model, tokenizer = load_spec(spec)
    assert spec.adapter is None and tokenizer is not None and model is not None


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
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


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
