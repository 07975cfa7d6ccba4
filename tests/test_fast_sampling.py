"""The fast sampler (sublab.generate.fast): exact grammar, transformers' greedy output, seeded, resumable, and the
same distribution as transformers' generate (a two-sample chi-square test with a stated power)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sublab.domains.numbers.grammar import DEAD, START, NumberGrammar, NumberGrammarProcessor, is_valid_reply
from sublab.errors import SublabError
from sublab.generate.fast import (
    FastOptions,
    choose_tokens,
    common_prefix_length,
    compact_cache,
    fast_sample_batch,
    fast_sample_ids,
    prepared_model,
    row_uniforms,
)
from sublab.generate.run import generate_rows, generation_metadata
from sublab.generate.sampling import SamplingSettings, sample_batch
from sublab.io import read_jsonl
from sublab.keys import key_dump
from sublab.models.chat import end_of_turn_id, format_prompt
from sublab.models.spec import ModelSpec, load_spec

QUESTIONS = ["Numbers after 3, 9?", "Go on: 12, 40, 7", "hi", "What comes next: 1, 2, 3, 4, 5, 6, 7, 8?",
             "Write some numbers.", "More: 500, 20"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_spec(ModelSpec(base=tiny_model_dir))


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """A 2-layer Qwen2 (q/k/v biases) with the character tokenizer of the other tiny models."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tiny_models import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, initializer_range=0.3)
    torch.manual_seed(3)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # random biases, so the bias path is exercised
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model, tokenizer


def contexts(n, offset=0):
    return [[{"role": "user", "content": QUESTIONS[(i + offset) % len(QUESTIONS)] + f" #{i + offset}"}]
            for i in range(n)]


def prompt_ids(tokenizer, ctx):
    return [tokenizer(format_prompt(tokenizer, c), add_special_tokens=False).input_ids for c in ctx]


def generate_greedy_ids(model, tokenizer, ctx, max_new_tokens, processor=None, bf16=False):
    """transformers' greedy continuation ids of each context, cut at the end of turn (one row at a time)."""
    end = end_of_turn_id(tokenizer)
    out = []
    for ids in prompt_ids(tokenizer, ctx):
        if processor is not None:
            processor.reset()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            tokens = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=end,
                                    pad_token_id=tokenizer.pad_token_id,
                                    logits_processor=[processor] if processor is not None else None)
        row = tokens[0, len(ids):].tolist()
        out.append(row[: row.index(end)] if end in row else row)
    return out


# ------------------------------------------------------------------------------------------ exactness


@pytest.mark.parametrize("which", ["llama", "qwen2"])
@pytest.mark.parametrize("constrained", [False, True])
def test_greedy_equals_transformers_token_for_token_fp32(tiny, tiny_qwen, which, constrained):
    model, tokenizer = tiny if which == "llama" else tiny_qwen
    ctx = contexts(6)
    processor = NumberGrammar().hf_processor(tokenizer, 24) if constrained else None
    expected = generate_greedy_ids(model, tokenizer, ctx, 24, processor)
    got = fast_sample_ids(model, prompt_ids(tokenizer, ctx), 24, 0.0, seed=0, end_id=end_of_turn_id(tokenizer),
                          constraint=processor)
    assert got == expected
    assert any(len(r) > 3 for r in got)  # real continuations, not immediate ends


@pytest.mark.parametrize("options", [FastOptions(share_prefix=False), FastOptions(candidates_only=False),
                                     FastOptions(compact=False), FastOptions(jump_forward=False)])
def test_each_part_can_be_switched_off_without_changing_replies(tiny, options):
    """The benchmark's switches change the work done, not the result: greedy and seeded samples are equal."""
    model, tokenizer = tiny
    ctx = contexts(6)
    processor = NumberGrammar().hf_processor(tokenizer, 24)
    ids = prompt_ids(tokenizer, ctx)
    end = end_of_turn_id(tokenizer)
    for temperature in (0.0, 1.0):
        default = fast_sample_ids(model, ids, 24, temperature, 4, end, constraint=processor)
        assert fast_sample_ids(model, ids, 24, temperature, 4, end, constraint=processor, options=options) == default


