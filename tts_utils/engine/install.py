"""Install the kit and its engine into a new venv: uv where it can be had, pip otherwise.

``make setup`` (ENGINE=cpu or gpu) runs this with the venv's Python. uv resolves and installs the
same pinned set as pip (same versions, bytecode compiled as pip compiles it) in 38 s instead of
120-135 s on a 2-core machine; vLLM's own install guide uses it. uv reads no pip configuration, so
the index, wheel folders, constraints and certificate that ``pip config list`` shows (files and
PIP_* variables) are handed to it, with pip's rule of taking the best version across all indexes.
When uv cannot be installed or fails, pip does the install as before and says why in one line.

Afterwards it removes what would slow or break the kit: the CUDA torchvision/torchaudio/torchcodec
that the CPU build pulls (they break model imports beside CPU torch), and ``rfc3987-syntax``, which
jupyter-events' format extra pulls into jsonschema: it builds an Earley grammar at import, 2 s in every
process that imports jsonschema or Ray (each engine's API server and EngineCore, papermill). Nothing
in the kit validates IRI formats. Tiny model, 2 cores: engine start 28.8-31.9 s with it, 20.7-24.3 without.

Standard library and the kit's stdlib-only modules: it runs before any of the kit's dependencies exist.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tts_utils.engine.existing_env import last_line
from tts_utils.paths import REPO_ROOT

UV = "uv==0.13.10"
CPU_ONLY_REMOVED = ("torchvision", "torchaudio", "torchcodec")
ALWAYS_REMOVED = ("rfc3987-syntax",)
# pip option -> uv pip option (each value of a whitespace-separated list gets its own flag).
_OPTIONS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
            "constraint": "--constraint", "trusted-host": "--allow-insecure-host"}


def uv_arguments(pip_config: str) -> tuple[list[str], dict[str, str]]:
    """Flags and environment for ``uv pip install`` from ``pip config list`` output.

    Lines look like ``global.find-links='/opt/wheels'`` or ``:env:.extra-index-url='a b'``; a PIP_*
    variable (``:env:``) overrides the files, as in pip.
    """
    values: dict[str, tuple[bool, str]] = {}
    for line in pip_config.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        scope, _, option = key.rpartition(".")
        value = raw.strip().strip("'\"")
        from_env = scope.startswith(":env:")
        if option not in values or from_env or not values[option][0]:
            values[option] = (from_env, value)
    flags: list[str] = []
    for option, flag in _OPTIONS.items():
        for value in values.get(option, (False, ""))[1].split():
            flags += [flag, value]
    if values.get("no-index", (False, ""))[1].lower() in ("1", "true", "yes", "on"):
        flags.append("--no-index")
    env: dict[str, str] = {}
    if values.get("cert", (False, ""))[1]:
        env["SSL_CERT_FILE"] = values["cert"][1]
    timeout = values.get("default-timeout", values.get("timeout", (False, "")))[1]
    if timeout:
        env["UV_HTTP_TIMEOUT"] = timeout
    return flags, env


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, text=True, capture_output=True, check=False, env={**os.environ, **(env or {})})


def install(venv: Path, target: str, index_args: list[str], engine: str) -> int:
    """Install ``target`` (``-e REPO[cpu,dev]``) into ``venv``; the exit status of the installer that ran."""
    python = str(venv / "bin" / "python")
    uv = venv / "bin" / "uv"
    got_uv = _run([python, "-m", "pip", "install", "-q", UV])
    if got_uv.returncode == 0:
        flags, env = uv_arguments(_run([python, "-m", "pip", "config", "list"]).stdout)
        argv = [str(uv), "pip", "install", "-q", "--python", python, "--compile-bytecode",
                "--index-strategy", "unsafe-best-match", *flags, *index_args, "-e", target]
        done = _run(argv, env)
        if done.returncode == 0:
            _remove(python, engine, [str(uv), "pip", "uninstall", "-q", "--python", python])
            return 0
        print(f"uv could not install the kit ({last_line(done)}); installing with pip", file=sys.stderr)
    else:
        print(f"uv could not be installed ({last_line(got_uv)}); installing with pip", file=sys.stderr)
    done = subprocess.run([python, "-m", "pip", "install", "-q", *index_args, "-e", target], check=False)
    if done.returncode == 0:
        _remove(python, engine, [python, "-m", "pip", "uninstall", "-q", "-y"])
    return done.returncode


def _remove(python: str, engine: str, uninstall: list[str]) -> None:
    """Uninstall what the module docstring names, those of it that are installed."""
    names = ALWAYS_REMOVED + (CPU_ONLY_REMOVED if engine == "cpu" else ())
    present = _run([python, "-c", "import importlib.metadata as m, sys\n"
                    "for n in sys.argv[1:]:\n"
                    "    try: m.version(n); print(n)\n"
                    "    except m.PackageNotFoundError: pass", *names]).stdout.split()
    if present:
        subprocess.run([*uninstall, *present], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tts_utils.engine.install", description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, required=True, help="the venv to install into (made by python -m venv)")
    parser.add_argument("--engine", choices=("cpu", "gpu"), required=True)
    parser.add_argument("--extras", default="dev", help="extras beside the engine's (default dev)")
    parser.add_argument("--index-args", default="", help="more index flags, such as the CPU torch index")
    args = parser.parse_args(argv)
    extras = ",".join([args.engine, *filter(None, args.extras.split(","))])
    return install(args.venv, f"{REPO_ROOT}[{extras}]", shlex.split(args.index_args), args.engine)


if __name__ == "__main__":
    raise SystemExit(main())
