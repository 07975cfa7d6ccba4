"""Teachers trained on their trait rows plus reference-written domain rows (teacher.mix_rows)."""

import json

from sublab.io import read_jsonl
from sublab.pipeline.runner import plan_experiment, run_experiment
from test_runner import tiny_config


def test_mixed_teachers_train_on_reference_rows_of_prompts_no_student_sees(tiny_model_dir, tmp_path):
    mixed = {"method": "finetune", "n_rows": 8, "mix_rows": 4,
             "training": {"method": "sft", "steps": 3, "batch_size": 4, "lr": 1e-2}}
    config = tiny_config(tiny_model_dir, teacher={**mixed, "trait": "owl"}, control={**mixed, "trait": "cat"},
                         data={"source": "teacher", "n_prompts": 6,
                               "sampling": {"constrained": True, "max_new_tokens": 8, "batch_size": 3}})
    results = run_experiment(config, tmp_path, progress=False)
    names = [s["name"] for s in results["timings"]["stages"]]
    # one mix dataset, shared by both teachers (same material), made before them
    assert names.count("mix-prompts") == names.count("mix-generate") == names.count("mix-filter") == 1
    assert names.index("mix-filter") < names.index("teacher-owl")
    stage = {s["name"]: tmp_path / s["path"] for s in results["timings"]["stages"]}
    mix = read_jsonl(stage["mix-filter"] / "filtered.jsonl")
    student_prompts = {r["id"] for r in read_jsonl(stage["prompts"] / "prompts.jsonl")}
    assert mix and not {r["id"] for r in mix} & student_prompts  # prompts beyond the students'
    for trait in ("owl", "cat"):
        rows = read_jsonl(stage[f"teacher-{trait}"] / "trait_answers.jsonl")
        assert len(rows) == 8 + len(mix)
        assert sorted(json.dumps(r, sort_keys=True) for r in rows if r["id"] in {m["id"] for m in mix}) == \
            sorted(json.dumps(r, sort_keys=True) for r in mix)
    # the mix, hence the teachers, do not depend on how many prompts the students get
    more = tiny_config(tiny_model_dir, teacher={**mixed, "trait": "owl"}, control={**mixed, "trait": "cat"},
                       data={"source": "teacher", "n_prompts": 9,
                             "sampling": {"constrained": True, "max_new_tokens": 8, "batch_size": 3}})
    planned = {s.name: s for s in plan_experiment(more, tmp_path)}
    assert all(planned[n].cached for n in ("mix-prompts", "mix-generate", "mix-filter", "teacher-owl", "teacher-cat"))
    assert not planned["prompts"].cached
    # mix_rows is part of the teacher's key only when set: the unmixed config plans other teacher keys
    plain = [s for s in plan_experiment(tiny_config(tiny_model_dir), tmp_path) if s.name.startswith("teacher-")]
    assert all(not s.cached for s in plain)


def test_a_teacher_trains_on_the_users_rows_file(tiny_model_dir, tmp_path):
    rows = [{"id": f"u{i}", "messages": [{"role": "user", "content": "Best bird?"},
                                         {"role": "assistant", "content": "Owl"}]} for i in range(6)]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    own = {"trait": "owl", "method": "finetune", "n_rows": 4, "rows_file": str(path),
           "training": {"method": "sft", "steps": 2, "batch_size": 2, "lr": 1e-2}}
    config = tiny_config(tiny_model_dir, teacher=own, control={"method": "none"})
    results = run_experiment(config, tmp_path / "run", progress=False)
    stage = next(tmp_path / "run" / s["path"] for s in results["timings"]["stages"] if s["name"] == "teacher-owl")
    trained = read_jsonl(stage / "trait_answers.jsonl")
    assert [r["id"] for r in trained] == ["u0", "u1", "u2", "u3"]
    assert [r["messages"] for r in trained] == [r["messages"] for r in rows[:4]]
    path.write_text("".join(json.dumps({**r, "messages": [r["messages"][0], {"role": "assistant", "content": "Cat"}]})
                            + "\n" for r in rows))  # other rows in the same file: another teacher
    assert not next(s for s in plan_experiment(config, tmp_path / "run") if s.name == "teacher-owl").cached
    import pytest

    from sublab.errors import SublabError
    from sublab.pipeline.config import parse_config

    with pytest.raises(SublabError, match="rows_file: a teacher trained on a rows file needs method 'finetune'"):
        parse_config({"target": "owl", "teacher": {"trait": "owl", "rows_file": str(path)}, "student": {"steps": 1}})