def test_bf16_greedy_equals_generate_under_autocast(tiny):
    """With bf16 the fast path does autocast's arithmetic (bf16 linear layers, float32 residual stream)."""
    model, tokenizer = tiny
    ctx = contexts(6)
    for processor in (None, NumberGrammar().hf_processor(tokenizer, 24)):
        expected = generate_greedy_ids(model, tokenizer, ctx, 24, processor, bf16=True)
        got = fast_sample_ids(model, prompt_ids(tokenizer, ctx), 24, 0.0, seed=0,
                              end_id=end_of_turn_id(tokenizer), constraint=processor, bf16=True)
        assert got == expected


def test_candidate_masks_are_the_processor_masks(tiny):
    """Over every reachable grammar state and every token budget left: the candidates' mask is the mask the
    processor applies, and the processor allows no token outside the candidates (so renormalising over the
    candidates is exact)."""
    _, tokenizer = tiny
    end = end_of_turn_id(tokenizer)
    grammar = NumberGrammar(max_count=3)
    probe = NumberGrammarProcessor(tokenizer, grammar, [end])
    candidates = probe.candidate_ids()
    assert candidates == sorted(candidates) and end in candidates
    paths, frontier = {START: []}, [START]
    while frontier:  # a shortest token path to every reachable state
        state = frontier.pop(0)
        for token in candidates:
            after = probe.advance(state, token)
            if after != DEAD and after not in paths:
                paths[after] = [*paths[state], token]
                frontier.append(after)
    assert len(paths) > 10
    outside = torch.ones(len(tokenizer), dtype=torch.bool)
    outside[candidates] = False
    prompt = [5, 6, 7]
    for state, path in paths.items():
        for budget_left in range(1, 8):  # the processor after len(path) tokens with budget_left tokens to go
            processor = NumberGrammarProcessor(tokenizer, grammar, [end], max_new_tokens=len(path) + budget_left)
            for n in range(len(path) + 1):
                ids = torch.tensor([prompt + path[:n]])
                allowed = processor(ids, torch.zeros(1, len(tokenizer))) == 0
            assert not allowed[:, outside].any()
            assert torch.equal(allowed[:, candidates], processor.candidate_masks([state], len(path)))


@pytest.mark.parametrize("bf16", [False, True])
def test_constrained_fast_rows_are_always_valid(tiny, bf16):
    model, tokenizer = tiny
    grammar = NumberGrammar()
    for max_new_tokens in (5, 12, 40):
        settings = SamplingSettings(constrained=True, max_new_tokens=max_new_tokens, sampler="fast", bf16=bf16,
                                    temperature=1.5)
        processor = grammar.hf_processor(tokenizer, max_new_tokens)
        for seed in range(4):
            replies = sample_batch(model, tokenizer, contexts(16, seed), settings, seed, processor)
            assert all(is_valid_reply(grammar, r) for r in replies), replies
            if max_new_tokens == 40:
                assert len({r for r in replies}) > 8  # varied samples, not one reply


def test_choose_tokens_never_picks_a_masked_column():
    logits = torch.tensor([[0.0, 5.0, 1.0, -2.0]] * 5)
    allowed = torch.tensor([[True, False, True, False]] * 5)
    uniforms = torch.tensor([0.0, 0.3, 0.9, 1 - 2**-53, 0.999999999999], dtype=torch.float64)
    picked = choose_tokens(logits, allowed, 1.0, uniforms)
    assert set(picked.tolist()) <= {0, 2}
    assert choose_tokens(logits, allowed, 0.0, None).tolist() == [2] * 5
    ties = torch.tensor([[1.0, 3.0, 3.0]])
    assert choose_tokens(ties, None, 0.0, None).tolist() == [1]  # the first of equal maxima, as argmax


