"""Repository habits: stripped notebooks, parameters cells written from StudyConfig, profiles vs notebook
parameters, pinned dependencies agree."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import papermill
import pytest
import yaml

from tts_utils import parameters_cell
from tts_utils.config import StudyConfig
from tts_utils.paths import NOTEBOOKS_DIR, PARAMS_DIR, REPO_ROOT
from tts_utils.pipeline import CHAIN

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def test_the_chain_is_the_five_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == list(CHAIN)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebooks_are_committed_without_outputs(notebook) -> None:
    cells = json.loads(notebook.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{notebook.name}: cells {dirty} carry outputs (strip them before committing)"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_parameter_is_typed_documented_and_known(notebook) -> None:
    declared = papermill.inspect_notebook(str(notebook))
    known = {f.name for f in fields(StudyConfig)}
    assert declared and set(declared) <= known
    for name, info in declared.items():
        assert info["inferred_type_name"] != "None", f"{notebook.name}: {name} has no type"
        assert info["help"], f"{notebook.name}: {name} has no help comment"
        assert info["default"] == repr_default(getattr(StudyConfig(), name)), f"{notebook.name}: {name} default differs"


def repr_default(value) -> str:
    """How a StudyConfig default looks as a notebook literal."""
    if isinstance(value, tuple):
        return repr(list(value))
    return json.dumps(value) if isinstance(value, str) else repr(value)


@pytest.mark.parametrize("profile", sorted(PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_key_is_a_parameter_of_some_notebook(profile) -> None:
    declared = set().union(*(papermill.inspect_notebook(str(nb)) for nb in NOTEBOOKS))
    keys = set(yaml.safe_load(profile.read_text()))
    assert keys <= declared, f"{profile.name}: {sorted(keys - declared)} are declared by no notebook"


def test_every_study_config_field_has_help_and_notebooks() -> None:
    for f in fields(StudyConfig):
        assert f.metadata.get("help", "").strip(), f"{f.name} has no help text (config.param)"
        assert "\n" not in f.metadata["help"], f"{f.name}: help text must be one line (it is a comment)"
        notebooks = f.metadata.get("notebooks", ())
        assert notebooks and set(notebooks) <= set(CHAIN), f"{f.name}: notebooks {notebooks!r} not in {CHAIN}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_the_one_generated_from_study_config(notebook) -> None:
    expected = parameters_cell.parameters_cell(notebook.stem)
    assert parameters_cell.committed_cell(notebook.stem) == expected, (
        f"{notebook.name}: parameters cell differs from StudyConfig; run python -m tts_utils.parameters_cell")
    wanted = {f.name for f in fields(StudyConfig) if notebook.stem in f.metadata["notebooks"]}
    assert set(papermill.inspect_notebook(str(notebook))) == wanted


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_config_field_a_notebook_reads_is_declared_there(notebook) -> None:
    """A field read in the notebook's own cells but not declared would silently keep its default
    under a profile (pipeline.run_notebook passes only declared keys)."""
    code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    known = {f.name for f in fields(StudyConfig)}
    read = set(re.findall(r"\bconfig\.(\w+)", code)) & known
    assert read <= set(papermill.inspect_notebook(str(notebook))), f"{notebook.name} reads undeclared {read}"


@pytest.mark.parametrize("profile", sorted(PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_notebook_gets_a_valid_config_from_every_profile(profile) -> None:
    """What pipeline.run_notebook passes (the declared keys only) still passes the cross-field
    checks, e.g. latency_problems arrives with batch_concurrency."""
    values = yaml.safe_load(profile.read_text())
    StudyConfig.create(**values)
    for notebook in NOTEBOOKS:
        declared = papermill.inspect_notebook(str(notebook))
        StudyConfig.create(**{key: value for key, value in values.items() if key in declared})


def test_parameters_cell_cli_checks_and_refuses_unknown_notebooks(capsys) -> None:
    assert parameters_cell.main(["--check"]) == 0
    assert parameters_cell.main(["--check", "05_nope"]) == 2
    assert "unknown notebook '05_nope'" in capsys.readouterr().err


def test_environment_yml_mirrors_pyproject_pins() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"([A-Za-z0-9_.\-]+)==([^"]+)"', pyproject))
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda_pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)",
                                 "\n".join(environment["dependencies"][-1]["pip"]), flags=re.M))
    assert pins == conda_pins
