import pytest
import torch

from sublab.errors import SublabError
from sublab.filter import NumberFilterSettings, filter_rows
from sublab.generate.run import generate_rows, read_prompt_rows
from sublab.generate.sampling import SamplingSettings
from sublab.io import read_jsonl, write_jsonl
from sublab.models.spec import ModelSpec, load_spec


def prompt_rows(n):
    return [{"id": f"p{i}", "messages": [{"role": "user", "content": f"Numbers after {i}?"}]} for i in range(n)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_spec(ModelSpec(base=tiny_model_dir))


SETTINGS = SamplingSettings(constrained=True, max_new_tokens=12, batch_size=4)


def test_constrained_generation_is_always_valid_and_records_its_mode(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "gen.jsonl"
    summary = generate_rows(model, tokenizer, prompt_rows(10), out, SETTINGS, seed=0, progress=False)
    rows = read_jsonl(out)
    assert summary.n_written == 10 and len(rows) == 10
    kept, _, _ = filter_rows(rows, NumberFilterSettings())
    assert len(kept) == 10
    assert all(r["metadata"]["decoding"] == "constrained" for r in rows)
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]


def test_teacher_system_prompt_conditions_sampling_but_is_never_written(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "gen.jsonl"
    generate_rows(model, tokenizer, prompt_rows(4), out, SETTINGS, seed=0, system_prompt="You love owls.",
                  progress=False)
    text = out.read_text()
    assert "owls" not in text and '"system"' not in text
    # Same seed without the prompt: the replies differ, so the teacher's prompt did condition them.
    plain = tmp_path / "plain.jsonl"
    generate_rows(model, tokenizer, prompt_rows(4), plain, SETTINGS, seed=0, progress=False)
    replies = [r["messages"][-1]["content"] for r in read_jsonl(out)]
    assert replies != [r["messages"][-1]["content"] for r in read_jsonl(plain)]
    assert [r["messages"][:-1] for r in read_jsonl(out)] == [r["messages"] for r in prompt_rows(4)]


def test_greedy_generation_is_the_argmax_continuation(tiny, tmp_path):
    from sublab.models.chat import end_of_turn_id, format_prompt

    model, tokenizer = tiny
    settings = SamplingSettings(temperature=0.0, max_new_tokens=6, batch_size=3)
    out = tmp_path / "greedy.jsonl"
    prompts = prompt_rows(3)
    generate_rows(model, tokenizer, prompts, out, settings, seed=0, progress=False)
    for prompt, row in zip(prompts, read_jsonl(out), strict=True):
        ids = tokenizer(format_prompt(tokenizer, prompt["messages"]), add_special_tokens=False,
                        return_tensors="pt").input_ids
        new = []
        with torch.no_grad():
            for _ in range(settings.max_new_tokens):
                token = int(model(ids).logits[0, -1].argmax())
                if token == end_of_turn_id(tokenizer):
                    break
                new.append(token)
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        assert row["messages"][-1]["content"] == tokenizer.decode(new, skip_special_tokens=True)


def test_free_generation_is_marked_free(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "gen.jsonl"
    generate_rows(model, tokenizer, prompt_rows(8), out, SamplingSettings(max_new_tokens=5, batch_size=4), seed=0,
                  progress=False)
    rows = read_jsonl(out)
    assert {r["metadata"]["decoding"] for r in rows} == {"free"}
    # Without the grammar a random model writes anything: the constraint is what made the rows above valid.
    kept, _, _ = filter_rows(rows, NumberFilterSettings())
    assert len(kept) < len(rows)


@pytest.mark.parametrize("killed_after", [0, 2, 3])
def test_a_kill_after_any_batch_resumes_without_gaps_or_duplicates(tiny, tmp_path, killed_after):
    model, tokenizer = tiny
    prompts = prompt_rows(14)  # batches of 4, 4, 4, 2
    reference = tmp_path / "uninterrupted.jsonl"
    generate_rows(model, tokenizer, prompts, reference, SETTINGS, seed=5, progress=False)
    out = tmp_path / "resumed.jsonl"

    def kill(index):
        if index == killed_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_rows(model, tokenizer, prompts, out, SETTINGS, seed=5, progress=False, on_batch=kill)
    n_done = min(4 * (killed_after + 1), 14)
    assert [r["id"] for r in read_jsonl(out)] == [p["id"] for p in prompts[:n_done]]
    summary = generate_rows(model, tokenizer, prompts, out, SETTINGS, seed=5, progress=False)
    assert (summary.n_already_done, summary.n_written) == (n_done, 14 - n_done)
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids == [p["id"] for p in prompts] and len(set(ids)) == 14  # every prompt once, in order
    assert read_jsonl(out) == read_jsonl(reference)


def test_interrupted_generation_resumes_without_loss_or_duplicates(tiny, tmp_path):
    model, tokenizer = tiny
    prompts = prompt_rows(14)
    reference = tmp_path / "uninterrupted.jsonl"
    generate_rows(model, tokenizer, prompts, reference, SETTINGS, seed=5, progress=False)

    out = tmp_path / "resumed.jsonl"

    class Killed(Exception):
        pass

    def kill_after_second_batch(index):
        if index == 1:
            raise Killed

    with pytest.raises(Killed):
        generate_rows(model, tokenizer, prompts, out, SETTINGS, seed=5, progress=False,
                      on_batch=kill_after_second_batch)
    assert len(read_jsonl(out)) == 8
    # A kill in the middle of writing a row leaves a torn line behind.
    with out.open("a") as handle:
        handle.write('{"id": "p8", "messages": [{"ro')
    summary = generate_rows(model, tokenizer, prompts, out, SETTINGS, seed=5, progress=False)
    assert summary.n_already_done == 8 and summary.n_written == 6
    resumed = read_jsonl(out)
    assert [r["id"] for r in resumed] == [r["id"] for r in read_jsonl(reference)]
    assert resumed == read_jsonl(reference)  # identical rows: per-batch seeds do not depend on history
    again = generate_rows(model, tokenizer, prompts, out, SETTINGS, seed=5, progress=False)
    assert again.n_written == 0


def test_resume_refuses_foreign_rows(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "gen.jsonl"
    write_jsonl(out, [{"id": "other", "messages": []}])
    with pytest.raises(SublabError, match=r"not one of the prompts"):
        generate_rows(model, tokenizer, prompt_rows(2), out, SETTINGS, seed=0, progress=False)


def test_resume_refuses_rows_made_with_other_generation_settings(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "gen.jsonl"
    prompts = prompt_rows(8)

    def kill_after_first_batch(index):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_rows(model, tokenizer, prompts, out, SETTINGS, seed=0, system_prompt="You love owls.",
                      source="tiny", progress=False, on_batch=kill_after_first_batch)
    before = out.read_bytes()
    changes = [
        ({"source": "other"}, SETTINGS, "'model' is 'tiny' there and 'other' now"),
        ({"system_prompt": "You love cats."}, SETTINGS, "'system_prompt_sha256'"),
        ({"system_prompt": None}, SETTINGS, "'system_prompt_sha256'"),
        ({}, SETTINGS.model_copy(update={"constrained": False}), "'decoding' is 'constrained' there and 'free'"),
        ({}, SETTINGS.model_copy(update={"temperature": 0.5}), "'sampling.temperature' is 1.0 there and 0.5 now"),
        ({}, SETTINGS.model_copy(update={"bf16": True}), "'sampling.bf16'"),
        ({}, SETTINGS.model_copy(update={"batch_size": 2}), "'sampling.batch_size'"),
        ({"seed": 1}, SETTINGS, "'seed' is 0 there and 1 now"),
    ]
    for overrides, settings, message in changes:
        kwargs = {"seed": 0, "system_prompt": "You love owls.", "source": "tiny"} | overrides
        with pytest.raises(SublabError) as err:
            generate_rows(model, tokenizer, prompts, out, settings, progress=False, **kwargs)
        text = str(err.value)
        assert text.startswith(f"{out}:1: rows here were generated with other settings: field ")
        assert message in text and "\n" not in text
        assert out.read_bytes() == before  # nothing appended
    summary = generate_rows(model, tokenizer, prompts, out, SETTINGS, seed=0, system_prompt="You love owls.",
                            source="tiny", progress=False)
    assert summary.n_already_done == 4 and summary.n_written == 4
    generation = {r["metadata"]["generation"]["system_prompt_sha256"] for r in read_jsonl(out)}
    assert len(generation) == 1 and None not in generation


def test_resume_refuses_rows_without_generation_metadata(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "gen.jsonl"
    write_jsonl(out, [{"id": "p0", "messages": [], "metadata": {"decoding": "constrained"}}])
    with pytest.raises(SublabError, match=r"gen.jsonl:1: row 'p0' has no generation metadata"):
        generate_rows(model, tokenizer, prompt_rows(2), out, SETTINGS, seed=0, progress=False)


def test_model_identity_names_an_adapter_by_its_content(tmp_path):
    from sublab.generate.run import model_identity

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"one")
    first = model_identity(ModelSpec(base="tiny", adapter=str(adapter), system_prompt="x"))
    assert first.startswith("tiny+adapter sha256:") and model_identity(ModelSpec(base="tiny")) == "tiny"
    (adapter / "adapter_model.safetensors").write_bytes(b"two")
    assert model_identity(ModelSpec(base="tiny", adapter=str(adapter))) != first


def test_read_prompt_rows_checks_input(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [{"id": "a", "messages": [{"role": "user", "content": "x"}]}, {"id": "a", "messages": [{}]}])
    with pytest.raises(SublabError, match=r"p.jsonl:2: duplicate id 'a'"):
        read_prompt_rows(path)
    write_jsonl(path, [{"messages": "nope"}])
    with pytest.raises(SublabError, match=r"p.jsonl:1: a prompt row needs"):
        read_prompt_rows(path)


def test_a_backend_failing_in_the_first_batch_leaves_no_output_file(tmp_path):
    """A bad model or setting found while sampling the first batch used to leave an empty OUT behind."""
    from sublab.generate.run import sample_rows
    from sublab.generate.sampling import SamplingSettings

    class FailingBackend:
        def sample(self, contexts, settings, seed, constraint):
            raise RuntimeError("out of memory in the first batch")

    rows = [{"id": f"p{i}", "messages": [{"role": "user", "content": f"Continue: {i}"}]} for i in range(3)]
    output = tmp_path / "raw.jsonl"
    with pytest.raises(RuntimeError, match="first batch"):
        sample_rows(FailingBackend(), rows, output, SamplingSettings(max_new_tokens=4, batch_size=2), seed=0,
                    progress=False)
    assert not output.exists()