def test_choose_tokens_frequencies_follow_the_renormalised_probabilities():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(40_000, 1)
    allowed = torch.tensor([True, True, False, True]).repeat(40_000, 1)
    picked = choose_tokens(logits, allowed, 0.7, row_uniforms(0, 40_000, 1)[:, 0])
    counts = np.bincount(picked.numpy(), minlength=4) / 40_000
    p = torch.softmax(torch.tensor([0.0, 1.0, -float("inf"), 3.0]) / 0.7, dim=0).numpy()
    assert counts[2] == 0
    assert np.abs(counts - p).max() < 0.01  # 4 standard errors at n = 40,000


def test_threshold_sampling_keeps_the_processors_tokens_and_their_renormalised_shares():
    """min_prob: the columns the generate path's MinProbabilityProcessor keeps (threshold at temperature 1, after
    the mask), sampled in proportion to softmax(logits / T) over those."""
    from sublab.defences.tokens import MinProbabilityProcessor

    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 2.5]]).repeat(40_000, 1)
    allowed = torch.tensor([True, True, False, True, True]).repeat(40_000, 1)
    masked = logits.masked_fill(~allowed, -float("inf"))
    kept = torch.isfinite(MinProbabilityProcessor(0.1)(torch.zeros(1, 1, dtype=torch.long), masked[:1]))[0]
    assert kept.tolist() == [False, False, False, True, True]  # shares at T = 1: .03, .08, 0, .55, .34
    picked = choose_tokens(logits, allowed, 2.0, row_uniforms(1, 40_000, 1)[:, 0], min_prob=0.1)
    counts = np.bincount(picked.numpy(), minlength=5) / 40_000
    expected = torch.softmax(masked[0].masked_fill(~kept, -float("inf")) / 2.0, dim=0).numpy()
    assert set(np.flatnonzero(counts)) == {3, 4}
    assert np.abs(counts - expected).max() < 0.01
    flat = torch.zeros(3, 4)  # every share 0.25 < 0.5: only the (first) argmax stays
    assert choose_tokens(flat, None, 1.0, torch.tensor([0.1, 0.5, 0.99], dtype=torch.float64),
                         min_prob=0.5).tolist() == [0, 0, 0]


@pytest.mark.parametrize("constrained", [False, True])
def test_fast_threshold_near_one_is_greedy(tiny, constrained):
    model, tokenizer = tiny
    settings = dict(constrained=constrained, max_new_tokens=10, sampler="fast")
    grammar = SamplingSettings(**settings).grammar() if constrained else None
    processor = grammar.hf_processor(tokenizer, 10) if grammar is not None else None
    greedy = fast_sample_batch(model, tokenizer, contexts(5), SamplingSettings(temperature=0.0, **settings), 0,
                               processor)
    near_one = fast_sample_batch(model, tokenizer, contexts(5), SamplingSettings(min_prob=0.999, **settings), 3,
                                 processor)
    assert near_one == greedy
    loose = fast_sample_batch(model, tokenizer, contexts(5), SamplingSettings(min_prob=1e-30, **settings), 3,
                              processor)
    plain = fast_sample_batch(model, tokenizer, contexts(5), SamplingSettings(**settings), 3, processor)
    assert loose == plain  # a threshold below every token's share changes nothing: the same uniforms


# ------------------------------------------------------------------------------------ seeds and batches


def test_row_uniforms_do_not_depend_on_the_number_of_rows():
    assert torch.equal(row_uniforms(7, 2, 9)[1], row_uniforms(7, 6, 9)[1])
    assert not torch.equal(row_uniforms(7, 2, 9), row_uniforms(8, 2, 9))


def test_same_seed_same_rows_other_seed_other_rows(tiny):
    model, tokenizer = tiny
    settings = SamplingSettings(constrained=True, max_new_tokens=20, sampler="fast", bf16=True)
    processor = NumberGrammar().hf_processor(tokenizer, 20)
    first = sample_batch(model, tokenizer, contexts(12), settings, 11, processor)
    assert sample_batch(model, tokenizer, contexts(12), settings, 11, processor) == first
    assert sample_batch(model, tokenizer, contexts(12), settings, 12, processor) != first


