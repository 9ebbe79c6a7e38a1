"""The README says what the code does: its configuration table, category cut-offs and ports.

A lab configures the platform from the README, not from the source: a variable the code reads
but the table does not list is a setting nobody can find, and a number or a port that drifted
from the code sends people to the wrong place. These tests read both sides, so the README
cannot silently fall behind a change to the code (or the other way round).
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where the code that runs lives (tests and benchmarks set variables; they do not configure anything).
CODE_FOLDERS = ("tracseq_dagster", "assets", "resources", "bentos")
NAME = re.compile(r"TRACSEQ_[A-Z0-9_]+")


def variables_read_by_code() -> dict[str, set[str]]:
    """Every ``TRACSEQ_*`` name the code reads, with the files that read it.

    A name is read when it is a whole string literal of Python code (``os.getenv("TRACSEQ_X")``,
    ``settings.env_int("TRACSEQ_X", ...)``, ``os.environ["TRACSEQ_X"]``, a tuple of names handed
    to a check, ...) or a ``${TRACSEQ_X}`` substitution in a YAML file the code loads (Feast's
    ``feature_store.yaml``). Mentions inside docstrings, comments, help texts and f-strings are
    not reads and are not collected.
    """
    found: dict[str, set[str]] = {}
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                    found.setdefault(node.value, set()).add(str(path.relative_to(ROOT)))
        for path in sorted((ROOT / folder).rglob("*.y*ml")):
            for name in re.findall(r"\$\{(TRACSEQ_[A-Z0-9_]+)\}", path.read_text(encoding="utf-8")):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def readme_section(title: str) -> str:
    """The text of the README's ``## title`` section, up to the next ``## `` heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def configuration_table_names() -> set[str]:
    """The variables named in the first column of the README's configuration table."""
    names: set[str] = set()
    for line in readme_section("Configuration").splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`(TRACSEQ_[A-Z0-9_]+)`", first_cell))
    return names


def test_the_collector_finds_reads_of_every_kind():
    """The scan itself: a getenv in settings, a settings helper, a Bento service, a YAML substitution."""
    found = variables_read_by_code()
    assert "tracseq_dagster/settings.py" in found["TRACSEQ_REDIS_PREFIX"]  # os.getenv("TRACSEQ_REDIS_PREFIX", ...)
    assert "tracseq_dagster/settings.py" in found["TRACSEQ_CHUNK_ROWS"]  # env_int("TRACSEQ_CHUNK_ROWS", ...)
    assert "bentos/predictions/service.py" in found["TRACSEQ_ATTRIBUTION"]
    assert "tracseq_dagster/feature_repo/feature_store.yaml" in found["TRACSEQ_FEAST_REDIS"]
    assert all(NAME.fullmatch(name) for name in found)
    assert len(found) >= 40


def test_every_variable_the_code_reads_is_in_the_configuration_table():
    documented = configuration_table_names()
    assert len(documented) >= 30, "the README's configuration table was not found or not parsed"
    missing = {name: sorted(files) for name, files in variables_read_by_code().items() if name not in documented}
    assert not missing, "variables the code reads but README.md's ## Configuration table does not list:\n" + "\n".join(
        f"  {name} (read in {', '.join(files)})" for name, files in sorted(missing.items())
    )


def test_the_category_cut_offs_in_the_readme_are_the_codes():
    """README: "**Categories**: `high` P(pass) ≥ 0.70, `medium` 0.40–0.70, `low` < 0.40"."""
    from tracseq_dagster.models.spec import ServingSpec

    categories = ServingSpec().categories
    lines = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("**Categories**")]
    assert len(lines) == 1, f"README.md should state the category cut-offs once, in a '**Categories**' line; found {lines}"
    sentence = lines[0]
    assert re.findall(r"`(\w+)`", sentence) == [name for name, _ in categories]
    stated = {round(float(number), 6) for number in re.findall(r"\d+\.\d+", sentence)}
    assert stated == {round(threshold, 6) for _, threshold in categories if threshold > 0}, (sentence, categories)
    for name, threshold in categories:
        if threshold > 0:  # the bottom category has no lower bound to state
            assert re.search(rf"`{name}`[^`]*?{threshold:.2f}", sentence), (
                f"{name} ≥ {threshold:.2f} is not what README says: {sentence}"
            )


def _make_ui_port() -> int:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^ui:.*?\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert recipe, "the Makefile has no ui target"
    port = re.search(r"dagster dev\b.*?(?:-p|--port)[ =](\d+)", recipe.group(1))
    return int(port.group(1)) if port else 3000  # dagster dev's own default


def _bento_serve_port() -> int:
    from tracseq_dagster.cli import bento_serve_command

    return int(inspect.signature(bento_serve_command).parameters["port"].default)


def test_make_ui_and_bento_serve_do_not_share_a_default_port():
    assert _make_ui_port() != _bento_serve_port(), "make ui and tracseq bento serve would both listen on the same port"


def test_the_readme_names_the_ports_the_code_uses():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    serve = re.search(r"`tracseq bento serve` then answers on http://127\.0\.0\.1:(\d+)", text)
    assert serve, "README.md no longer says where `tracseq bento serve` answers"
    assert int(serve.group(1)) == _bento_serve_port()
    ui = re.search(
        r"`dagster dev` on `workspace\.yaml` at http://127\.0\.0\.1:(\d+)", readme_section("The Dagster UI (`make ui`)")
    )
    assert ui, "README.md no longer says where `make ui` answers"
    assert int(ui.group(1)) == _make_ui_port()
