"""The documentation cannot go stale (issue 29).

- docs/commands/ is generated from the configs (`python -m dlkit.docs`): regenerated here into a
  temporary folder, it must equal the committed pages, and every command of the CLI has one;
  the generator imports no TensorFlow.
- Every relative link in README.md and docs/ leads to a file that exists, and an `#anchor` to
  a heading of that file; every docs/ page the code cites exists.
- README.md stays a short first page that holds the two command lines people copy (the second
  is what `.ci/run` runs).
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "commands"
REGENERATE = "python -m dlkit.docs"
README_MAX_LINES = 400
MAIN_JOB = ("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/dlkit train-mnist "
            "--dataset digits --epochs 20")
TEST_SUITE = ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && "
              ".venv/bin/python -m pytest")


def _generate(out: Path) -> list[str]:
    """Run the generator in a fresh interpreter into `out`; the modules it loaded that it must
    not (TensorFlow, Keras)."""
    code = ("import sys\n"
            "from dlkit.docs import main\n"
            f"main(['--out', {str(out)!r}])\n"
            "print('loaded:', *(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return done.stdout.splitlines()[-1].split()[1:]


def test_reference_matches_the_configs(tmp_path: Path) -> None:
    heavy = _generate(tmp_path)
    assert heavy == [], f"the generator imported {heavy}"
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.md")}
    committed = {p.name: p.read_text(encoding="utf-8") for p in REFERENCE.glob("*.md")}
    problems = [f"{name}: missing" for name in sorted(set(fresh) - set(committed))]
    problems += [f"{name}: no command has this page" for name in sorted(set(committed) -
                                                                        set(fresh))]
    for name in sorted(set(fresh) & set(committed)):
        if fresh[name] != committed[name]:
            diff = difflib.unified_diff(committed[name].splitlines(), fresh[name].splitlines(),
                                        f"docs/commands/{name}", "from the configs", lineterm="",
                                        n=0)
            problems.append("\n".join(list(diff)[:12]))
    assert not problems, (f"docs/commands/ differs from the configs; run `{REGENERATE}` and "
                          "commit the pages:\n" + "\n".join(problems))


def test_every_command_has_a_page() -> None:
    import typer

    from dlkit.cli import app

    commands = sorted(typer.main.get_command(app).commands)
    index = (REFERENCE / "index.md").read_text(encoding="utf-8")
    missing = [c for c in commands if not (REFERENCE / f"{c}.md").is_file()]
    unlisted = [c for c in commands if f"]({c}.md)" not in index]
    assert not missing and not unlisted, (f"commands without a page: {missing}, not in the "
                                          f"index: {unlisted}; run `{REGENERATE}`")
    assert len(commands) == 21


def test_generator_check_mode_reports_stale_pages(tmp_path: Path) -> None:
    from dlkit.docs import differences, main

    assert main(["--out", str(tmp_path)]) == 0
    assert differences(tmp_path) == []
    (tmp_path / "train-mnist.md").write_text("# stale\n", encoding="utf-8")
    (tmp_path / "gone.md").write_text("# a command that was removed\n", encoding="utf-8")
    (tmp_path / "export.md").unlink()
    assert differences(tmp_path) == ["export.md: missing", "gone.md: no such command any more",
                                     "train-mnist.md: differs from the configs"]
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert main(["--out", str(tmp_path)]) == 0  # writing removes the stale page
    assert differences(tmp_path) == [] and not (tmp_path / "gone.md").exists()


def test_a_page_shows_what_the_config_defines() -> None:
    """Spot checks of the rendering, on options the old hand-kept README tables lacked."""
    cifar = (REFERENCE / "train-cifar.md").read_text(encoding="utf-8")
    assert ("| `--test-split` | number | `0.2` | > 0 and < 1 | Image folders only: the fraction "
            "held out as the test set. |") in cifar
    assert "| `--epochs`, `-e` | integer | 36 for airbench, else 20 | >= 1 and <= 100000 |" in cifar
    assert "| `--max-minutes` | number | *not set* | > 0 and <= 10000000 |" in cifar
    assert "`--augment`, `--no-augment` | switch |" in cifar
    text = (REFERENCE / "train-text.md").read_text(encoding="utf-8")
    assert ("| `--weight-decay` | number | 0.1 GRU and LSTM (0.01 for the GRU with --max-minutes "
            "under 5), 0.1 transformer, 0.1 with --from-preset | >= 0 and <= 1 | AdamW weight "
            "decay. |") in text
    models = (REFERENCE / "models.md").read_text(encoding="utf-8")
    assert "| `--cached` | switch | off |" in models
    classify = (REFERENCE / "classify-image.md").read_text(encoding="utf-8")
    assert "dlkit classify-image [OPTIONS] PATH..." in classify
    assert "| `--input-size` | 2 integers | *not set* | each >= 1 and <= 4096 |" in classify
    assert "path\\<TAB>label" in classify  # shown, not taken for an HTML tag


# ---------------------------------------------------------------------------------------------
# Links


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors, counts = set(), {}
    for line in re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"),
                       flags=re.S | re.M).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
        count = counts.get(slug, 0)  # a repeated heading gets -1, -2, ...
        counts[slug] = count + 1
        anchors.add(f"{slug}-{count}" if count else slug)
    return anchors


def _links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _without_code(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_lead_somewhere(page: Path) -> None:
    broken = []
    for link in _links(page):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (page.parent / target).resolve() if target else page
        if not file.exists():
            broken.append(f"{link}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{link}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_pages_the_code_cites_exist() -> None:
    """`docs/design.md#exit-codes` in a docstring or an error message is a promise."""
    broken = []
    for source in sorted([*ROOT.glob("dlkit/**/*.py"), *ROOT.glob("tests/*.py"),
                          *ROOT.glob("benchmarks/*.py")]):
        text = source.read_text(encoding="utf-8")
        for page, anchor in re.findall(r"\bdocs/([\w/.-]+\.md)(?:#([\w-]+))?", text):
            if not (DOCS / page).is_file():
                broken.append(f"{source.relative_to(ROOT)}: docs/{page}")
            elif anchor and anchor not in _anchors(DOCS / page):
                broken.append(f"{source.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not broken, "cited pages or sections that do not exist: " + ", ".join(broken)
    stale = [str(s.relative_to(ROOT)) for s in sorted([*ROOT.glob("dlkit/**/*.py"),
                                                        *ROOT.glob("tests/*.py"),
                                                        *ROOT.glob("benchmarks/*.py")])
             if s.name != Path(__file__).name and "DESIGN.md" in s.read_text()]
    assert not stale, f"the repository holds no DESIGN.md; cite docs/design.md in {stale}"


def test_readme_is_a_short_first_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert MAIN_JOB in readme and TEST_SUITE in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == TEST_SUITE, ".ci/run must run exactly the README's test command"
    assert "docs/commands/index.md" in readme and "docs/README.md" in readme


def test_readme_shows_every_command() -> None:
    import typer

    from dlkit.cli import app

    shown = {words[0] for where, words in _example_commands() if where.startswith("README.md")}
    missing = sorted(set(typer.main.get_command(app).commands) - shown)
    assert not missing, f"README.md has no example of {missing}"


# ---------------------------------------------------------------------------------------------
# Examples

_STOP = {"|", ">", ">>", "<", "&&", ";", "||", "2>&1"}


def _example_commands() -> list[tuple[str, list[str]]]:
    """Every `dlkit ...` command line in the shell code blocks of README.md and docs/ (the
    generated pages carry the configs' own examples; their synopses are `text` blocks): (where,
    its words after `dlkit`), cut at the first pipe or redirection."""
    import shlex

    found = []
    for page in _markdown_files():
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"^```(?:console|sh|bash)?\n(.*?)^```", text, flags=re.S | re.M):
            for line in block.splitlines():
                if not re.search(r"(^|[\s/])dlkit\s", line):  # output, other programs
                    continue
                words = shlex.split(line.removeprefix("$ "), comments=True)
                starts = [i for i, w in enumerate(words) if w == "dlkit" or w.endswith("/dlkit")]
                if not starts:
                    continue
                words = words[starts[0] + 1:]
                cut = next((i for i, w in enumerate(words) if w in _STOP or w.startswith(">")),
                           len(words))
                found.append((f"{page.relative_to(ROOT)}: {line.strip()}", words[:cut]))
    return found


def test_every_example_is_a_valid_command_line() -> None:
    """Each example parses and passes its config's checks (`--print-config` stops there): an
    option renamed or removed, a value out of bounds or a missing argument in a README or
    reference example fails here."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    examples = _example_commands()
    assert len(examples) >= 40
    runner = CliRunner()
    bad = []
    for where, words in examples:
        result = runner.invoke(app, [*words, "--print-config"])
        if result.exit_code != 0:
            bad.append(f"{where}\n    exit {result.exit_code}: {result.output.strip()[:300]}")
    assert not bad, "examples that dlkit refuses:\n" + "\n".join(bad)