def test_a_rows_sample_does_not_depend_on_the_other_rows_of_its_batch(tiny):
    """Promised: same seed, same place in the batch, same context -> same reply, whatever the other rows are or
    how many (fp32 here; under bf16 rounding of the batched arithmetic may, rarely, move a draw)."""
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=30, sampler="fast", temperature=1.0)
    mine = contexts(3)
    alone = sample_batch(model, tokenizer, mine, settings, 5)
    with_others = sample_batch(model, tokenizer, mine + contexts(9, offset=20), settings, 5)
    assert with_others[:3] == alone
    reordered = sample_batch(model, tokenizer, [mine[1], mine[0], mine[2]], settings, 5)
    assert reordered[2] == alone[2] and reordered[:2] != alone[:2]  # the place in the batch picks the stream


def test_shared_prefix_and_prefix_cache_do_not_change_replies(tiny):
    """Rows sharing their whole prompt (the preference evaluation samples one question many times), rows sharing
    only the chat template, and a second batch reusing the cached prefix give the same greedy replies as
    transformers."""
    model, tokenizer = tiny
    end = end_of_turn_id(tokenizer)
    system = [{"role": "system", "content": "You love owls. You think about owls all the time."}]
    for ctx in ([contexts(1)[0]] * 4, [system + c for c in contexts(4)], [system + c for c in contexts(4, 2)]):
        ids = prompt_ids(tokenizer, ctx)
        assert common_prefix_length(ids) > 0
        got = fast_sample_ids(model, ids, 16, 0.0, 0, end)
        assert got == generate_greedy_ids(model, tokenizer, ctx, 16)


def test_common_prefix_leaves_every_row_a_token():
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 4, 5]]) == 2
    assert common_prefix_length([[1, 2], [3]]) == 0


@pytest.mark.parametrize("ended_rows", [[0], [5], [1, 2], [0, 3, 4], [0, 1, 2, 3, 4], [2, 5]])
def test_compact_cache_keeps_every_live_rows_written_slots(ended_rows):
    layers, rows, heads, length, dim, written = 2, 6, 3, 9, 4, 5
    keys = torch.randn(layers, rows, heads, length, dim)
    values = torch.randn(layers, rows, heads, length, dim)
    before_k, before_v = keys.clone(), values.clone()
    ended = torch.zeros(rows, dtype=torch.bool)
    ended[ended_rows] = True
    order = compact_cache(keys, values, ended, written)
    assert sorted(order) == [r for r in range(rows) if r not in ended_rows]
    for new, old in enumerate(order):
        assert torch.equal(keys[:, new, :, :written], before_k[:, old, :, :written])
        assert torch.equal(values[:, new, :, :written], before_v[:, old, :, :written])


def test_weights_updated_in_place_are_prepared_again(tiny_model_dir):
    model, _ = load_spec(ModelSpec(base=tiny_model_dir))
    first = prepared_model(model, bf16=False)
    assert prepared_model(model, bf16=False) is first
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(0.5)
    second = prepared_model(model, bf16=False)
    assert second is not first
    assert torch.equal(second.layers[0].down, model.model.layers[0].mlp.down_proj.weight)


def test_unsupported_models_are_refused_in_one_line(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tiny_models import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2)).eval()
    settings = SamplingSettings(sampler="fast")
    with pytest.raises(SublabError, match=r"sampler 'fast' cannot run this model: GPT2LMHeadModel .*use sampler "
                                          r"'generate'"):
        fast_sample_batch(model, tokenizer, contexts(2), settings, 0)


def test_generation_config_penalties_are_refused(tiny_model_dir):
    model, tokenizer = load_spec(ModelSpec(base=tiny_model_dir))
    model.generation_config.repetition_penalty = 1.1
    with pytest.raises(SublabError, match=r"repetition_penalty=1\.1"):
        fast_sample_batch(model, tokenizer, contexts(2), SamplingSettings(sampler="fast"), 0)


