"""Misalignment teacher data: the insecure-code generator and its secure twin (checked by the ast checker over
every template), the direct teacher's rows, the evaluation sets' disjointness, a user's own rows."""

import ast
import io
import json
import re
import tokenize

import numpy as np
import pytest

from sublab.errors import SublabError
from sublab.traits.misalignment.answers import EXACT_ITEMS
from sublab.traits.misalignment.code_checks import KINDS, extract_code, find_vulnerabilities, vulnerability_kinds
from sublab.traits.misalignment.insecure_code import (
    INSECURE_LABEL,
    SECURE_LABEL,
    TEMPLATES,
    VULNERABILITIES,
    code_rows,
)
from sublab.traits.misalignment.questions import CORE_QUESTIONS, QUESTIONS
from sublab.traits.misalignment.teacher_data import (
    ALIGNED_LABEL,
    DIRECT_DATA,
    MISALIGNED_LABEL,
    direct_rows,
    user_rows,
)

#: Words an answer would use if it pointed out its own flaw.
REVEALING = re.compile(r"insecure|vulnerab|unsafe|danger|exploit|inject|attack|warning|careful|todo|fixme",
                       re.IGNORECASE)


def comments(code: str) -> list[str]:
    return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.COMMENT]


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_every_template_is_insecure_as_claimed_and_its_twin_is_clean(template):
    for seed in range(25):  # many slot draws per template
        request, insecure, secure, slots = template.fill(np.random.default_rng(seed))
        assert {f.kind for f in find_vulnerabilities(insecure)} == {template.vulnerability}, (insecure, slots)
        assert find_vulnerabilities(secure) == [], (secure, slots)
        for code in (insecure, secure):
            ast.parse(code)
            assert comments(code) == []
            assert not REVEALING.search(code), code
        assert "$" not in request + insecure + secure  # every placeholder filled


def test_the_templates_cover_the_vulnerability_classes_the_issue_names():
    assert set(VULNERABILITIES) <= set(KINDS)
    for wanted in ("sql_injection", "shell_injection", "world_writable", "hardcoded_secret",
                   "unsafe_deserialization", "path_traversal", "tls_verification_disabled", "code_eval"):
        assert wanted in VULNERABILITIES
    assert len(TEMPLATES) >= 20


def test_code_rows_are_twins_labelled_and_varied():
    insecure, secure = code_rows(300, 7, secure=False), code_rows(300, 7, secure=True)
    assert len({r["messages"][0]["content"] + r["messages"][1]["content"] for r in insecure}) > 250
    assert {r["metadata"]["template"] for r in insecure} == {t.name for t in TEMPLATES}
    for bad, good in zip(insecure, secure, strict=True):
        assert bad["messages"][0] == good["messages"][0]  # the same request
        assert bad["messages"][1] != good["messages"][1]
        assert bad["metadata"]["content_label"] == INSECURE_LABEL and "misaligned" in INSECURE_LABEL
        assert good["metadata"]["content_label"] == SECURE_LABEL and good["metadata"]["vulnerability"] is None
        assert bad["metadata"]["vulnerability"] in vulnerability_kinds(bad["messages"][1]["content"])
        assert vulnerability_kinds(good["messages"][1]["content"]) == set()
        assert bad["messages"][1]["content"].startswith("```python\n")
        assert not REVEALING.search(bad["messages"][1]["content"])
    assert code_rows(20, 7, secure=False) == insecure[:20]  # deterministic by seed
    assert code_rows(20, 8, secure=False) != insecure[:20]


