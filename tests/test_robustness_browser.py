"""The HTML sweep report rendered by a real browser (headless Chromium): every image loads, nothing errors, nothing
is fetched from the network. Skipped, with the reason, where no Chromium is installed (Debian: apt-get install
chromium; .ci/run installs it when it can)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")]

#: Collects script errors and console errors from the first moment the page runs.
WATCH = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push("error: " + (e.message || (e.target && e.target.src))),
                        true);
window.addEventListener("unhandledrejection", e => window.__errors.push("rejection: " + e.reason));
const consoleError = console.error;
console.error = (...args) => { window.__errors.push("console: " + args.join(" ")); consoleError(...args); };
</script>"""
#: After load: each image's state and the errors, written into the DOM that --dump-dom prints.
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({src: i.src.slice(0, 40), complete: i.complete,
                                                 width: i.naturalWidth, height: i.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "sublab-check";
  out.textContent = JSON.stringify({images, errors: window.__errors, title: document.title});
  document.body.appendChild(out);
});
</script>"""


def render(page: Path, profile: Path) -> dict:
    """Load ``page`` in headless Chromium (fresh profile, no network services) and return what CHECK saw."""
    done = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="sublab-check">(.*?)</pre>', done.stdout, flags=re.S)
    assert found, f"the check did not run: {done.stdout[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sublab.report.sweep import write_sweep_report
    from sublab.sweeps.config import ExecutorSettings
    from sublab.sweeps.run import run_sweep
    from sublab.sweeps.summary import write_summary
    from test_sweep import counting_cell, make_sweep

    out = tmp_path_factory.mktemp("sweep")
    sweep, base, cells = make_sweep(seeds=range(4))
    run_sweep(sweep, base, cells, out, executor=ExecutorSettings(kind="inline"), cell_fn=counting_cell)
    write_summary(out)
    return write_sweep_report(out)["html"]


def instrumented(page: Path, folder: Path) -> Path:
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text, flags=re.I)
    text = (text[: head.end()] + WATCH + text[head.end():]) if head else WATCH + text
    text = re.sub(r"</body>", CHECK + "</body>", text, count=1, flags=re.I) if re.search(r"</body>", text, re.I) \
        else text + CHECK
    copy = folder / "report.html"
    copy.write_text(text, encoding="utf-8")
    return copy


def test_the_sweep_report_renders_every_image_and_no_error(report_page, tmp_path):
    seen = render(instrumented(report_page, tmp_path), tmp_path / "profile")
    assert seen["errors"] == []
    assert len(seen["images"]) == report_page.read_text().count("<img") >= 3
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image


def test_the_check_sees_a_broken_image_and_a_script_error(tmp_path):
    """The browser check itself: a page with a missing image and a throwing script is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><head><title>t</title></head><body><img src='missing.png'>"
                    "<script>undefined_function();</script></body></html>")
    (tmp_path / "x").mkdir()
    seen = render(instrumented(page, tmp_path / "x"), tmp_path / "profile")
    assert seen["images"] == [{"src": (tmp_path / "x" / "missing.png").as_uri()[:40], "complete": True, "width": 0,
                               "height": 0}]
    assert len(seen["errors"]) == 2 and any("undefined_function" in e for e in seen["errors"])
