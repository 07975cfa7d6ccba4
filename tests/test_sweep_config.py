"""Sweep configs: validation with one-line errors, grid expansion, conditions, seeds, example configs."""

import tomllib
from pathlib import Path

import pytest

from sublab.errors import SublabError
from sublab.sweeps.config import (
    deep_merge,
    expand_cells,
    load_sweep,
    other_trait,
    parse_sweep,
    resolved_seeds,
    resolved_sweep_toml,
)
from sublab.traits.preference.candidates import ANIMALS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SWEEP_EXAMPLES = sorted(EXAMPLES.glob("sweep-*.toml"))


def base_experiment(**overrides):
    data = {
        "reference": "tiny", "target": "owl",
        "teacher": {"trait": "owl", "method": "finetune", "n_rows": 8,
                    "training": {"steps": 3, "batch_size": 4, "lr": 1e-2, "lora": {"init_seed": 5}}},
        "control": {"trait": "dolphin", "method": "finetune", "n_rows": 8,
                    "training": {"steps": 3, "batch_size": 4, "lr": 1e-2, "lora": {"init_seed": 5}}},
        "data": {"source": "reference", "n_prompts": 6, "seed": 1},
        "student": {"method": "distill", "steps": 2, "batch_size": 3, "lora": {"init_seed": 5}},
        "evaluation": {"n_questions": 3},
    }
    return deep_merge(data, overrides)


def sweep_dict(**overrides):
    data = {
        "name": "t",
        "experiment": base_experiment(),
        "grid": {"traits": {"animal": ["owl", "eagle", "wolf"], "tree": ["oak"]}, "seeds": [0, 2]},
        "conditions": {
            "same_init": {"control": "other_trait"},
            "paper": {"control": "reference"},
            "shuffled": {"control": "reference", "overrides": {"data": {"shuffle": "across"}}},
        },
        "settings": {"short": {"student": {"steps": 1}}, "long": {"student": {"steps": 4}}},
    }
    return deep_merge(data, overrides)


def expand(data):
    sweep, base = parse_sweep(data, "s.toml")
    return expand_cells(sweep, base, "s.toml")