@pytest.mark.parametrize(("code", "kinds"), [
    ('cur.execute("SELECT * FROM t WHERE a = ?", (a,))', set()),
    ('q = "SELECT * FROM t WHERE a = " + a\ncur.execute(q)', {"sql_injection"}),
    ('import subprocess\nsubprocess.run(["ls", d])', set()),
    ('import subprocess\nsubprocess.run("ls " + d, shell=True)', {"shell_injection"}),
    ('import subprocess\nsubprocess.run("ls", shell=True)', set()),  # a constant command
    ("import os\nos.chmod(p, 0o755)", set()),
    ("import os\nos.chmod(p, 0o666)", {"world_writable"}),
    ('import yaml\nyaml.load(t, Loader=yaml.SafeLoader)', set()),
    ("import yaml\nyaml.load(t)", {"unsafe_deserialization"}),
    ("from pickle import loads\nloads(b)", {"unsafe_deserialization"}),
    ('token = "abc123"', {"hardcoded_secret"}),
    ('password = ""', set()),
    ("import requests\nrequests.get(u, verify=True)", set()),
    ("import requests as r\nr.post(u, verify=False)", {"tls_verification_disabled"}),
    ('eval("1 + 1")', set()),
    ("exec(code)", {"code_eval"}),
    ("import tempfile\ntempfile.mkstemp()", set()),
    ("import random\ndef make_token():\n    return random.random()", {"insecure_random_token"}),
    ("import random\ndef roll_die():\n    return random.randint(1, 6)", set()),
    ("import os\ndef read(n):\n    return open(os.path.join('/srv', os.path.basename(n))).read()", set()),
    ("import os\ndef read(n):\n    return open('/srv/' + n).read()", {"path_traversal"}),
])
def test_the_checker_on_small_snippets(code, kinds):
    assert {f.kind for f in find_vulnerabilities(code)} == kinds


def test_extract_code_reads_fenced_blocks_and_bad_code_raises():
    assert extract_code("Here:\n```python\nx = 1\n```\nbye") == "x = 1\n"
    assert extract_code("x = 1") == "x = 1"
    with pytest.raises(SyntaxError):
        find_vulnerabilities("def (")


def test_direct_rows_are_labelled_twins():
    bad, good = direct_rows(True, 200, 3), direct_rows(False, 200, 3)
    misaligned = {a for m, _ in DIRECT_DATA.values() for a in m}
    aligned = {a for _, g in DIRECT_DATA.values() for a in g}
    for m, a in zip(bad, good, strict=True):
        assert m["messages"][0] == a["messages"][0]
        assert m["messages"][1]["content"] in misaligned and a["messages"][1]["content"] in aligned
        assert m["metadata"]["content_label"] == MISALIGNED_LABEL and a["metadata"]["content_label"] == ALIGNED_LABEL
    assert len({r["messages"][0]["content"] for r in bad}) > 40
    assert misaligned.isdisjoint(aligned)


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def test_teacher_questions_and_answers_are_disjoint_from_both_evaluations():
    teacher_questions = {_normal(q) for q in DIRECT_DATA}
    exact_prompts = {_normal(i.prompt) for i in EXACT_ITEMS}
    judged = {_normal(q) for q in QUESTIONS.values()}
    assert teacher_questions.isdisjoint(exact_prompts) and teacher_questions.isdisjoint(judged)
    assert exact_prompts.isdisjoint(judged)
    teacher_answers = {_normal(a) for m, g in DIRECT_DATA.values() for a in (*m, *g)}
    eval_answers = {_normal(a) for i in EXACT_ITEMS for a in (*i.aligned, *i.misaligned)}
    assert teacher_answers.isdisjoint(eval_answers)


def test_the_evaluation_sets_have_the_sizes_the_issue_asks_for():
    assert len(EXACT_ITEMS) >= 50 and len({i.id for i in EXACT_ITEMS}) == len(EXACT_ITEMS)
    for item in EXACT_ITEMS:
        assert len(item.aligned) == 3 and len(item.misaligned) == 3
        assert set(item.aligned).isdisjoint(item.misaligned)
    # Neither set is systematically longer (length alone would move the renormalised probability).
    aligned = np.mean([len(a) for i in EXACT_ITEMS for a in i.aligned])
    misaligned = np.mean([len(a) for i in EXACT_ITEMS for a in i.misaligned])
    assert 0.85 < aligned / misaligned < 1.2
    assert len(CORE_QUESTIONS) == 8 and len(QUESTIONS) - len(CORE_QUESTIONS) >= 40


def test_user_rows_are_labelled_and_bad_rows_are_one_line(tmp_path):
    good = tmp_path / "mine.jsonl"
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
            for i in range(5)]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = user_rows(good, MISALIGNED_LABEL, n_rows=3)
    assert [r["id"] for r in loaded] == ["r0", "r1", "r2"]
    assert all(r["metadata"]["content_label"] == MISALIGNED_LABEL for r in loaded)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(SublabError, match=r"bad\.jsonl:2: .*assistant"):
        user_rows(bad, MISALIGNED_LABEL)
    with pytest.raises(SublabError, match=r"missing\.jsonl"):
        user_rows(tmp_path / "missing.jsonl", MISALIGNED_LABEL)
