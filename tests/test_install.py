"""`make setup` (ENGINE=cpu or gpu): pip's configuration handed to uv, and what is removed afterwards.

The install itself runs in every CI job (a fresh clone's `make test` starts with it); these tests
check the translation that decides where uv looks for packages, and the removal step on a real venv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tts_utils.engine.install import ALWAYS_REMOVED, _remove, uv_arguments

# `pip config list` on this workplace's machines: files and PIP_* variables, pip's own quoting.
PIP_CONFIG = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/other'
"""


def test_pip_configuration_becomes_uv_flags_and_environment() -> None:
    flags, env = uv_arguments(PIP_CONFIG)
    assert flags == ["--extra-index-url", "file:///opt/pypi/simple", "--extra-index-url", "file:///opt/pypi-more/simple",
                     "--find-links", "/opt/wheels",  # the PIP_FIND_LINKS variable wins over the file, as in pip
                     "--constraint", "/etc/xdg/pip/constraints.txt"]
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "UV_HTTP_TIMEOUT": "180"}


def test_index_url_no_index_and_trusted_hosts_are_kept_and_noise_ignored() -> None:
    flags, env = uv_arguments("user.index-url='https://mirror.example/simple'\nglobal.no-index='true'\n"
                              "global.trusted-host='mirror.example other.example'\nnot a config line\n"
                              "install.progress-bar='off'\n")
    assert flags == ["--index-url", "https://mirror.example/simple", "--allow-insecure-host", "mirror.example",
                     "--allow-insecure-host", "other.example", "--no-index"]
    assert env == {}
    assert uv_arguments("") == ([], {})


def test_removal_uninstalls_only_what_is_there(tmp_path: Path) -> None:
    """A venv with a stand-in rfc3987-syntax distribution: removed; torchvision (absent): not asked for."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    info = site / "rfc3987_syntax-1.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rfc3987-syntax\nVersion: 1.1.0\n")
    script = tmp_path / "uninstall.py"  # checks the names asked for, then removes the dist-info as pip would
    script.write_text("import shutil, sys\nassert sys.argv[2:] == ['rfc3987-syntax'], sys.argv\nshutil.rmtree(sys.argv[1])\n")
    _remove(python, "cpu", [sys.executable, str(script), str(info)])
    assert not info.exists() and ALWAYS_REMOVED == ("rfc3987-syntax",)
    # nothing of the list left: no uninstaller runs (this one would fail the call)
    _remove(python, "cpu", [sys.executable, "-c", "import sys; sys.exit('nothing should be uninstalled')"])


def test_pip_installs_when_uv_cannot_be_had_and_uv_otherwise(tmp_path: Path, monkeypatch, capsys) -> None:
    """The installers' order, with the commands recorded instead of run: uv first; pip (with the same
    index flags) when uv cannot be installed or fails, and the reason in one line."""
    from types import SimpleNamespace

    from tts_utils.engine import install

    calls: list[list[str]] = []

    def fake(uv_installs: bool, uv_resolves: bool):
        def run(argv, env=None):
            calls.append(argv)
            failed = (argv[-1] == install.UV and not uv_installs) or (argv[1:3] == ["pip", "install"] and not uv_resolves)
            return SimpleNamespace(returncode=1 if failed else 0, stdout="", stderr="no such thing\n" if failed else "")
        return run

    monkeypatch.setattr(install.subprocess, "run", lambda argv, check=False: calls.append(argv) or SimpleNamespace(returncode=0))
    monkeypatch.setattr(install, "_remove", lambda *args: None)
    for uv_installs, uv_resolves, installer in ((True, True, "uv"), (False, True, "pip"), (True, False, "pip")):
        calls.clear()
        monkeypatch.setattr(install, "_run", fake(uv_installs, uv_resolves))
        assert install.install(tmp_path, "/repo[cpu,dev]", ["--extra-index-url", "https://x/cpu"], "cpu") == 0
        last = calls[-1]
        assert last[-2:] == ["-e", "/repo[cpu,dev]"] and "https://x/cpu" in last
        assert (last[1:3] == ["pip", "install"]) == (installer == "uv"), last  # uv pip install / python -m pip install
        said = capsys.readouterr().err
        assert (said == "") == (installer == "uv") and len(said.strip().splitlines()) <= 1
        assert "no such thing" in said or installer == "uv"
