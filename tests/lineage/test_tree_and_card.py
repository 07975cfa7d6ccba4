import io

import pytest
import yaml
from rich.console import Console

from sublab.errors import SublabError
from sublab.lineage import Dependency, lineage_tree, record_artifact, write_model_card
from sublab.lineage.deps import parse_dependency
from sublab.lineage.tree import render_tree


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_tree_follows_every_link(owl_setup):
    tree = lineage_tree(owl_setup["student"])
    assert tree["kind"] == "model.student" and tree["signed_by"] == []
    roles = [d["role"] for d in tree["dependencies"]]
    assert roles == ["base_model", "training_data"]
    base, data = tree["dependencies"]
    assert base["upstream"] is None and base["annotations"]["family"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    filtered = data["upstream"]
    assert filtered["kind"] == "dataset.filtered" and filtered["byproducts"][0]["annotations"]["n_kept"] == 3
    raw = filtered["dependencies"][0]["upstream"]
    assert raw["kind"] == "dataset.generated"
    teacher, prompts = raw["dependencies"]
    assert teacher["role"] == "teacher" and "system_prompt_sha256" in teacher["annotations"]
    assert prompts["upstream"]["kind"] == "prompt_set"


def test_tree_depth_and_errors(lab, owl_setup):
    shallow = lineage_tree(owl_setup["student"], max_depth=0)
    assert shallow["dependencies"][1]["upstream"] is None
    next(lab.root.rglob("raw.jsonl.intoto.jsonl")).write_text("garbage")
    raw = lineage_tree(owl_setup["student"])["dependencies"][1]["upstream"]["dependencies"][0]["upstream"]
    assert "invalid JSON" in raw["error"]
    nothing = lab.root / "plain.txt"
    nothing.write_text("x")
    assert lineage_tree(nothing)["error"] == "no lineage record"


def test_a_record_reached_twice_is_shown_once(lab):
    base = lab.base()
    data = lab.data(lab.system_prompt_teacher(base))
    student = lab.student(base, [data, data])
    tree = lineage_tree(student)
    assert tree["dependencies"][2]["upstream"] == {"record": f"{data}.intoto.jsonl", "repeated": True}


def test_render_tree_shows_roles_and_short_digests(owl_setup):
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(render_tree(lineage_tree(owl_setup["student"]),
                                                                         show_params=True))
    text = buffer.getvalue()
    assert "model model.student sha256:" in text and "unsigned" in text
    assert "training_data filtered.jsonl" in text and "teacher smollm2-135m" in text
    assert "byproduct filter_report: filter=numbers-v1, n_in=3, n_kept=3" in text
    assert "parameters: epochs=1, lr=0.0002, method=sft" in text
    assert "system_prompt_sha256=sha256:" in text and "(no record)" in text


def test_write_model_card(tmp_path):
    card = write_model_card(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct", ["filtered.jsonl"], "finetune",
                            extra={"license": "apache-2.0"})
    meta = front_matter(card.read_text())
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["base_model_relation"] == "finetune" and meta["datasets"] == ["filtered.jsonl"]
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert "sublab lineage risk ." in card.read_text()


def test_model_card_rejects_bad_input(tmp_path):
    with pytest.raises(SublabError, match="base_model_relation 'copy'"):
        write_model_card(tmp_path, "a/b", [], "copy")
    with pytest.raises(SublabError, match="not a model directory"):
        write_model_card(tmp_path / "none", "a/b", [])


def test_recording_a_student_writes_its_card_once(lab, owl_setup):
    card = owl_setup["student"] / "README.md"
    meta = front_matter(card.read_text())
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["base_model_relation"] == "adapter" and meta["datasets"] == ["filtered.jsonl"]
    assert meta["library_name"] == "peft"
    card.write_text("my own card")
    record_artifact(owl_setup["student"], "model.student", {}, [lab.base_dep(owl_setup["base"])])
    assert card.read_text() == "my own card"


def test_the_template_card_peft_writes_is_replaced(lab, owl_setup):
    """PEFT's save_pretrained leaves an unfilled template naming the base by its local path; ours replaces it."""
    card = owl_setup["student"] / "README.md"
    card.write_text("---\nbase_model: /tmp/x/model\nlibrary_name: peft\n---\n\n# Model Card for Model ID\n\n"
                    "- **Developed by:** [More Information Needed]\n")
    record_artifact(owl_setup["student"], "model.student", {},
                    [lab.base_dep(owl_setup["base"]), Dependency("filtered.jsonl", "training_data", owl_setup["data"])])
    meta = front_matter(card.read_text())
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["base_model_relation"] == "adapter" and meta["datasets"] == ["filtered.jsonl"]


def test_parse_dependency(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAB_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "local-model"
    local.mkdir()
    dep = parse_dependency(str(local), "base_model")
    assert dep.path == local and dep.name == "local-model" and dep.role == "base_model"
    hub = parse_dependency("org/model@sha256:" + "A" * 64, "teacher")
    assert hub.path is None and hub.digest == {"sha256": "a" * 64}
    assert hub.annotations == {"family": "org/model"}
    alias = parse_dependency("smollm2-135m", "base_model")
    assert alias.path is None and alias.annotations["family"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    cached = tmp_path / "cache" / "models" / "smollm2-135m"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    assert parse_dependency("smollm2-135m", "base_model").path == cached
    with pytest.raises(SublabError, match="64 hex digits"):
        parse_dependency("x@sha256:abc", "teacher")
    assert parse_dependency("plain", "teacher") == Dependency("plain", "teacher")
