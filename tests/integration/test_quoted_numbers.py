"""Every interval a committed study's REPORT.md or FINDINGS.md quotes is one that `bench table` rebuilds from the
committed run summaries: the prose cannot drift from the data (an estimator change, a re-run cell) unnoticed.

A quoted interval is ``mean [low, high]``. A document's rebuilding commands are the ``bench table ...`` commands it
quotes in backticks with a results/ path (its globs expanded here; one whose path matches nothing is a template
and adds nothing, so a number only it could rebuild fails the test), and those listed one per line in an HTML comment
``<!-- rebuilt by: ... -->`` for the commands its text names with placeholders. A quoted interval must be among the
intervals printed by the commands of its own study folder or of a study folder it names (``results/<study>/``), or
in that folder's committed tables/ (which test_paper.py rebuilds byte for byte). Text after ``<!-- history -->``, up
to the next heading of its level or above, is exempt: measurements of runs that are not committed (an earlier
oracle, screening runs), kept to explain a choice."""

from __future__ import annotations

import glob
import re
from functools import cache
from pathlib import Path

from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
NUM = r"[+-]?\d+\.\d+"
INTERVAL = re.compile(rf"({NUM}) \[({NUM}), ({NUM})\]")
COMMAND = re.compile(r"`(bench table\b[^`]*)`")
LISTED = re.compile(r"<!-- rebuilt by:(.*?)-->", re.S)
STUDY = re.compile(r"results/([A-Za-z0-9_.-]+)/")


def intervals(text: str) -> set[tuple[float, float, float]]:
    """Each ``mean [low, high]`` in ``text``, rounded to the 3 decimals the tables print (a sign is formatting)."""
    return {tuple(round(float(x), 3) + 0.0 for x in m.groups()) for m in INTERVAL.finditer(text)}


def without_history(text: str) -> str:
    """``text`` less each span from a ``<!-- history -->`` marker to the next heading of its section's level or
    above."""
    kept, skip_level = [], None
    level = 0
    for line in text.splitlines():
        heading = re.match(r"(#+) ", line)
        if heading and skip_level is not None and len(heading.group(1)) <= skip_level:
            skip_level = None
        if heading:
            level = len(heading.group(1))
        if "<!-- history -->" in line:
            skip_level = level
        if skip_level is None:
            kept.append(line)
    return "\n".join(kept)


def commands(text: str) -> list[str]:
    quoted = [" ".join(c.split()) for c in COMMAND.findall(text)]
    listed = [line.strip() for block in LISTED.findall(text) for line in block.splitlines() if line.strip()]
    return [c for c in quoted + listed if "results/" in c]


def docs(study: Path) -> list[Path]:
    return [p for p in (study / "REPORT.md", study / "FINDINGS.md") if p.exists()]


def test_history_spans_and_intervals_are_read_as_documented():
    text = (
        "# A\n1.000 [0.900, 1.100]\n## B\n<!-- history -->\n+0.500 [+0.4, 0.600]\n### C\n-0.000 [-0.1, 0.1]\n"
        "## D\n2.0 [1.0, 3.0]"
    )
    kept = without_history(text)
    assert intervals(kept) == {(1.0, 0.9, 1.1), (2.0, 1.0, 3.0)}
    assert intervals("+0.000 [-0.010, +0.010] and -0.000 [-0.010, 0.010]") == {(0.0, -0.01, 0.01)}
    quoted = (
        "`bench table --change\n  results/x/*/*` and `bench table --change` "
        "<!-- rebuilt by:\nbench table results/y/\n-->"
    )
    assert commands(quoted) == ["bench table --change results/x/*/*", "bench table results/y/"]


def test_every_interval_the_study_reports_quote_is_rebuilt_by_bench_table(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    @cache
    def printed(command: str) -> frozenset:
        words = command.split()[2:]
        if any(w.startswith("results/") and not glob.glob(w) for w in words):
            return frozenset()  # a template (results/paper/table1/*prompt-P_*/): what it stands for is listed
        args = [a for word in words for a in (sorted(glob.glob(word)) or [word])]
        code, out, err = run_cli(capsys, ["table", *args])
        assert code == 0, f"{command}: {err[-2000:]}"
        return frozenset(intervals(out))

    @cache
    def rebuilt(study: str) -> frozenset:
        folder = ROOT / "results" / study
        found = set()
        for doc in docs(folder):
            for command in commands(doc.read_text()):
                found |= printed(command)
        for table in sorted((folder / "tables").glob("*.md")):
            found |= intervals(table.read_text())
        return frozenset(found)

    studies = sorted(p.parent for p in ROOT.glob("results/*/*.md") if p.name in ("REPORT.md", "FINDINGS.md"))
    assert {s.name for s in studies} >= {"paper", "paper-model2", "shapes-demo", "shapes-overopt"}
    checked = 0
    for study in sorted(set(studies)):
        for doc in docs(study):
            text = without_history(doc.read_text())
            quoted = intervals(text)
            allowed = set(rebuilt(study.name))
            for other in set(STUDY.findall(text)) - {study.name}:
                if (ROOT / "results" / other).is_dir():
                    allowed |= rebuilt(other)
            missing = sorted(quoted - allowed)
            assert not missing, f"{doc.relative_to(ROOT)} quotes intervals no command of its own rebuilds: {missing}"
            checked += len(quoted)
    assert checked > 300  # the reports hold that many; a parser that finds none would pass vacuously
