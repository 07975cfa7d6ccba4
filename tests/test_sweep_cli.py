"""The sweep commands end to end on the tiny model: real cells, shared stages with intact lineage, status, report."""

import json

import pytest
import tomli_w
from typer.testing import CliRunner

from sublab.cli import app
from sublab.io import read_json
from sublab.lineage.keys import new_keypair
from sublab.traits.preference.candidates import ANIMALS

runner = CliRunner()


def tiny_sweep(model_dir, **extra):
    """2 traits × 1 condition × 2 seeds on the tiny model (4 cells, about a minute on 2 cores)."""
    training = {"method": "sft", "steps": 2, "batch_size": 4, "lr": 1e-2}
    return {
        "name": "tiny-sweep",
        "experiment": {
            "reference": model_dir, "target": "owl",
            "teacher": {"trait": "owl", "method": "finetune", "n_rows": 8, "training": training},
            "data": {"source": "reference", "n_prompts": 4,
                     "sampling": {"constrained": True, "max_new_tokens": 8, "batch_size": 4}},
            "student": {"method": "distill", "steps": 1, "batch_size": 2, "lr": 1e-2},
            "evaluation": {"n_questions": 2, "candidates": list(ANIMALS)[:5]},
            "evaluate_teachers": False,
        },
        "grid": {"traits": {"animal": ["owl", "eagle"]}, "seeds": [0, 1]},
        "conditions": {"same_init": {"description": "shared base", "control": "other_trait"}},
        "executor": {"kind": "inline"},
        **extra,
    }


@pytest.fixture(scope="module")
def swept(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-sweep")
    (root / "sweep.toml").write_text(tomli_w.dumps(tiny_sweep(tiny_model_dir)))
    result = runner.invoke(app, ["sweep", str(root / "sweep.toml"), "--out", str(root / "out")])
    return root, result


def test_sweep_command_runs_every_cell_and_writes_the_report(swept):
    root, result = swept
    assert result.exit_code == 0, result.output
    out = root / "out"
    cells = read_json(out / "plan.json")["cells"]
    assert len(cells) == 4
    for ident in cells:
        results = read_json(out / "cells" / ident / "results.json")
        assert results["name"] == f"tiny-sweep/{ident}" and set(results["models"]) >= {"trait_student"}
    summary = json.loads((out / "summary.json").read_text())
    assert [g["n_seeds"] for g in summary["groups"]] == [2, 2]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 2
    assert "report.html" in result.output


def test_cells_share_finished_stages_and_keep_their_own_lineage(swept):
    from sublab.lineage import verify_lineage

    out = swept[0] / "out"
    first, second = (out / "cells" / "animal-owl__same_init__default__seed0",
                     out / "cells" / "animal-eagle__same_init__default__seed0")
    timings = {s["name"]: s for s in read_json(second / "results.json")["timings"]["stages"]}
    # The eagle cell's control teacher is the owl cell's trait teacher; both cells use seed 0's reference data.
    assert timings["teacher-owl"]["cached"] and timings["generate"]["cached"]
    assert not timings["student-trait"]["cached"]
    shared = timings["generate"]["path"]
    assert (first / shared / "raw.jsonl").stat().st_ino == (second / shared / "raw.jsonl").stat().st_ino
    student = next((second / "stages").glob("student-trait-*")) / "model"
    report = verify_lineage(student)
    assert report.ok, [p.line() for p in report.problems]
    assert all(str(second) in str(path) for path in report.records)  # upstream records resolve inside the cell
    other_seed = read_json(out / "cells" / "animal-owl__same_init__default__seed1" / "results.json")
    assert other_seed["seeds"]["sampling"] == 2  # the base's data.seed 1, shifted by seed index 1


def test_status_and_rerun_skip_finished_cells(swept):
    root, _ = swept
    out = root / "out"
    status = runner.invoke(app, ["sweep", "status", str(out)])
    assert status.exit_code == 0 and "4 done" in status.output
    again = runner.invoke(app, ["sweep", str(root / "sweep.toml"), "--out", str(out)])
    assert again.exit_code == 0 and "4 done, 0 to run" in again.output
    assert all(read_json(p)["attempt"] == 1 for p in out.glob("cells/*/status.json"))
    report = runner.invoke(app, ["sweep", "report", str(out)])
    assert report.exit_code == 0 and (out / "report.md").is_file()


def test_dry_run_lists_cells_and_writes_nothing(tmp_path, tiny_model_dir):
    (tmp_path / "s.toml").write_text(tomli_w.dumps(tiny_sweep(tiny_model_dir)))
    result = runner.invoke(app, ["sweep", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--dry-run"])
    assert result.exit_code == 0 and "4 cells" in result.output and "control: eagle" in result.output
    assert not (tmp_path / "o").exists()


def test_bad_input_is_one_line_naming_file_and_field(tmp_path, tiny_model_dir):
    data = tiny_sweep(tiny_model_dir)
    data["grid"]["seed"] = [3]
    (tmp_path / "bad.toml").write_text(tomli_w.dumps(data))
    result = runner.invoke(app, ["sweep", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'bad.toml'}: field 'grid.seed': Extra inputs are not permitted"]
    good = tmp_path / "good.toml"
    good.write_text(tomli_w.dumps(tiny_sweep(tiny_model_dir)))
    result = runner.invoke(app, ["sweep", str(good), "--out", str(tmp_path / "o"), "--workers", "0"])
    assert result.exit_code == 2 and "error: command line: field 'workers'" in result.output
    result = runner.invoke(app, ["sweep", "status", str(tmp_path)])
    assert result.exit_code == 2 and "not a sweep folder" in result.output


def test_a_signed_sweep_verifies_with_the_public_key(tiny_model_dir, tmp_path):
    """One cell with --sign-key: every record of its trait student's lineage verifies under the public key, and
    not under another key."""
    private, public = new_keypair(tmp_path / "lab")
    _, other_public = new_keypair(tmp_path / "other")
    data = tiny_sweep(tiny_model_dir)
    data["grid"] = {"traits": {"animal": ["owl"]}, "seeds": [0]}
    (tmp_path / "s.toml").write_text(tomli_w.dumps(data))
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--sign-key", str(private)])
    assert result.exit_code == 0, result.output
    (cell,) = read_json(out / "plan.json")["cells"]
    student = next((out / "cells" / cell / "stages").glob("student-trait-*")) / "model"
    verified = runner.invoke(app, ["lineage", "verify", str(student), "--key", str(public)])
    assert verified.exit_code == 0, verified.output
    assert "OK:" in verified.output and "signatures verified" in verified.output
    assert runner.invoke(app, ["lineage", "verify", str(student), "--key", str(other_public)]).exit_code == 1


def test_a_bad_signing_key_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path):
    (tmp_path / "s.toml").write_text(tomli_w.dumps(tiny_sweep(tiny_model_dir)))
    result = runner.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--sign-key",
                                 str(tmp_path / "missing.key")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {tmp_path / 'missing.key'}: key file not found"]
    assert not (tmp_path / "o").exists()
