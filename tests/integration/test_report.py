"""The HTML report opens in headless Chromium with no console errors and every image and table present.

Chromium is Debian's ``chromium`` package (``.ci/install-chromium.sh``, run by ``make test``). Where it is missing,
the test runs that script once; it skips, saying why, only where Chromium still cannot be found.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_runs import PROMPTS, make_runs

from bench.evaluations.report import write_report

ROOT = Path(__file__).resolve().parents[2]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        subprocess.run(["sh", str(ROOT / ".ci" / "install-chromium.sh")], capture_output=True, timeout=600)
        found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed and .ci/install-chromium.sh could not install it (needs root and apt)")
    return found


def open_page(page: Path, tmp_path: Path) -> tuple[dict[str, str], list[str], str]:
    """Load ``page``; returns the <body> data attributes, the console lines and the DOM after scripts ran."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", done.stdout)
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))) if body else {}
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return {k: html.unescape(v) for k, v in attrs.items()}, console, done.stdout


def test_report_loads_with_every_image_and_table(tmp_path):
    runs = make_runs(tmp_path / "runs")
    page = write_report(runs, tmp_path / "out" / "report.html", n_boot=200)
    shutil.rmtree(tmp_path / "runs")  # the report must not depend on the run folders once written
    attrs, console, dom = open_page(page, tmp_path)
    assert console == []
    assert attrs["checked"] == "yes" and attrs["errors"] == "0"
    n_prompts = sum(map(len, PROMPTS.values()))
    # 4 figures + per prompt: pretrained and one grid per run (3 runs)
    assert (attrs["images"], attrs["images-broken"]) == (str(4 + n_prompts * 4), "0"), attrs.get("broken-src")
    assert attrs["tables"] == str(len(PROMPTS))  # one table per split
    assert dom.count("<tr>") == len(PROMPTS) * (1 + 3)  # header + pretrained + two method rows, per split
    for prompt in (p for ps in PROMPTS.values() for p in ps):
        assert f"<h3>{prompt} " in dom


def test_the_check_catches_broken_images_and_script_errors(tmp_path):
    """The page check must be able to fail: a missing image and a script error are both reported."""
    report = write_report(make_runs(tmp_path / "runs"), tmp_path / "out" / "report.html", n_boot=50)
    next((report.parent / "report_files" / "grids").glob("*.png")).unlink()
    text = report.read_text().replace("</body>", "<script>undefinedFunction();</script></body>")
    report.write_text(text)
    attrs, console, _ = open_page(report, tmp_path)
    assert attrs["images-broken"] == "1" and attrs["broken-src"].endswith(".png")
    assert attrs["errors"] == "2"  # the image's load error and the script error
    assert any("undefinedFunction" in line for line in console)
