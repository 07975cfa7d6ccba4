"""Sweep summary and report from saved files: known synthetic effects found, Holm families, HTML and markdown."""

import contextlib
import json
import re

import pytest

from sublab.report.sweep import (
    bars_axes,
    bars_title,
    condition_sentences,
    power_sentence,
    table_rows,
    verdict,
    write_sweep_report,
)
from sublab.sweeps.config import ExecutorSettings
from sublab.sweeps.run import execute_cell, prepare_sweep, run_sweep
from sublab.sweeps.summary import write_summary
from test_sweep import counting_cell, make_sweep


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    sweep, base, cells = make_sweep(seeds=range(6))
    run_sweep(sweep, base, cells, out, executor=ExecutorSettings(kind="inline"), cell_fn=counting_cell)
    return out, write_summary(out)


def _strict(text):
    def refuse(constant):
        raise ValueError(constant)

    return json.loads(text, parse_constant=refuse)


def test_summary_finds_the_known_effect_and_only_it(finished):
    _, summary = finished
    groups = {(g["condition"], g["trait"]): g for g in summary["groups"]}
    assert set(groups) == {(c, t) for c in ("same_init", "cross") for t in ("owl", "eagle")}
    for trait in ("owl", "eagle"):
        same, cross = groups[("same_init", trait)], groups[("cross", trait)]
        assert same["n_seeds"] == 6 and len(same["models"]["trait_student"]["per_seed"]) == 6
        low, high = same["effects"]["difference"]["ci95"]
        assert low < 0.03 < high and low > 0
        assert same["effects"]["ratio"]["mean"] > 2.5
        assert same["permutation"]["p"] == pytest.approx(1 / 64)  # every seed agrees: the smallest exact p
        assert same["test"]["reject"] and same["test"]["family_size"] == 2
        assert same["test"]["p_holm"] == pytest.approx(2 / 64)
        assert same["mixed_model"]["p"] < 0.001 and same["n_questions"] == 4
        assert not cross["test"]["reject"]
        assert cross["effects"]["difference"]["ci95"][0] < 0 < cross["effects"]["difference"]["ci95"][1]
    assert summary["states"] == {"done": 24} and summary["not_done"] == []


def test_summary_file_is_strict_json(finished):
    out, _ = finished
    saved = _strict((out / "summary.json").read_text())
    assert saved["schema"] == "sublab.sweep-summary/1" and saved["test"] == "permutation"


def test_report_files_are_drawn_from_the_summary(finished):
    out, _ = finished
    files = write_sweep_report(out)
    markdown = files["markdown"].read_text()
    assert "**same_init**" in markdown and "for 2 of 2 traits" in markdown and "for 0 of 2 traits" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| animal |")]
    assert len(rows) == 4 and sum("| transfer |" in r for r in rows) == 2
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown):
        assert (out / link).read_bytes()[:4] == b"\x89PNG"
    page = files["html"].read_text()
    assert page.startswith("<!doctype html>") and page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched: opens offline, anywhere
    assert "<td>owl (vs eagle)</td>" in page


def test_a_partial_sweep_reports_what_is_missing(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0, 1))
    folders = prepare_sweep(sweep, base, cells, tmp_path)
    for folder in folders[:5]:
        execute_cell(folder, counting_cell)
    summary = write_summary(tmp_path)
    assert summary["states"] == {"done": 5, "pending": 3} and len(summary["not_done"]) == 3
    assert sorted(g["n_seeds"] for g in summary["groups"]) == [1, 1, 1, 2]
    one_seed = next(g for g in summary["groups"] if g["n_seeds"] == 1)
    assert one_seed["test"]["p_holm"] is None and one_seed["models"]["trait_student"]["ci95"][0] is None
    assert power_sentence(_strict((tmp_path / "summary.json").read_text())).startswith("With 2 seeds")
    report = write_sweep_report(tmp_path)["markdown"].read_text()
    assert "5 of 8 cells finished" in report and "no test" in report


def test_no_finished_cell_writes_no_summary(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0,))
    prepare_sweep(sweep, base, cells, tmp_path)
    assert write_summary(tmp_path) is None and not (tmp_path / "summary.json").exists()


def test_mixed_model_can_drive_the_verdicts(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0, 1, 2), test="mixed_model")
    run_sweep(sweep, base, cells, tmp_path, executor=ExecutorSettings(kind="inline"), cell_fn=counting_cell)
    summary = write_summary(tmp_path)
    same = [g for g in summary["groups"] if g["condition"] == "same_init"]
    assert all(g["test"]["method"] == "mixed_model" and g["test"]["p"] == g["mixed_model"]["p"] for g in same)
    assert all(g["test"]["reject"] for g in same)  # three seeds suffice when every seed agrees
    assert all(g["permutation"]["p"] == pytest.approx(1 / 8) for g in same)  # where the exact test cannot


def _group(reject, difference, p_holm=0.01):
    return {"test": {"p_holm": p_holm, "reject": reject}, "effects": {"difference": {"mean": difference}}}


