"""Run the notebook chain headlessly with papermill and render each executed notebook to HTML.

    python -m tts_utils.pipeline reproduce [--profile smoke|paper|FILE|auto] [--set key=value ...]
    python -m tts_utils.pipeline run 03_spec [--profile ...] [--set model=14b]
    python -m tts_utils.pipeline check params/paper.yaml

Each notebook receives only the profile keys its parameters cell declares; a key no notebook
declares, a bad value or malformed YAML is a one-line error before anything runs. Executed
notebooks and HTML go to ``outputs/reports/<study>/``, with the landing page ``index.html``
(report.py), rewritten after every run. A failing notebook stops the chain, names the failing cell,
and keeps the partial notebook; finished runs stay on disk, so a re-run resumes. ``chain.log`` in
the same folder keeps every invocation (appended, never overwritten): the machine's load, each
notebook's start, end and printed output, and any error with its traceback and the failed runs'
engine log tails, so no failure is silent. ``chain.json`` records the last invocation for the
landing page. Used by the Makefile.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tts_utils.banners import PLUMBING_WARNING, SYSTEM_ONLY_WARNING, random_weights_warning, shout
from tts_utils.cli import default_profile, fail, parse_overrides, resolve_parameters, study_parser
from tts_utils.config import NOTEBOOKS
from tts_utils.engine import vllm_compat
from tts_utils.errors import ChainError, ConfigError
from tts_utils.paths import NOTEBOOKS_DIR, REPO_ROOT, profile_path, reports_dir, study_dir
from tts_utils.progress import strip_ansi
from tts_utils.report.landing import write_landing_page
from tts_utils.report.left_out import read_left_out
from tts_utils.speculation.trace_fetch import TRACE_TOKENIZER_ENV, TRACES_DIR_ENV
from tts_utils.store import atomic_write_json, read_json
from tts_utils.study.preflight import check_inputs, plan_every_run

CHAIN = NOTEBOOKS  # named once, in config.py, where each parameter lists the notebooks that declare it


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    if not path.exists():
        raise ConfigError(f"unknown notebook {name!r}; expected one of {', '.join(CHAIN)}")
    return path


def declared_parameters(name: str) -> dict[str, Any]:
    """The parameters cell of a notebook, as papermill reads it."""
    import papermill

    return papermill.inspect_notebook(str(notebook_path(name)))


# Rendered reports: a wide table or a long line scrolls inside its output instead of running off the page.
REPORT_CSS = """<style>
.jp-OutputArea-output { overflow-x: auto; }
.jp-RenderedText pre, .jp-OutputArea-output pre { white-space: pre-wrap; overflow-wrap: anywhere; }
</style>
"""


def render_html(executed: Path) -> Path:
    """Write ``<notebook>.html`` beside an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    html = executed.with_suffix(".html")
    html.write_text(body.replace("</head>", REPORT_CSS + "</head>", 1), encoding="utf-8")
    return html


class ChainLog:
    """``reports/<study>/chain.log``: what the console shows, with times, plus what it does not
    (tracebacks, notebooks' printed output, engine log tails). Appended to, never overwritten."""

    def __init__(self, study: str) -> None:
        self.path = reports_dir(study) / "chain.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle: IO[str] = open(self.path, "a", encoding="utf-8")
        self.retries: dict[str, str] = {}  # notebook -> why it ran a second time
        self.left_out: dict[str, list[str]] = {}  # notebook -> the files it left out, one line each

    def write(self, message: str, console: IO[str] | None = None) -> None:
        """A timestamped entry in the log; also shown on ``console`` if given."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.handle.write("".join(f"[{stamp}] {line}\n" for line in message.splitlines() or [""]))
        self.handle.flush()
        if console is not None:
            print(message, file=console, flush=True)

    def close(self) -> None:
        self.handle.close()


def machine_state() -> str:
    """Load, cores and free memory: what a failure under load needs to be understood later."""
    try:
        load = "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "load average unknown"
    available = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return f"{load}; {len(os.sched_getaffinity(0))} usable cores; {available} memory available"


def _run_failures(study: str, since: float) -> list[tuple[Path, dict]]:
    """The failure.json records of the study's runs written since ``since``."""
    found = []
    for failure in sorted(study_dir(study).glob("*/failure.json")):
        if failure.stat().st_mtime >= since:
            try:
                found.append((failure, read_json(failure)))
            except Exception as error:  # a broken failure file must not hide the original failure
                found.append((failure, {"error": f"unreadable failure file ({error})"}))
    return found


def _failure_details(failures: list[tuple[Path, dict]]) -> str:
    """The failed runs' errors, tracebacks and engine log tails, for the chain log."""
    parts = []
    for failure, record in failures:
        tail = "\n".join(record.get("engine_log_tail", [])[-40:])
        parts.append(f"run {failure.parent.name} failed: {record.get('type')}: {record.get('error')}\n"
                     f"{record.get('traceback', '')}\nengine log tail ({failure.parent / 'engine.log'}):\n{tail}")
    return "\n".join(parts)


