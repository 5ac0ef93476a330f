"""Repository habits: stripped notebooks, profiles vs notebook parameters, pinned dependencies agree."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import papermill
import pytest
import yaml

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


def test_environment_yml_mirrors_pyproject_pins() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"([A-Za-z0-9_.\-]+)==([^"]+)"', pyproject))
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda_pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)",
                                 "\n".join(environment["dependencies"][-1]["pip"]), flags=re.M))
    assert pins == conda_pins