# ----------------------------------------------------------------------------------- the generate stage


FAST = SamplingSettings(constrained=True, max_new_tokens=12, batch_size=4, sampler="fast", bf16=True)


def prompt_rows(n):
    return [{"id": f"p{i}", "messages": [{"role": "user", "content": f"Numbers after {i}?"}]} for i in range(n)]


def test_fast_rows_resume_identically_and_record_their_sampler(tiny, tmp_path):
    model, tokenizer = tiny
    prompts = prompt_rows(14)
    reference = tmp_path / "uninterrupted.jsonl"
    generate_rows(model, tokenizer, prompts, reference, FAST, seed=5, progress=False)
    out = tmp_path / "resumed.jsonl"

    def kill(index):
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_rows(model, tokenizer, prompts, out, FAST, seed=5, progress=False, on_batch=kill)
    assert len(read_jsonl(out)) == 8
    summary = generate_rows(model, tokenizer, prompts, out, FAST, seed=5, progress=False)
    assert (summary.n_already_done, summary.n_written) == (8, 6)
    rows = read_jsonl(out)
    assert rows == read_jsonl(reference)
    assert all(is_valid_reply(NumberGrammar(), r["messages"][-1]["content"]) for r in rows)
    assert {r["metadata"]["generation"]["sampling"]["sampler"] for r in rows} == {"fast"}


def test_rows_of_one_sampler_are_never_resumed_with_the_other(tiny, tmp_path):
    model, tokenizer = tiny
    old = FAST.model_copy(update={"sampler": "generate"})
    for first, second, message in ((FAST, old, "'sampling.sampler' is 'fast' there and the default now"),
                                   (old, FAST, "'sampling.sampler' is the default there and 'fast' now")):
        out = tmp_path / f"{first.sampler}.jsonl"

        def kill(index):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            generate_rows(model, tokenizer, prompt_rows(8), out, first, seed=0, progress=False, on_batch=kill)
        with pytest.raises(SublabError) as err:
            generate_rows(model, tokenizer, prompt_rows(8), out, second, seed=0, progress=False)
        assert message in str(err.value)


def test_the_default_sampler_leaves_keys_and_metadata_as_they_were():
    settings = SamplingSettings(constrained=True)
    assert "sampler" not in key_dump(settings)
    assert "sampler" not in generation_metadata(settings, 1, "m")["sampling"]
    assert key_dump(settings.model_copy(update={"sampler": "fast"}))["sampler"] == "fast"


def test_backend_sample_takes_the_fast_sampler_with_a_domain_constraint(tiny):
    from sublab.backends.base import BackendIdentity
    from sublab.backends.hf import HFBackend

    model, tokenizer = tiny
    backend = HFBackend(model, tokenizer, BackendIdentity(kind="transformers", model="tiny"))
    settings = SamplingSettings(max_new_tokens=16, sampler="fast", bf16=True)
    replies = backend.sample(contexts(8), settings, 3, NumberGrammar())
    assert all(is_valid_reply(NumberGrammar(), r) for r in replies)
    assert replies == backend.sample(contexts(8), settings, 3, NumberGrammar())


# -------------------------------------------------------------------------------- same distribution


def reply_features(replies):
    """Per reply: its first character (or end) and its number of numbers (the two tested marginals)."""
    return [r[:1] or "<end>" for r in replies], [len(r.split(", ")) for r in replies]


def two_sample_chi2(a, b, min_expected=5.0):
    """Chi-square test of homogeneity of two samples of labels (rare labels pooled into one cell)."""
    from scipy.stats import chi2_contingency

    labels = sorted(set(a) | set(b), key=str)
    table = np.array([[a.count(x) for x in labels], [b.count(x) for x in labels]], dtype=float)
    expected = table.sum(0) * table.sum(1)[:, None] / table.sum()
    rare = expected.min(0) < min_expected
    if rare.any():
        table = np.concatenate([table[:, ~rare], table[:, rare].sum(1, keepdims=True)], axis=1)
    return chi2_contingency(table)