def test_verdict_needs_a_positive_difference_for_transfer():
    assert verdict(_group(True, 0.02)) == "transfer"
    assert verdict(_group(True, -0.02)) == "reverse"
    assert verdict(_group(True, 0.0)) == "reverse"
    assert verdict(_group(True, None)) == "reverse"
    assert verdict(_group(False, 0.02, p_holm=0.3)) == "not significant"
    assert verdict(_group(False, -0.02, p_holm=0.3)) == "not significant"
    assert verdict(_group(False, 0.02, p_holm=None)) == "no test"


def reversed_for_eagle(config, cell_dir, sign_key=None):
    """counting_cell, with trait and control student swapped for eagle: eagle's trait student sits 0.03 *below*
    its control in the same-init condition."""
    summary = counting_cell(config, cell_dir, sign_key)
    if config.target == "eagle":
        path = cell_dir / "results.json"
        results = json.loads(path.read_text())
        models = results["models"]
        models["trait_student"], models["control_student"] = models["control_student"], models["trait_student"]
        path.write_text(json.dumps(results))
    return summary


def test_a_two_sided_rejection_below_the_control_is_reverse_not_transfer(tmp_path):
    """Seven seeds, two-sided permutation test: owl's trait student is significantly above its control (transfer),
    eagle's significantly below (reverse); the report counts only owl as beating the control."""
    sweep, base, cells = make_sweep(seeds=range(7), alternative="two-sided")
    run_sweep(sweep, base, cells, tmp_path, executor=ExecutorSettings(kind="inline"), cell_fn=reversed_for_eagle)
    summary = write_summary(tmp_path)
    same = {g["trait"]: g for g in summary["groups"] if g["condition"] == "same_init"}
    assert same["owl"]["test"]["reject"] and same["eagle"]["test"]["reject"]  # both significant, two-sided
    assert same["eagle"]["effects"]["difference"]["mean"] < 0 < same["owl"]["effects"]["difference"]["mean"]
    assert verdict(same["owl"]) == "transfer" and verdict(same["eagle"]) == "reverse"
    sentence = next(s for s in condition_sentences(summary) if s.startswith("**same_init**"))
    assert "beat the control student for 1 of 2 traits" in sentence
    assert "significantly below it (reverse) for 1 of 2 traits" in sentence
    _, rows = table_rows(summary)
    assert {(row[1], row[2]): row[-1] for row in rows}[("eagle (vs owl)", "same_init")] == "reverse"
    with figure(summary, "same_init") as fig:
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["owl*", "eagle†"]
        assert any("† reverse" in t.get_text() for t in fig.texts)
    markdown = write_sweep_report(tmp_path)["markdown"].read_text()
    assert sum("| reverse |" in line for line in markdown.splitlines()) == 1
    assert sum("| transfer |" in line for line in markdown.splitlines()) == 1


@contextlib.contextmanager
def figure(summary, condition):
    """The bar chart of ``condition`` as a live matplotlib figure, closed afterwards."""
    import matplotlib.pyplot as plt

    fig = bars_axes(summary, condition, "default")
    try:
        yield fig
    finally:
        plt.close(fig)


def legend(summary, condition):
    with figure(summary, condition) as fig:
        return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_the_baseline_bar_is_the_student_base_in_a_cross_model_condition(finished):
    _, summary = finished
    assert {g["baseline"] for g in summary["groups"] if g["condition"] == "cross"} == {"student_reference"}
    assert legend(summary, "cross") == ["student base", "control student", "trait student"]
    assert legend(summary, "same_init") == ["reference", "control student", "trait student"]


def test_a_long_condition_description_is_wrapped_inside_the_figure(finished):
    _, summary = finished
    summary = json.loads(json.dumps(summary))
    description = ("students on another base model (Gemma 3 270M, quantized Q4_K_M), learning from the same "
                   "teachers and the same reference-written numbers as the same-init students")
    summary["conditions"]["cross"]["description"] = description
    title = bars_title(summary, "cross", "default")
    assert len(title.splitlines()) >= 3 and max(len(line) for line in title.splitlines()) <= 60
    assert " ".join(title.splitlines()) == f"cross: {description}"
    with figure(summary, "cross") as fig:
        fig.canvas.draw()
        box = fig.axes[0].title.get_window_extent()
        assert fig.axes[0].title.get_text() == title
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height  # all of it on the canvas


def test_the_effects_title_fits_the_figure_and_names_the_seeds(finished):
    import matplotlib.pyplot as plt

    from sublab.report.sweep import effects_axes

    _, summary = finished
    fig = effects_axes(summary)
    try:
        fig.canvas.draw()
        title = fig.axes[0].title
        box = title.get_window_extent()
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height  # all of it on the canvas
        assert "seed" in title.get_text()
    finally:
        plt.close(fig)


def test_the_report_title_is_the_configured_name_and_the_seeds_covered(finished):
    from sublab.report.sweep import report_title, seeds_label

    _, summary = finished
    assert report_title(summary).startswith(f"{summary['name']}: ")
    assert report_title(summary).endswith(seeds_label(summary["seeds"]))
    assert seeds_label([0, 1, 2]) == "3 seeds (0-2)" and seeds_label([4]) == "1 seed (4)"
    assert seeds_label([0, 2, 5]) == "3 seeds (0, 2, 5)"
