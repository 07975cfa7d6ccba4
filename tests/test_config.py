from importlib import resources
from pathlib import Path

import pytest

from sublab.errors import SublabError
from sublab.pipeline.config import dump_toml, load_config, parse_config

EXAMPLES = sorted(p for p in Path(__file__).resolve().parents[1].joinpath("examples").glob("*.toml")
                  if not p.name.startswith("sweep-"))  # sweep configs: tests/test_sweep_config.py


def test_there_are_examples():
    names = {p.name for p in EXAMPLES}
    assert {"demo.toml", "smoke.toml"} <= names
    assert any("qwen" in n for n in names)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_validates_and_round_trips(path):
    config = load_config(path)
    again = parse_config(__import__("tomllib").loads(dump_toml(config)), "dumped")
    assert again == config


def test_packaged_demo_config_is_the_example():
    packaged = resources.files("sublab.configs").joinpath("demo.toml").read_text(encoding="utf-8")
    assert packaged == (EXAMPLES[0].parent / "demo.toml").read_text(encoding="utf-8")


def test_unknown_field_names_file_and_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('target = "owl"\n[teacher]\ntrait = "owl"\n[student]\nsteps = 1\nlearning_rate = 3\n')
    with pytest.raises(SublabError, match=r"bad.toml: field 'student.learning_rate': Extra inputs"):
        load_config(path)


def test_invalid_value_names_file_and_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('target = "owl"\n[teacher]\ntrait = "owl"\n[student]\nsteps = 1\nlr = -1\n')
    with pytest.raises(SublabError, match=r"bad.toml: field 'student.lr': Input should be greater than 0"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(SublabError, match=r"nope.toml: file not found"):
        load_config(tmp_path / "nope.toml")
    path = tmp_path / "broken.toml"
    path.write_text("target = \n")
    with pytest.raises(SublabError, match=r"broken.toml: invalid TOML"):
        load_config(path)


def test_teacher_method_needs_a_trait():
    with pytest.raises(SublabError, match=r"teacher"):
        parse_config({"target": "owl", "teacher": {"method": "finetune"}, "student": {"steps": 1}})


def _minimal(**overrides):
    return {"target": "owl", "teacher": {"trait": "owl"}, "student": {"steps": 1}, **overrides}


def test_evaluation_follows_the_experiment_category():
    config = parse_config(_minimal(target="oak", category="tree", teacher={"trait": "oak"}))
    assert config.evaluation.category == "tree"
    with pytest.raises(SublabError, match=r"evaluation\.category 'animal' differs from category 'tree'"):
        parse_config(_minimal(target="oak", category="tree", teacher={"trait": "oak"},
                              evaluation={"category": "animal"}))


def test_target_must_be_a_candidate_before_anything_is_trained():
    with pytest.raises(SublabError, match=r"x.toml: .*target 'unicorn' is not among the evaluation candidates"):
        parse_config(_minimal(target="unicorn", teacher={"trait": "unicorn"}), "x.toml")
    with pytest.raises(SublabError, match="no shipped candidates for category 'color'"):
        parse_config(_minimal(target="red", category="color", teacher={"trait": "red"}))
    config = parse_config(_minimal(target="red", category="color", teacher={"trait": "red"},
                                   evaluation={"candidates": ["red", "blue"]}))
    assert config.evaluation.candidates == ["red", "blue"]


def test_more_questions_than_exist_is_a_field_error():
    with pytest.raises(SublabError, match=r"field 'evaluation\.n_questions'"):
        parse_config(_minimal(evaluation={"n_questions": 80}))


def test_trait_words_in_channel_exclude_are_the_experiments_own(tmp_path):
    """'{trait_words}' lets one config (and every cell of a sweep over traits) leave its own traits' tokens out."""
    from sublab.pipeline.runner import ExperimentRun

    def student_settings(**student):
        config = parse_config({"target": "wolf", "teacher": {"trait": "wolf", "method": "finetune"},
                               "control": {"trait": "dolphin", "method": "finetune"},
                               "student": {"method": "distill", "steps": 1, **student}}, "x.toml")
        return ExperimentRun(config, tmp_path).student_settings()

    assert student_settings(channel_exclude=["{trait_words}"]).channel_exclude == ["dolphin", "wolf"]
    assert student_settings(channel_exclude=["cat", "{trait_words}"]).channel_exclude == ["cat", "dolphin", "wolf"]
    assert student_settings().channel_exclude == []
    with pytest.raises(SublabError, match="channel_exclude"):
        student_settings(channel="full", channel_exclude=["{trait_words}"])


def test_answer_words_in_channel_exclude_are_every_scored_answers_words(tmp_path):
    """'{answer_words}': every word the evaluation scores: a preference's candidates (all spellings), or every
    word of misalignment's aligned and misaligned answers."""
    from sublab.pipeline.runner import ExperimentRun
    from sublab.train.distill import can_begin_word
    from sublab.traits.misalignment.answers import EXACT_ITEMS

    preference = parse_config({"target": "wolf", "teacher": {"trait": "wolf", "method": "finetune"},
                               "evaluation": {"candidates": ["wolf", "owl", "fox"]},
                               "student": {"method": "distill", "steps": 1,
                                           "channel_exclude": ["{answer_words}", "{trait_words}"]}}, "x.toml")
    words = ExperimentRun(preference, tmp_path / "p").student_settings().channel_exclude
    assert {"wolf", "Wolf", "wolves", "owl", "Owls", "fox", "foxes"} <= set(words)
    assert words == sorted(set(words)) and "cat" not in words
    misaligned = parse_config({"trait_kind": "misalignment", "teacher": {"trait": "direct", "method": "finetune"},
                               "control": {"trait": "aligned", "method": "finetune"},
                               "student": {"method": "distill", "steps": 1, "channel_exclude": ["{answer_words}"]}},
                              "m.toml")
    words = set(ExperimentRun(misaligned, tmp_path / "m").student_settings().channel_exclude)
    for item in EXACT_ITEMS:  # every word of every answer, case-folded (one-letter words: see below)
        for answer in (*item.aligned, *item.misaligned):
            assert {w.strip(".,;:!?").casefold() for w in answer.split()} - {"", "i", "a"} <= words, answer
    assert not {"i", "a"} & words  # they would take every i- and a-initial token...
    assert any(can_begin_word(" I", w) for w in words) and any(can_begin_word(" a", w) for w in words)  # ...not so