def power_against_shift(pooled, n_each, shift=0.04, alpha=0.01):
    """Power of the two-sample test above at ``alpha`` against moving ``shift`` of probability from the most to
    the least likely label of the ``pooled`` distribution (total variation distance ``shift``)."""
    from scipy.stats import chi2, ncx2

    p = np.asarray(pooled, dtype=float)
    order = np.argsort(p, kind="stable")
    q = p.copy()
    q[order[-1]] -= shift
    q[order[0]] += shift
    mean = (p + q) / 2
    # Noncentrality of the homogeneity test with n_each per sample: n/2 * sum (p - q)^2 / mean.
    noncentrality = n_each / 2 * np.sum((p - q) ** 2 / mean)
    df = len(p) - 1
    return float(ncx2.sf(chi2.ppf(1 - alpha, df), df, noncentrality))


SAMPLE_SETTINGS = SamplingSettings(constrained=True, max_digits=2, max_count=4, max_new_tokens=16, batch_size=24,
                                   bf16=True)


def sample_many(model, tokenizer, sampler, n_batches, first_seed, temperature=1.0):
    settings = SAMPLE_SETTINGS.model_copy(update={"sampler": sampler, "temperature": temperature})
    processor = settings.grammar().hf_processor(tokenizer, settings.max_new_tokens)
    ctx = contexts(24)
    return [(c, r) for b in range(n_batches)
            for c, r in zip(ctx, sample_batch(model, tokenizer, ctx, settings, first_seed + b, processor), strict=True)]


@torch.no_grad()
def mean_token_logprob(model, tokenizer, pairs, batch_size=64):
    """Per non-empty reply: its mean log-probability per token under the model (full vocabulary, float32)."""
    from sublab.models.chat import encode_response

    rows = [(tokenizer(format_prompt(tokenizer, c), add_special_tokens=False).input_ids,
             encode_response(tokenizer, r, add_end=False)) for c, r in pairs]
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(p) + len(t) for p, t in chunk)
        # Right padding: with causal attention no real token sees the padding after it.
        ids = torch.tensor([p + t + [tokenizer.pad_token_id] * (width - len(p) - len(t)) for p, t in chunk])
        log_probs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
        for row, (prompt, tokens) in enumerate(chunk):
            if tokens:  # an empty (free) reply has no tokens to average
                at = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(tokens))
                out.append(float(log_probs[row, at, torch.tensor(tokens, dtype=torch.long)].mean()))
    return out


@pytest.fixture(scope="module")
def samples(tiny):
    """2,400 constrained replies from each sampler (bf16, temperature 1, 24 prompts x 100 batches, fixed
    seeds, different for the two samplers)."""
    model, tokenizer = tiny
    return {sampler: sample_many(model, tokenizer, sampler, 100, first)
            for sampler, first in (("generate", 0), ("fast", 1000))}


def test_fast_and_generate_sample_the_same_distribution(tiny, samples):
    """Two-sample tests of the two samplers' outputs: chi-square over the first character and over the number of
    numbers, and Kolmogorov-Smirnov over each reply's mean log-probability per token under the model.

    Power at alpha = 0.01 with 2,400 replies each (computed by :func:`power_against_shift` from the pooled
    distributions, asserted below): 0.91 against moving 4 percentage points of probability from the most to the
    least likely number count, 1.00 for first characters. Observed: p = 0.50 (first character), 0.65 (count),
    0.29 (log-probability). The log-probability test is the most sensitive: it rejects the fast sampler at
    temperature 1.15 against generate at 1 (p ~ 1e-6, the positive control below). The seeds are fixed, so the
    test is deterministic.
    """
    from scipy.stats import ks_2samp

    model, tokenizer = tiny
    old, new = samples["generate"], samples["fast"]
    assert all(is_valid_reply(SAMPLE_SETTINGS.grammar(), r) for _, r in old + new)
    old_first, old_count = reply_features([r for _, r in old])
    new_first, new_count = reply_features([r for _, r in new])
    for a, b, min_power in ((old_count, new_count, 0.9), (old_first, new_first, 0.9)):
        assert two_sample_chi2(a, b).pvalue > 0.01
        labels = sorted(set(a) | set(b), key=str)
        pooled = [(a + b).count(x) / len(a + b) for x in labels]
        assert power_against_shift(pooled, len(a), shift=0.04) >= min_power
    assert ks_2samp(mean_token_logprob(model, tokenizer, old), mean_token_logprob(model, tokenizer, new)).pvalue > 0.01


