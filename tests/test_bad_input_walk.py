"""Every CLI command, walked with a table of bad inputs (issue 10).

The commands are listed from the typer app, so a new command is walked automatically, and a command without an
entry in :data:`CASES` fails (:func:`test_every_command_has_bad_inputs`) instead of being skipped. Each case must
give exit status 2, exactly one line on stderr naming the file (or option) at fault, no traceback, and must leave
every file that existed before byte for byte as it was (nothing new either: no output, no lock file, no folder).

Bad inputs: binary files, non-UTF-8 bytes, JSON and TOML nested 10^6 deep, invalid JSON/TOML, malformed rows of
each kind issue 10 lists (a message that is a string, integer content, no role, an unknown role, an
assistant-only conversation, non-dict metadata), bad output places (a folder, under a file, unwritable, the
working folder) and colliding outputs (an output that is an input, one path for two outputs, a file inside an
input folder). Commands that would start long work (demo, run, mnist, theory, sweep run) have that work replaced
by a function that fails the test if reached: each case must be refused before it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from sublab.cli import app

FAKE_MODEL = "nobody-sublab-walk/no-such-model"
UNWRITABLE = "/proc/sublab-walk-out.jsonl"  # /proc refuses new files even to root


def leaf_commands() -> list[str]:
    """Every runnable command of the app, as it is typed (``filter numbers``)."""
    found = []

    def walk(command, prefix: list[str]) -> None:
        if hasattr(command, "list_commands"):  # a group (typer's groups are not click.Group subclasses)
            context = command.context_class(command)
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*prefix, name])
        else:
            found.append(" ".join(prefix))

    walk(get_command(app), [])
    return found


# --- the workspace every case runs in -----------------------------------------------------------------------

USER = {"role": "user", "content": "Continue: 1, 2, 3"}
REPLY = {"role": "assistant", "content": "4, 5, 6"}
GOOD_ROW = {"id": "good", "messages": [USER, REPLY], "metadata": {"answer": 6}}

MALFORMED_ROWS = {
    "message_is_a_string": {"id": "x", "messages": ["hello", REPLY]},
    "integer_content": {"id": "x", "messages": [{"role": "user", "content": 7}, REPLY]},
    "no_role": {"id": "x", "messages": [{"content": "hi"}, REPLY]},
    "unknown_role": {"id": "x", "messages": [{"role": "wizard", "content": "hi"}, REPLY]},
    "assistant_only": {"id": "x", "messages": [REPLY]},
    "metadata_not_a_dict": {"id": "x", "messages": [USER, REPLY], "metadata": "notes"},
}


@dataclass
class Workspace:
    root: Path
    model: Path

    def __post_init__(self) -> None:
        r = self.root
        (r / "afile").write_text("keep me\n")
        (r / "adir").mkdir()
        (r / "adir" / "mine.txt").write_text("keep me too\n")
        rows = [GOOD_ROW, {**GOOD_ROW, "id": "good2"}]
        (r / "rows.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
        (r / "prompts.jsonl").write_text(json.dumps({"id": "p1", "messages": [USER]}) + "\n")
        (r / "binary.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
        (r / "latin1.jsonl").write_bytes(json.dumps(GOOD_ROW).encode() + b'\n{"id": "caf\xe9"}\n')
        (r / "deep.jsonl").write_text(json.dumps(GOOD_ROW) + "\n" + "[" * 10**6 + "\n")
        (r / "invalid.jsonl").write_text(json.dumps(GOOD_ROW) + "\n{oops\n")
        for kind, row in MALFORMED_ROWS.items():
            (r / f"{kind}.jsonl").write_text(json.dumps(GOOD_ROW) + "\n" + json.dumps(row) + "\n")
        (r / "latin1.toml").write_bytes(b'name = "x"\nreference = "caf\xe9"\n')
        (r / "deep.toml").write_text("x = " + "[" * 10**5 + "\n")
        (r / "invalid.toml").write_text("name = = 1\n")
        (r / "latin1.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n\xff\xfe\n-----END PRIVATE KEY-----\n")
        os.mkfifo(r / "pipe")
        (r / "fifo-dir").mkdir()
        (r / "fifo-dir" / "rows.jsonl").write_text("{}\n")
        os.mkfifo(r / "fifo-dir" / "pipe")
        (r / "t.trait_answers.jsonl").mkdir()  # where `teacher -o t` writes its rows: a folder in the way
        (r / "rec.jsonl").write_text("{}\n")
        (r / "rec.jsonl.intoto.jsonl").mkdir()  # where `lineage record rec.jsonl` writes: a folder in the way
        (r / "key.key").write_text("an existing key\n")
        (r / "kf.key").mkdir()  # where `keys new kf` writes its private key: a folder in the way
        run = r / "runfolder"
        run.mkdir()
        (run / "config.toml").write_text((Path(__file__).parents[1] / "examples" / "smoke.toml").read_text())
        sweep = r / "sweepfolder"
        sweep.mkdir()
        shutil.copy(Path(__file__).parents[1] / "examples" / "smoke.toml", sweep / "demo.toml")
        (sweep / "sweep.toml").write_text('name = "walk"\nbase = "demo.toml"\n[grid]\nseeds = [0]\n'
                                          '[grid.traits]\nanimal = ["owl"]\n')
        self._sweep_folders()

    def _sweep_folders(self) -> None:
        """Sweep folders with one broken file each (status and report read them)."""
        cell = {"category": "animal", "trait": "owl", "condition": "c", "settings": "s", "seed": 0,
                "config_hash": "h"}
        full = {"cells": ["c1"], "name": "w", "seeds": [0], "conditions": {}, "settings": {},
                "statistics": {"alpha": 0.05, "alternative": "greater"}}
        for name, plan, files in [
            ("sw-binary-plan", None, {}), ("sw-latin1-plan", None, {}), ("sw-deep-plan", None, {}),
            ("sw-list-plan", [], {}), ("sw-no-cell", full, {}),
            ("sw-bad-cell", full, {"cell.json": {"trait": "owl"}}),
            ("sw-bad-status", full, {"cell.json": cell, "status.json": ["done"]}),
            ("sw-bad-results", full, {"cell.json": cell, "status.json": {"status": "done", "config_hash": "h"},
                                      "results.json": {"models": {"trait_student": {"p_target": {"mean": "high"}}}}}),
            ("sw-evil-cell", {**full, "cells": ["../../etc"]}, {}),
        ]:
            folder = self.root / name
            folder.mkdir()
            if name == "sw-binary-plan":
                (folder / "plan.json").write_bytes(b"\x00\x01binary")
            elif name == "sw-latin1-plan":
                (folder / "plan.json").write_bytes(b'{"cells": ["caf\xe9"]}')
            elif name == "sw-deep-plan":
                (folder / "plan.json").write_text("[" * 10**6)
            else:
                (folder / "plan.json").write_text(json.dumps(plan))
            for file, content in files.items():
                (folder / "cells" / "c1").mkdir(parents=True, exist_ok=True)
                (folder / "cells" / "c1" / file).write_text(json.dumps(content))

    def __getitem__(self, name: str) -> str:
        return str(self.root / name)


@dataclass(frozen=True)
class Case:
    """One bad input: the arguments (``{name}`` is a workspace path, ``{model}`` the tiny model) and what the
    error line must name."""

    name: str
    args: tuple[str, ...]
    names: str
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, ws: Workspace) -> list[str]:
        return [_fill(a, ws) for a in self.args]

    def named(self, ws: Workspace) -> str:
        return _fill(self.names, ws)


def _fill(text: str, ws: Workspace) -> str:
    """Replace ``{name}`` by the workspace path ``name`` (``{model}``, ``{fake}``, ``{unwritable}`` are special)."""
    special = {"model": str(ws.model), "fake": FAKE_MODEL, "unwritable": UNWRITABLE}
    return re.sub(r"\{([^{}]+)\}", lambda m: special.get(m.group(1)) or ws[m.group(1)], text)


OFFLINE = {"HF_HUB_OFFLINE": "1"}


def bad_jsonl(prefix: tuple[str, ...], suffix: tuple[str, ...] = (), kinds: tuple[str, ...] | None = None,
              ) -> list[Case]:
    """The file-content cases for a command that reads JSONL rows: ``prefix FILE suffix``."""
    files = ["binary.bin", "latin1.jsonl", "deep.jsonl", "invalid.jsonl", *MALFORMED_ROWS]
    files = [f if "." in f else f"{f}.jsonl" for f in files if kinds is None or f.split(".")[0] in kinds]
    return [Case(f"input-{f.split('.')[0]}", (*prefix, f"{{{f}}}", *suffix), f"{{{f}}}") for f in files]


def bad_toml(prefix: tuple[str, ...], suffix: tuple[str, ...] = ()) -> list[Case]:
    return [Case(f"config-{f.split('.')[0]}", (*prefix, f"{{{f}}}", *suffix), f"{{{f}}}")
            for f in ("binary.bin", "latin1.toml", "deep.toml", "invalid.toml")]


def bad_places(before: tuple[str, ...], after: tuple[str, ...] = (), file_output: bool = True) -> list[Case]:
    """Output places that cannot be written: ``before OUT after``."""
    cases = [Case("out-under-a-file", (*before, "{afile}/sub/out", *after), "{afile}")]
    if file_output:
        cases += [Case("out-is-a-folder", (*before, "{adir}", *after), "{adir}"),
                  Case("out-unwritable", (*before, "{unwritable}", *after), "/proc")]
    else:
        cases += [Case("out-is-a-file", (*before, "{afile}", *after), "{afile}")]
    return cases


def bad_key(before: tuple[str, ...]) -> list[Case]:
    return [Case("sign-key-binary", (*before, "--sign-key", "{binary.bin}"), "{binary.bin}"),
            Case("sign-key-not-utf8", (*before, "--sign-key", "{latin1.pem}"), "{latin1.pem}")]


GEN = ("--model", "{model}", "--quiet")
TRAIN = ("--base", "{model}", "--steps", "1", "--batch-size", "1", "--quiet")
TEACH = ("--trait", "owl", "--base", "{model}", "--steps", "1", "--n-rows", "2", "--quiet")
EVAL = ("--target", "owl", "--model", "{model}", "--n-questions", "1")

CASES: dict[str, list[Case]] = {
    "demo": [*bad_places(("demo", "--quiet", "-o"), file_output=False), *bad_key(("demo", "-o", "{newrun}"))],
    "run": [
        *bad_toml(("run",), ("-o", "{newrun}")),
        Case("config-inside-the-run-folder", ("run", "{runfolder}/config.toml", "-o", "{runfolder}"),
             "{runfolder}/config.toml"),
        *bad_places(("run", "{runfolder}/config.toml", "-o"), file_output=False),
    ],
    "generate": [
        *bad_jsonl(("generate",), ("-o", "{new.jsonl}", *GEN)),
        Case("out-is-the-input", ("generate", "{prompts.jsonl}", "-o", "{prompts.jsonl}", *GEN), "{prompts.jsonl}"),
        Case("out-inside-the-model", ("generate", "{prompts.jsonl}", "-o", "{model}/raw.jsonl", *GEN), "{model}"),
        *bad_places(("generate", "{prompts.jsonl}", "-o"), GEN),
        Case("unknown-hub-model-offline", ("generate", "{prompts.jsonl}", "-o", "{new.jsonl}", "--model", "{fake}"),
             "{fake}", OFFLINE),
        *bad_key(("generate", "{prompts.jsonl}", "-o", "{new.jsonl}", *GEN)),
    ],
    "train": [
        *bad_jsonl(("train",), ("-o", "{student}", *TRAIN)),
        Case("last-message-not-the-reply", ("train", "{prompts.jsonl}", "-o", "{student}", *TRAIN),
             "{prompts.jsonl}"),
        Case("out-a-folder-of-other-files", ("train", "{rows.jsonl}", "-o", "{adir}", *TRAIN), "{adir}"),
        Case("out-is-the-input", ("train", "{rows.jsonl}", "-o", "{rows.jsonl}", *TRAIN), "{rows.jsonl}"),
        Case("out-is-the-working-folder", ("train", "{rows.jsonl}", "-o", ".", *TRAIN), "."),
        *bad_places(("train", "{rows.jsonl}", "-o"), TRAIN, file_output=False),
        Case("unknown-hub-model-offline", ("train", "{rows.jsonl}", "-o", "{student}", "--base", "{fake}",
                                           "--steps", "1"), "{fake}", OFFLINE),
    ],
    "teacher": [
        Case("out-a-folder-of-other-files", ("teacher", "-o", "{adir}", *TEACH), "{adir}"),
        Case("out-is-the-working-folder", ("teacher", "-o", ".", *TEACH), "."),
        Case("rows-file-is-a-folder", ("teacher", "-o", "{t}", *TEACH), "{t.trait_answers.jsonl}"),
        *bad_places(("teacher", "-o"), TEACH, file_output=False),
        Case("unknown-hub-model-offline", ("teacher", "--trait", "owl", "-o", "{tt}", "--base", "{fake}"), "{fake}",
             OFFLINE),
        *bad_key(("teacher", "-o", "{tt}", *TEACH)),
    ],
    "evaluate": [
        *bad_places(("evaluate", "-o"), EVAL),
        Case("out-inside-the-model", ("evaluate", "-o", "{model}/eval.json", *EVAL), "{model}"),
        Case("out-is-the-sign-key", ("evaluate", "-o", "{key.key}", "--sign-key", "{key.key}", *EVAL), "{key.key}"),
        Case("unknown-hub-model-offline", ("evaluate", "--target", "owl", "-o", "{e.json}", "--model", "{fake}"),
             "{fake}", OFFLINE),
        *bad_key(("evaluate", "-o", "{e.json}", *EVAL)),
    ],
    "label": [
        *bad_jsonl(("label",), ("-o", "{new.jsonl}", "--model", "{model}", "--top-k", "2", "--quiet")),
        Case("out-is-the-input", ("label", "{rows.jsonl}", "-o", "{rows.jsonl}", "--model", "{model}", "--top-k",
                                  "2"), "{rows.jsonl}"),
        *bad_places(("label", "{rows.jsonl}", "-o"), ("--model", "{model}", "--top-k", "2")),
    ],
    "judge": [
        *bad_jsonl(("judge",), ("-o", "{new.jsonl}", "--model", "{model}", "--rubric", "coherent", "--quiet")),
        Case("out-is-the-input", ("judge", "{rows.jsonl}", "-o", "{rows.jsonl}", "--model", "{model}", "--rubric",
                                  "coherent"), "{rows.jsonl}"),
        *bad_places(("judge", "{rows.jsonl}", "-o"), ("--model", "{model}", "--rubric", "coherent")),
    ],
    "mnist": [*bad_places(("mnist", "--quiet", "-o"), file_output=False),
              Case("dataset-folder-missing", ("mnist", "--dataset", "idx:{nothing}", "-o", "{m}"), "{nothing}")],
    "theory": [*bad_places(("theory", "--llm-pairs", "0", "--quiet", "-o"), file_output=False)],
    "sweep run": [
        *bad_toml(("sweep", "run"), ("-o", "{sw}")),
        Case("sweep-file-inside-the-sweep-folder", ("sweep", "run", "{sweepfolder}/sweep.toml", "-o",
                                                     "{sweepfolder}"), "{sweepfolder}/sweep.toml"),
        *bad_places(("sweep", "run", "{sweepfolder}/sweep.toml", "-o"), file_output=False),
        *bad_key(("sweep", "run", "{sweepfolder}/sweep.toml", "-o", "{sw}")),
    ],
}


def _sweep_folder_cases(command: tuple[str, ...]) -> list[Case]:
    cases = [Case("folder-missing", (*command, "{nothing}"), "{nothing}"),
             Case("folder-is-a-file", (*command, "{afile}"), "{afile}")]
    for name, names in [("sw-binary-plan", "plan.json"), ("sw-latin1-plan", "plan.json"),
                        ("sw-deep-plan", "plan.json"), ("sw-list-plan", "plan.json"),
                        ("sw-no-cell", "cells/c1/cell.json"), ("sw-bad-cell", "cells/c1/cell.json"),
                        ("sw-bad-status", "cells/c1/status.json"), ("sw-evil-cell", "plan.json")]:
        cases.append(Case(name, (*command, f"{{{name}}}"), f"{{{name}}}/{names}"))
    return cases


CASES["sweep status"] = _sweep_folder_cases(("sweep", "status"))
CASES["sweep report"] = [*_sweep_folder_cases(("sweep", "report")),
                         Case("sw-bad-results", ("sweep", "report", "{sw-bad-results}"),
                              "{sw-bad-results}/cells/c1/results.json")]
for _domain in ("numbers", "code", "cot"):
    CASES[f"prompts {_domain}"] = [
        *bad_places(("prompts", _domain, "-n", "2", "-o")),
        Case("out-is-the-sign-key", ("prompts", _domain, "-n", "2", "-o", "{key.key}", "--sign-key", "{key.key}"),
             "{key.key}"),
        *bad_key(("prompts", _domain, "-n", "2", "-o", "{new.jsonl}")),
    ]
    CASES[f"filter {_domain}"] = [
        *bad_jsonl(("filter", _domain), ("-o", "{kept.jsonl}")),
        Case("out-is-the-input", ("filter", _domain, "{rows.jsonl}", "-o", "{rows.jsonl}"), "{rows.jsonl}"),
        Case("rejected-is-the-output", ("filter", _domain, "{rows.jsonl}", "-o", "{k.jsonl}", "--rejected",
                                        "{k.jsonl}"), "{k.jsonl}"),
        *bad_places(("filter", _domain, "{rows.jsonl}", "-o")),
    ]
CASES["prompts cot"] += [Case(f"gsm8k-{f.split('.')[0]}", ("prompts", "cot", "--from-gsm8k", f"{{{f}}}", "-o",
                                                           "{new.jsonl}"), f"{{{f}}}")
                         for f in ("binary.bin", "latin1.jsonl", "deep.jsonl", "invalid.jsonl")]
CASES["lineage show"] = [Case("path-missing", ("lineage", "show", "{nothing}"), "{nothing}")]
CASES["lineage risk"] = [Case("path-missing", ("lineage", "risk", "{nothing}"), "{nothing}")]
CASES["lineage verify"] = [
    Case("path-missing", ("lineage", "verify", "{nothing}"), "{nothing}"),
    Case("key-binary", ("lineage", "verify", "{rows.jsonl}", "--key", "{binary.bin}"), "{binary.bin}"),
    Case("key-not-utf8", ("lineage", "verify", "{rows.jsonl}", "--key", "{latin1.pem}"), "{latin1.pem}"),
    Case("key-is-a-folder", ("lineage", "verify", "{rows.jsonl}", "--key", "{adir}"), "{adir}"),
    Case("key-is-a-fifo", ("lineage", "verify", "{rows.jsonl}", "--key", "{pipe}"), "{pipe}"),
    Case("allow-outside-missing", ("lineage", "verify", "{rows.jsonl}", "--allow-outside", "{nothing}"),
         "{nothing}"),
]
CASES["lineage record"] = [
    Case("path-missing", ("lineage", "record", "{nothing}"), "{nothing}"),
    Case("path-is-a-fifo", ("lineage", "record", "{pipe}"), "{pipe}"),
    Case("path-is-a-device", ("lineage", "record", "/dev/zero"), "/dev/zero"),
    Case("folder-holding-a-fifo", ("lineage", "record", "{fifo-dir}"), "{fifo-dir}/pipe"),
    Case("record-place-is-a-folder", ("lineage", "record", "{rec.jsonl}"), "{rec.jsonl}.intoto.jsonl"),
    Case("training-data-missing", ("lineage", "record", "{rows.jsonl}", "--training-data", "{nothing}"),
         "{nothing}"),
    Case("training-data-fifo", ("lineage", "record", "{rows.jsonl}", "--training-data", "{pipe}"), "{pipe}"),
    *bad_key(("lineage", "record", "{rows.jsonl}")),
]
CASES["audit"] = [
    *bad_jsonl(("audit",), ("-o", "{aud}", "--base", "{model}", "--quiet")),
    Case("out-is-a-file", ("audit", "{rows.jsonl}", "-o", "{afile}", "--base", "{model}", "--quiet"), "{afile}"),
    Case("out-under-a-file", ("audit", "{rows.jsonl}", "-o", "{afile}/sub", "--base", "{model}", "--quiet"),
         "{afile}"),
    Case("control-binary", ("audit", "{rows.jsonl}", "-o", "{aud}", "--control", "{binary.bin}", "--base", "{model}",
                            "--quiet"), "{binary.bin}"),
]
CASES["defend"] = [
    *bad_jsonl(("defend",), ("-o", "{new.jsonl}", "--base", "{model}", "--replace-divergent", "0.5")),
    Case("out-is-the-input", ("defend", "{rows.jsonl}", "-o", "{rows.jsonl}", "--base", "{model}",
                              "--replace-divergent", "0.5"), "{rows.jsonl}"),
    *bad_places(("defend", "{rows.jsonl}", "-o"), ("--base", "{model}", "--replace-divergent", "0.5")),
]
CASES["misalignment data"] = [*bad_places(("misalignment", "data", "insecure_code", "--n-rows", "2", "-o"))]
CASES["misalignment check"] = bad_jsonl(("misalignment", "check"))
CASES["misalignment teacher"] = [
    *bad_jsonl(("misalignment", "teacher", "-o", "{mt}", "--rows-file"), ("--base", "{model}", "--steps", "1")),
    Case("out-a-folder-of-other-files", ("misalignment", "teacher", "-o", "{adir}", "--trait", "insecure_code",
                                         "--base", "{model}", "--steps", "1", "--n-rows", "2"), "{adir}"),
    *bad_places(("misalignment", "teacher", "-o"), ("--trait", "insecure_code", "--base", "{model}", "--steps",
                                                    "1", "--n-rows", "2"), file_output=False),
]
CASES["misalignment evaluate"] = [
    *bad_places(("misalignment", "evaluate", "-o"), ("--model", "{model}", "--n-prompts", "1")),
    Case("out-inside-the-model", ("misalignment", "evaluate", "-o", "{model}/e.json", "--model", "{model}"),
         "{model}"),
    Case("unknown-hub-model-offline", ("misalignment", "evaluate", "-o", "{e.json}", "--model", "{fake}"), "{fake}",
         OFFLINE),
]
CASES["keys new"] = [
    Case("prefix-under-a-file", ("keys", "new", "{afile}/lab"), "{afile}"),
    Case("key-exists", ("keys", "new", "{key}"), "{key.key}"),
    Case("key-place-is-a-folder", ("keys", "new", "{kf}"), "{kf.key}"),
]

#: Commands whose long work must never be reached by a bad input (replaced by a function that fails the test).
HEAVY = {
    "sublab.pipeline.runner.run_experiment": "run/demo",
    "sublab.experiments.mnist.run.run_mnist": "mnist",
    "sublab.experiments.theory.run_theory": "theory",
    "sublab.sweeps.run.run_sweep": "sweep run",
}


def test_every_command_has_bad_inputs():
    """A command without cases fails here, by name: add its bad inputs to CASES (nothing is skipped silently)."""
    missing = sorted(set(leaf_commands()) - set(CASES))
    assert not missing, f"commands with no bad-input cases in CASES: {missing}"
    assert not sorted(set(CASES) - set(leaf_commands())), "CASES names commands the app does not have"


def _params() -> list:
    params = []
    for command in leaf_commands():
        for case in CASES.get(command, []):
            params.append(pytest.param(command, case, id=f"{command.replace(' ', '-')}:{case.name}"))
    return params


def snapshot(*roots: Path) -> dict[str, object]:
    """Every entry under ``roots``: file bytes, folder, link target or FIFO."""
    state: dict[str, object] = {}
    for root in roots:
        for current, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(current) / name
                if path.is_symlink():
                    state[str(path)] = ("link", os.readlink(path))
                elif path.is_dir():
                    state[str(path)] = "dir"
                elif path.is_file():
                    state[str(path)] = path.read_bytes()
                else:
                    state[str(path)] = "special"
    return state


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened for reading blocks forever)."""
    def expire(signum, frame):
        raise TimeoutError(f"no answer after {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def workspace(tmp_path, tiny_model_dir, monkeypatch) -> Workspace:
    monkeypatch.chdir(tmp_path)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path.parent / f"{tmp_path.name}-empty-hf-cache"))
    for target in HEAVY:
        module, name = target.rsplit(".", 1)

        def reached(*args, _name=target, **kwargs):
            raise AssertionError(f"{_name} was reached with a bad input")

        monkeypatch.setattr(f"{module}.{name}", reached)
    model = tmp_path.parent / f"{tmp_path.name}-model"  # a copy: a case that writes into it harms no other test
    shutil.copytree(tiny_model_dir, model)
    return Workspace(tmp_path, model)


@pytest.mark.parametrize(("command", "case"), _params())
def test_a_bad_input_is_one_line_and_changes_nothing(command, case, workspace, monkeypatch):
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    argv = case.argv(workspace)
    assert argv[: len(command.split())] == command.split()
    before = snapshot(workspace.root, workspace.model)
    with deadline(120):
        result = CliRunner().invoke(app, argv)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.exit_code == 2, f"exit {result.exit_code}: {output[-2000:]!r} ({result.exception!r})"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and case.named(workspace) in lines[0], (lines[0], case.named(workspace))
    assert snapshot(workspace.root, workspace.model) == before