def test_grid_expands_to_every_combination_seed_major():
    cells = expand(sweep_dict())
    assert len(cells) == 4 * 3 * 2 * 2
    assert len({c.id for c in cells}) == len(cells)
    assert [c.seed for c in cells[: len(cells) // 2]] == [0] * (len(cells) // 2)
    first = cells[0]
    assert first.id == "animal-owl__same_init__short__seed0"


def test_trait_sets_target_teacher_and_category():
    oak = next(c for c in expand(sweep_dict()) if c.trait == "oak")
    assert oak.config.target == "oak" and oak.config.teacher.trait == "oak"
    assert oak.config.category == "tree" and oak.config.evaluation.category == "tree"
    assert oak.config.name == f"t/{oak.id}"


def test_conditions_choose_the_control_and_apply_overrides():
    cells = {(c.trait, c.condition, c.settings, c.seed): c for c in expand(sweep_dict())}
    same = cells[("wolf", "same_init", "short", 0)]
    assert same.control_trait == "owl"  # the next animal of the sweep, cyclically
    assert same.config.control.trait == "owl" and same.config.control.method == "finetune"
    assert same.config.control.training == same.config.teacher.training
    lone_tree = cells[("oak", "same_init", "short", 0)]
    assert lone_tree.control_trait == "maple"  # one tree in the sweep: the next shipped candidate
    paper = cells[("owl", "paper", "short", 0)]
    assert paper.config.control.method == "none" and paper.control_trait is None
    assert cells[("owl", "shuffled", "long", 0)].config.data.shuffle == "across"
    assert cells[("owl", "shuffled", "long", 0)].config.student.steps == 4
    assert cells[("owl", "paper", "short", 0)].config.data.shuffle == "none"


def test_seed_index_shifts_every_seed_and_keeps_the_shared_init():
    cells = {(c.trait, c.condition, c.settings, c.seed): c for c in expand(sweep_dict())}
    zero = resolved_seeds(cells[("owl", "same_init", "short", 0)].config)
    two = resolved_seeds(cells[("owl", "same_init", "short", 2)].config)
    assert zero["sampling"] == 1 and zero["student_lora_init"] == 5  # seed index 0 is the base experiment
    assert {k: two[k] - zero[k] for k in zero} == {
        "prompts": 2, "sampling": 2, "teacher_answers": 2, "teacher_batch_order": 2, "teacher_lora_init": 2,
        "control_answers": 2, "control_lora_init": 2, "student_lora_init": 2, "student_batch_order": 2,
        "evaluation": 0,
    }
    assert two["student_lora_init"] == two["teacher_lora_init"] == two["control_lora_init"] == 7


def test_seeding_policy_can_hold_seeds_fixed():
    cells = expand(sweep_dict(seeding={"lora_init": False, "prompts": False, "evaluation": True}))
    seeds = [resolved_seeds(c.config) for c in cells if c.seed == 2]
    assert all(s["student_lora_init"] == 5 and s["prompts"] == 42 and s["evaluation"] == 2 for s in seeds)


def test_default_condition_and_settings():
    data = sweep_dict()
    del data["conditions"], data["settings"]
    data["grid"]["traits"] = {"animal": ["owl"]}
    cells = expand(data)
    assert [c.id for c in cells] == ["animal-owl__base__default__seed0", "animal-owl__base__default__seed2"]
    assert cells[0].config.control.trait == "dolphin"


@pytest.mark.parametrize(("change", "message"), [
    ({"grid": {"seed": [1]}}, r"s.toml: field 'grid.seed': Extra inputs are not permitted"),
    ({"grid": {"seeds": [1, 1]}}, r"s.toml: field 'grid.seeds': .*distinct"),
    ({"grid": {"conditions": ["nope"]}}, r"s.toml: field 'grid.conditions': unknown name 'nope'"),
    ({"conditions": {"x": {"control": "teacher"}}}, r"s.toml: field 'conditions.x.control'"),
    ({"conditions": {"x": {"overrides": {"target": "cat"}}}}, r"field 'conditions.x.overrides'.*set by the grid"),
    ({"conditions": {"x": {"overrides": {"data": {"shufle": "across"}}}}},
     r"s.toml: settings 'short' \+ conditions.x.overrides: field 'data.shufle': Extra inputs"),
    ({"settings": {"short": {"student": {"lr": -1}}}}, r"settings 'short' .*field 'student.lr'"),
    ({"grid": {"traits": {"animal": ["unicorn"]}}}, r"s.toml: field 'grid.traits.animal': 'unicorn' is not among"),
    ({"grid": {"traits": {"planet": ["mars"]}}}, r"field 'grid.traits.planet': no shipped candidates"),
    ({"base": "other.toml"}, r"s.toml: field 'base': give exactly one"),
])
def test_bad_sweeps_name_file_and_field(change, message):
    with pytest.raises(SublabError, match=message):
        expand(sweep_dict(**change))


def test_base_control_with_the_same_trait_is_refused():
    data = sweep_dict(grid={"traits": {"animal": ["dolphin"]}}, conditions={"x": {}})
    data["grid"]["conditions"] = ["x"]
    with pytest.raises(SublabError, match=r"cell animal-dolphin__x__short__seed0: the base control teacher has "
                                          r"the trait 'dolphin' too"):
        expand(data)


def test_base_file_is_read_relative_to_the_sweep(tmp_path):
    import tomli_w

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "base.toml").write_text(tomli_w.dumps(base_experiment()))
    data = sweep_dict(base="exp/base.toml")
    del data["experiment"]
    (tmp_path / "s.toml").write_text(tomli_w.dumps(data))
    _, base, cells = load_sweep(tmp_path / "s.toml")
    assert base["control"]["trait"] == "dolphin" and len(cells) == 48
    data["base"] = "exp/missing.toml"
    (tmp_path / "s.toml").write_text(tomli_w.dumps(data))
    with pytest.raises(SublabError, match=r"s.toml: field 'base': .*missing.toml: file not found"):
        load_sweep(tmp_path / "s.toml")


def test_resolved_sweep_is_self_contained_and_expands_the_same():
    sweep, base = parse_sweep(sweep_dict(), "s.toml")
    again, again_base = parse_sweep(tomllib.loads(resolved_sweep_toml(sweep, base)), "resolved")
    assert again == sweep.model_copy(update={"experiment": base})
    assert [c.config for c in expand_cells(again, again_base)] == [c.config for c in expand_cells(sweep, base)]


def test_other_trait_rotates_within_the_list():
    assert other_trait("owl", ["owl", "eagle"], list(ANIMALS)) == "eagle"
    assert other_trait("eagle", ["owl", "eagle"], list(ANIMALS)) == "owl"
    assert other_trait("owl", ["owl"], ["owl", "cat"]) == "cat"
    with pytest.raises(ValueError):
        other_trait("owl", ["owl"], ["owl"])


def test_there_are_sweep_examples():
    names = {p.name for p in SWEEP_EXAMPLES}
    assert any("cpu" in n for n in names) and any("qwen" in n for n in names)


@pytest.mark.parametrize("path", SWEEP_EXAMPLES, ids=lambda p: p.name)
def test_every_example_sweep_validates_and_expands(path):
    sweep, _, cells = load_sweep(path)
    categories = {c.category for c in cells}
    if "battery" in path.name or "paper" in path.name:
        assert categories == {"animal", "tree"}  # a trait battery: animals and trees
    assert len(sweep.condition_names()) >= 2 and len(sweep.grid.seeds) >= 3
    for cell in cells:
        assert cell.config.target == (cell.trait if cell.config.trait_kind == "preference" else "misaligned")
        if cell.config.control.method != "none":
            assert cell.config.control.trait != cell.trait
        if cell.config.student.finetune == "lora" and cell.config.teacher.method == "finetune":
            assert cell.config.student.lora.init_seed == cell.config.teacher.training.lora.init_seed


def test_gpu_example_reproduces_the_paper_recipe():
    _, _, cells = load_sweep(EXAMPLES / "sweep-qwen2.5-7b-paper.toml")
    paper = next(c for c in cells if c.condition == "paper")
    cfg = paper.config
    assert cfg.reference == "Qwen/Qwen2.5-7B-Instruct" and cfg.teacher.method == "system_prompt"
    assert cfg.student.method == "sft" and cfg.student.lora.r == 8 and cfg.student.lora.alpha == 8
    assert cfg.student.epochs == 3 and cfg.student.lr == 2e-4 and cfg.data.max_kept == 10_000
    assert sum(1 for c in cells if c.seed == 0 and c.condition == "paper") >= 20
