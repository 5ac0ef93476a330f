"""The documentation: docs/parameters.md is the page generated from StudyConfig, the README stays short
and names the two commands, and every relative link in the README, docs/ and reference_results/README.md resolves to a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tts_utils import parameters_doc
from tts_utils.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
REFERENCE_README = REPO_ROOT / "reference_results" / "README.md"
README_MAX_LINES = 220
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", re.DOTALL)


def relative_links(text: str) -> list[str]:
    """Link targets that point into the repository (no scheme, no bare anchor), anchors dropped."""
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_parameters_page_is_the_generated_one() -> None:
    committed = parameters_doc.PARAMETERS_DOC.read_text(encoding="utf-8")
    assert committed == parameters_doc.parameters_markdown(), (
        "docs/parameters.md differs from StudyConfig and params/*.yaml; run python -m tts_utils.parameters_doc")


def test_the_check_flag_reports_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    stale = tmp_path / "parameters.md"
    stale.write_text("# Parameters\n", encoding="utf-8")
    monkeypatch.setattr(parameters_doc, "PARAMETERS_DOC", stale)
    assert parameters_doc.main(["--check"]) == 1
    assert "differs from StudyConfig" in capsys.readouterr().out
    assert stale.read_text(encoding="utf-8") == "# Parameters\n"


def test_readme_is_short_and_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    assert "make test" in text and "make reproduce" in text


@pytest.mark.parametrize("page", [README, *DOCS, REFERENCE_README], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_points_at_a_file(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = [target for target in relative_links(text) if target and not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO_ROOT)} links to missing files: {missing}"


def test_the_link_finder_sees_links_and_images() -> None:
    text = "[a](docs/x.md#part) ![b](fig.png) [c](https://example.org) [d](#anchor) `[e](code.md)`"
    assert relative_links(text) == ["docs/x.md", "fig.png", "code.md"]
