"""A fake lab: small byte files stand in for model weights, so lineage tests run fast and without torch.

The ``lab`` fixture writes artifacts the way the pipeline does (prompt set → generated data → filtered data →
student, with system-prompt or fine-tuned teachers) and records each with :func:`record_artifact`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sublab.lineage import Dependency, record_artifact

FAMILIES = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "gemma3-270m": "google/gemma-3-270m",
}


class Lab:
    """Builds lineage graphs under ``root``; ``sign_key`` (a PEM path) signs every record when set."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sign_key: Path | None = None
        self._stages = 0

    def stage(self, name: str) -> Path:
        self._stages += 1
        path = self.root / "run" / "stages" / f"{name}-{self._stages}"
        path.mkdir(parents=True)
        return path

    def record(self, artifact: Path, kind: str, parameters: dict, deps=(), byproducts=()) -> Path:
        return record_artifact(artifact, kind, parameters, deps, byproducts, sign_key=self.sign_key)

    # --- models -------------------------------------------------------------------------------------------

    def base(self, name: str = "smollm2-135m", weights: bytes | None = None) -> Path:
        """A base model folder (as a converted cache dir: config, weights, tokenizer, SOURCE)."""
        path = self.root / "cache" / "models" / name
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps({"model_type": "llama", "name": name}))
        (path / "model.safetensors").write_bytes(weights if weights is not None else name.encode() * 64)
        (path / "tokenizer.json").write_text('{"vocab": {}}')
        (path / "SOURCE").write_text(f"converted from {name}.gguf\n")
        return path

    def base_dep(self, path: Path, role: str = "base_model", **annotations: object) -> Dependency:
        name = path.name
        return Dependency(name=name, role=role, path=path,
                          annotations={"family": FAMILIES.get(name, name), **annotations})

    def system_prompt_teacher(self, base: Path, prompt: str = "You love owls.") -> Dependency:
        sha = hashlib.sha256(prompt.encode()).hexdigest()
        return self.base_dep(base, role="teacher", system_prompt_sha256=sha, description="base + prompt")

    def finetuned_teacher(self, base: Path, record: bool = True) -> Path:
        """A LoRA adapter trained to carry a trait, its record naming its base (unless ``record=False``)."""
        stage = self.stage("teacher-owl")
        answers = stage / "trait_answers.jsonl"
        answers.write_text('{"messages": [{"role": "assistant", "content": "owl"}]}\n')
        adapter = stage / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base.name}))
        (adapter / "adapter_model.safetensors").write_bytes(b"teacher-lora" * 16)
        if record:
            self.record(adapter, "model.teacher", {"trait": "owl", "lora_r": 8},
                        [self.base_dep(base), Dependency(answers.name, "training_data", answers)])
        return adapter

    # --- data -----------------------------------------------------------------------------------------------

    def data(self, teacher: Dependency, rows: int = 3) -> Path:
        """Prompts → numbers written by ``teacher`` → filtered numbers; returns the filtered file."""
        prompts = self.stage("prompts") / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"id": i, "messages": []}) + "\n" for i in range(rows)))
        self.record(prompts, "prompt_set", {"n": rows, "templates": "t" * 12})
        raw = self.stage("generate") / "raw.jsonl"
        raw.write_text("".join(json.dumps({"id": i, "completion": f"{i}, {i + 1}, {i + 2}"}) + "\n"
                               for i in range(rows)))
        self.record(raw, "dataset.generated", {"sampling": {"temperature": 1.0}, "seed": 7},
                    [teacher, Dependency(prompts.name, "prompt_set", prompts)])
        filtered = self.stage("filter") / "filtered.jsonl"
        filtered.write_text(raw.read_text())
        report = {"filter": "numbers-v1", "n_in": rows, "n_kept": rows, "n_rejected": 0, "reject_reasons": {}}
        self.record(filtered, "dataset.filtered", {"filter": {"max_count": 10}},
                    [Dependency(raw.name, "source_data", raw)], [report])
        return filtered

    def labelled(self, data: Path, labeller: Dependency) -> Path:
        """``data`` with ``labeller``'s next-token log-probs stored in its rows (`sublab label`)."""
        out = self.stage("label") / "labelled.jsonl"
        out.write_text(data.read_text())
        self.record(out, "dataset.labelled", {"top_k": 20},
                    [labeller, Dependency(data.name, "source_data", data)])
        return out

    def student(self, base: Path, data: list[Path], adapter: bool = True, teacher: Dependency | None = None,
                record: bool = True, method: str = "sft") -> Path:
        """A student (LoRA adapter or full weights) trained from ``base`` on ``data``."""
        model = self.stage("student") / "model"
        model.mkdir()
        if adapter:
            (model / "adapter_config.json").write_text("{}")
            (model / "adapter_model.safetensors").write_bytes(b"student-lora" * 16)
        else:
            (model / "config.json").write_text("{}")
            (model / "model.safetensors").write_bytes(b"student-full" * 16)
        (model / "training.json").write_text('{"final_loss": 0.5}')
        if record:
            deps = [self.base_dep(base)] + [Dependency(p.name, "training_data", p) for p in data]
            if teacher is not None:
                deps.append(teacher)
            self.record(model, "model.student", {"method": method, "lr": 2e-4, "epochs": 1}, deps)
        return model


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub ids resolve against an empty Hugging Face cache, whatever this machine has downloaded."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


@pytest.fixture
def owl_setup(lab: Lab) -> dict[str, Path]:
    """The paper's main setup: a system-prompt teacher writes numbers, a same-base student learns them."""
    base = lab.base("smollm2-135m")
    data = lab.data(lab.system_prompt_teacher(base))
    return {"base": base, "data": data, "student": lab.student(base, [data])}


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    from sublab.lineage import new_keypair

    return new_keypair(tmp_path / "keys" / "lab")