def _start_up_race(error: Exception, output: Path, failures: list[tuple[Path, dict]]) -> str | None:
    """Why a failed notebook may simply run again: a race at start-up, not a fault of the study.

    The kit picks a free port and the engine binds it some 10-30 s later (its imports; longer on a
    loaded machine), so another process can take the port in between; a kernel's start can fail
    the same way. Nothing is lost by a second attempt: finished runs are kept and skipped.
    """
    from papermill.exceptions import PapermillExecutionError

    if any(port_race_message(record.get("error", "")) for _, record in failures):
        return "an engine lost the port the kit chose for it to another process before binding it"
    if not isinstance(error, PapermillExecutionError) and not _cells_ran(output):
        return f"the kernel did not start ({type(error).__name__}: {error})"
    return None


def port_race_message(error: str) -> bool:
    """The engine's start-up failure as ``engine.diagnose`` names a port taken before it bound it."""
    return error.startswith("port already in use (engine exit code")


def _cells_ran(output: Path) -> bool:
    import nbformat

    try:
        notebook = nbformat.read(output, as_version=4)
    except Exception:  # no notebook written: nothing ran
        return False
    return any(cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")


@contextmanager
def _stderr_into(log: ChainLog) -> Iterator[None]:
    """Send file descriptor 2 to the chain log: the kernel inherits it, so a kernel that dies (or
    warns) leaves its words in the log instead of scrolling away on the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log.handle.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_notebook(name: str, values: dict[str, Any], study: str, log: ChainLog | None = None) -> Path:
    """Execute one notebook with the parameters it declares; return its HTML report.

    Any failure (a cell's error, a kernel that dies or never starts) becomes a ``ChainError``;
    the partial notebook is kept and rendered, and ``log`` gets the whole story. A failure that is
    a start-up race (``_start_up_race``) runs the notebook once more, said in the log and on the
    console, and recorded in ``log.retries``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    log = log or ChainLog(study)
    declared = declared_parameters(name)
    parameters = {key: value for key, value in values.items() if key in declared}
    output = reports_dir(study) / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.write(f"== {name}: running with {parameters}", sys.stdout)
    # Links in the notebook's tables resolve from where its rendered report lives (notebook.report_link).
    os.environ["TTS_REPORT_DIR"] = str(output.parent)
    # Kernels start in notebooks/: they import this very kit (a checkout that was never installed,
    # or one beside another installed copy) only with its root first on their path.
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != str(REPO_ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *entries])
    for attempt in (1, 2):
        log.write(f"   attempt {attempt}; {machine_state()}")
        attempt_started = time.time()
        try:
            with _stderr_into(log):
                papermill.execute_notebook(str(notebook_path(name)), str(output), parameters=parameters,
                                           cwd=str(NOTEBOOKS_DIR), progress_bar=False, kernel_name="python3",
                                           stdout_file=log.handle, stderr_file=log.handle)
            break
        except KeyboardInterrupt:
            log.write(f"!! {name} interrupted after {time.monotonic() - started:.0f} s")
            raise
        except Exception as error:
            if isinstance(error, PapermillExecutionError):
                summary = f"{name} failed in cell {error.exec_count} ({error.ename}: {error.evalue})"
                details = strip_ansi("\n".join(error.traceback))
            else:  # the kernel died, did not start in time, or papermill itself failed
                first_line = str(error).splitlines()[0] if str(error) else ""
                summary = f"{name} failed outside its cells ({type(error).__name__}: {first_line})"
                details = traceback.format_exc()
            failures = _run_failures(study, attempt_started)
            log.write(f"!! {summary} after {time.monotonic() - started:.0f} s\n{details}\n{_failure_details(failures)}")
            log.write(f"   {machine_state()}")
            race = _start_up_race(error, output, failures) if attempt == 1 else None
            if race:
                log.retries[name] = race
                log.write(f"!! {name}: {race}; running it once more (finished runs are kept)", sys.stdout)
                continue
            if output.exists():
                try:
                    render_html(output)
                except Exception as render_error:  # the error above matters more than a failed rendering
                    log.write(f"!! could not render {output}: {render_error}")
            kept = f"partial notebook kept at {output}" if output.exists() else "no notebook was written"
            raise ChainError(f"{summary}; {kept}") from None
    html = render_html(output)
    left_out = analysis_left_out(study) if name == "04_analysis" else []
    if left_out:
        log.left_out[name] = left_out
    said = f", {len(left_out)} file(s) left out" if left_out else ""
    log.write(f"== {name}: done in {time.monotonic() - started:.0f} s{said} -> {html}", sys.stdout)
    if left_out:
        log.write("\n".join(f"!! {line}" for line in left_out), sys.stdout)
    return html


def analysis_left_out(study: str) -> list[str]:
    """What 04_analysis left out (its left_out.json), one line each: for chain.log and the console,
    so that a chain that ends ``ok`` still names every file its verdicts were decided without."""
    entries, problem = read_left_out(study)
    if problem:
        return [f"04_analysis's list of left-out files fails its check: {problem}"]
    return [f"left out by 04_analysis: {entry.line()}" for entry in entries]


def _record_chain(study: str, record: dict) -> None:
    """``chain.json``: the last invocation, read by the landing page (profile, outcome)."""
    path = reports_dir(study) / "chain.json"
    previous = read_json(path) if path.exists() else {}
    notebooks = {**previous.get("notebooks", {}), **record.pop("notebooks", {})} if record.get("command") == "run" \
        else record.pop("notebooks", {})
    atomic_write_json(path, {**record, "notebooks": notebooks})


def _landing_page(study: str, log: ChainLog) -> Path | None:
    """Rewrite the study's index.html; a failure here is logged, never hides the chain's outcome."""

    try:
        return write_landing_page(study)
    except Exception:
        log.write(f"!! could not write the landing page:\n{traceback.format_exc()}", sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = study_parser("python -m tts_utils.pipeline", __doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["reproduce", "run", "check"])
    parser.add_argument("target", nargs="?", help="notebook name for 'run', profile for 'check'")
    args = parser.parse_args(argv)
    # Kernels run in notebooks/: a relative folder in these variables means the caller's folder.
    for name in ("TTS_OUTPUTS_DIR", "TTS_CACHE_DIR", TRACES_DIR_ENV, TRACE_TOKENIZER_ENV):
        if os.environ.get(name) and (name.endswith("_DIR") or Path(os.environ[name]).exists()):
            os.environ[name] = str(Path(os.environ[name]).resolve())
    try:
        if args.command == "check":
            profile = args.target or args.profile
            values, config = resolve_parameters(profile, parse_overrides(args.overrides))
            compat = vllm_compat.require(config)
            notes = check_inputs(config)
            for note in notes:
                print(f"!! {note}")
            for line in plan_every_run(config):
                print(f"   {line}")
            print(f"{profile_path(profile)}: ok ({len(values)} keys, study {config.study!r}"
                  f"{f', {len(config.trace_sets)} trace sets checked' if config.trace_sets else ''}; {compat.label})")
            return 0
        values, config = resolve_parameters(args.profile, parse_overrides(args.overrides))
        names = CHAIN if args.command == "reproduce" else (args.target,)
        if args.command == "run" and not args.target:
            raise ConfigError(f"'run' needs a notebook name: {', '.join(CHAIN)}")
        for name in names:
            notebook_path(name)
        if any(name != "04_analysis" for name in names):  # 04 reads files only
            vllm_compat.require(config)
        # Inputs that 03 would meet hours later (trace sets, their tokenizer, the dataset) are
        # checked now, and every run of 01-03 is planned, so that what they would refuse is refused
        # before 00 starts.
        if any(name != "04_analysis" for name in names):  # 04 reads files only: it needs none of them
            for note in check_inputs(config):
                print(f"!! {note}")
            plan_every_run(config)
    except ConfigError as error:
        return fail(error)
    profile = default_profile() if args.profile == "auto" else args.profile
    log = ChainLog(config.study)
    command = " ".join(["python -m tts_utils.pipeline", *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    log.write(f"\n#### {command}\n   profile {profile} ({profile_path(profile)}); {machine_state()}")
    record: dict[str, Any] = {"command": args.command, "invocation": command, "profile": profile,
                              "parameters": values, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "notebooks": {}}
    warning = PLUMBING_WARNING if "tiny" in config.model_keys else SYSTEM_ONLY_WARNING if config.system_only \
        else random_weights_warning(config)
    if warning:
        print(f"\n{shout(warning)}\n", flush=True)
    outcome, code = "ok", 0
    try:
        for name in names:
            started = time.monotonic()
            outcome_of = "failed"
            try:
                run_notebook(name, values, config.study, log)
                outcome_of = "ok"
            finally:
                record["notebooks"][name] = {"outcome": outcome_of, "seconds": round(time.monotonic() - started, 1),
                                             **({"retried": log.retries[name]} if name in log.retries else {}),
                                             **({"left_out": log.left_out[name]} if name in log.left_out else {})}
    except ChainError as error:
        outcome, code = f"failed: {error}", 1
        log.write(f"error: {error}\nchain log: {log.path}", sys.stderr)
    except KeyboardInterrupt:
        outcome, code = "interrupted", 130
        log.write(f"interrupted; chain log: {log.path}", sys.stderr)
    except Exception as error:  # a fault of the pipeline itself: logged and reported like the others
        outcome, code = f"failed: {type(error).__name__}: {error}", 1
        log.write(f"error: the pipeline failed:\n{traceback.format_exc()}chain log: {log.path}", sys.stderr)
    finally:
        _record_chain(config.study, {**record, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                     "outcome": outcome})
        index = _landing_page(config.study, log)
        left_out = sum(len(lines) for lines in log.left_out.values())
        log.write(f"#### {outcome}" + (f" ({left_out} file(s) left out of the analysis: named above and on the "
                                       "landing page)" if left_out else ""))
        log.close()
    if code == 0 and args.command == "reproduce":
        print(f"\nReport: {index}")
    return code


if __name__ == "__main__":
    sys.exit(main())