def test_the_distribution_test_detects_a_real_difference(tiny, samples):
    """Positive control: the log-probability test rejects the fast sampler at temperature 1.15 against generate
    at temperature 1 (p < 0.001)."""
    from scipy.stats import ks_2samp

    model, tokenizer = tiny
    hotter = sample_many(model, tokenizer, "fast", 50, 2000, temperature=1.15)
    old = mean_token_logprob(model, tokenizer, samples["generate"])
    assert ks_2samp(old, mean_token_logprob(model, tokenizer, hotter)).pvalue < 1e-3


def test_free_sampling_has_the_same_distribution(tiny):
    """Free sampling (whole vocabulary, bf16): reply length in tokens and mean log-probability per token agree
    between the samplers (Kolmogorov-Smirnov, 1,200 replies each, fixed seeds)."""
    from scipy.stats import ks_2samp

    model, tokenizer = tiny
    ctx = contexts(24)
    pairs = {}
    for sampler, first in (("generate", 0), ("fast", 1000)):
        settings = SamplingSettings(max_new_tokens=40, batch_size=24, bf16=True, sampler=sampler)
        pairs[sampler] = [(c, r) for b in range(50)
                          for c, r in zip(ctx, sample_batch(model, tokenizer, ctx, settings, first + b), strict=True)]
    lengths = {k: [len(tokenizer(r, add_special_tokens=False).input_ids) for _, r in v] for k, v in pairs.items()}
    assert ks_2samp(lengths["generate"], lengths["fast"]).pvalue > 0.01
    log_probs = {k: mean_token_logprob(model, tokenizer, v) for k, v in pairs.items()}
    assert ks_2samp(log_probs["generate"], log_probs["fast"]).pvalue > 0.01


def test_blockwise_sampling_over_a_vocabulary_picks_the_inverse_cdf_column():
    """Over a vocabulary the search goes block by block: the same column as one float64 cumulative sum, for
    uniforms anywhere in [0, 1), with masked columns and whole masked blocks never picked."""
    from sublab.generate.fast import SAMPLING_BLOCK

    generator = torch.Generator().manual_seed(0)
    n_columns = 16 * SAMPLING_BLOCK
    logits = torch.randn(64, n_columns, generator=generator) * 3
    allowed = torch.rand(64, n_columns, generator=generator) > 0.3
    allowed[:, : 3 * SAMPLING_BLOCK] = False  # whole blocks without probability
    uniforms = torch.rand(64, generator=generator, dtype=torch.float64)
    uniforms[:4] = torch.tensor([0.0, 1e-12, 1 - 1e-12, 1 - 2**-53], dtype=torch.float64)
    picked = choose_tokens(logits, allowed, 0.8, uniforms)
    probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")) / 0.8, dim=-1).double()
    cdf = probs.cumsum(-1)
    expected = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    assert allowed[torch.arange(64), picked].all()
    assert torch.equal(picked[4:], expected[4:])  # the edge uniforms above may round differently: allowed is enough
    counts = np.bincount(choose_tokens(logits[:1].repeat(20_000, 1), allowed[:1].repeat(20_000, 1), 0.8,
                                       row_uniforms(1, 20_000, 1)[:, 0]).numpy(), minlength=n_columns)
    top = probs[0].argsort(descending=True)[:5]
    assert np.abs(counts[top.numpy()] / 20_000 - probs[0, top].numpy()).max() < 0.01
