"""What 04_analysis left out, and why; and the checks on the files it writes for others to read.

Left out: runs of this study that are unfinished or fail their checksums (``store.load_study``),
runs whose step costs could not price real traces (``modelled.priced_runs``: this study's or
imported by ``tp_import``), replays that fail their checksums, and break-even sweeps with a damaged
``points.jsonl``. 04 prints each with ``!!``, writes them to ``left_out.json`` and notes in
claims.csv's evidence each verdict that lost one; the pipeline names them in chain.log and the
landing page in a banner. 04's files that others read (claims.csv, table.csv, configurations.csv,
pick.csv, left_out.json) are written with ``store.write_sealed`` and verified where read
(``analysis_file_problem``). Used by 04_analysis, report/landing.py, report/pick.py and pipeline.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tts_utils.errors import CorruptResultError
from tts_utils.paths import acceptance_dir, figures_dir, outputs_dir
from tts_utils.report.claims import REGISTRY
from tts_utils.store import StudyResults, read_json, read_records, sealed_problem, write_sealed

LEFT_OUT_FILE = "left_out.json"
# 04_analysis's files that the landing page and the pick read, each sealed when 04 writes it.
SEALED_FILES = ("claims.csv", "table.csv", "configurations.csv", "pick.csv", LEFT_OUT_FILE)
ANALYSIS_REPAIR = "re-running 04_analysis (make analysis, or python -m tts_utils.pipeline run 04_analysis) writes it again"
# What a left-out file was, as its line names it.
RUN, PRICING, IMPORTED, REPLAY, SWEEP = "run", "step costs of run", "imported run", "replay", "break-even sweep"

EVERY_CLAIM = tuple(entry.key for entry in REGISTRY)
TP_CLAIMS = ("tp_diminishing", "small_model_slower_with_tp", "compute_not_system_optimal")
# Modelled rows (real traces priced by step costs) can decide every claim but accuracy's.
MODELLED_CLAIMS = ("speculation_faster", *TP_CLAIMS)


@dataclass(frozen=True)
class LeftOut:
    """One file or folder 04_analysis did not read, why, and the claims whose evidence it was."""

    path: str
    reason: str
    what: str
    model: str = ""
    claims: tuple[str, ...] = ()

    def line(self) -> str:
        """``<what> <path> (<model>): <reason>``, paths relative to the outputs folder."""
        model = f" ({self.model})" if self.model else ""
        return f"{self.what} {short(self.path)}{model}: {short(self.reason)}"


def short(text: str) -> str:
    """``text`` with the outputs folder left out of its paths (claims.csv reads the same on any machine)."""
    return str(text).replace(f"{outputs_dir()}/", "")


def run_claims(identity: dict) -> tuple[str, ...]:
    """The claims a run's rows can decide: greedy at TP 1 all of them, at larger TP the TP claims and
    the pick, a speculative run the speculation claim and the pick; an unknown run all."""
    method, tp = str(identity.get("method", "")), int(identity.get("tensor_parallel_size", 1) or 1)
    if method == "baseline":
        return EVERY_CLAIM if tp == 1 else TP_CLAIMS
    if "spec" in method:
        return ("speculation_faster", "compute_not_system_optimal")
    return EVERY_CLAIM


def run_identity(folder: Path) -> dict:
    """A run folder's identity from its run.json; empty when that cannot be read either."""
    try:
        return read_json(Path(folder) / "run.json").get("identity", {})
    except (CorruptResultError, AttributeError):
        return {}


def left_out_run(folder: Path, reason: str, what: str = RUN) -> LeftOut:
    """A run left out, with the claims it could have decided (``what``: of this study, its step
    costs only, or imported)."""
    identity = run_identity(folder)
    claims = run_claims(identity)
    if what == PRICING:
        claims = tuple(key for key in claims if key in MODELLED_CLAIMS)
    elif what == IMPORTED:
        claims = tuple(key for key in claims if key in TP_CLAIMS)
    return LeftOut(str(folder), reason, what, str(identity.get("model", "")), claims)


def damaged_sweeps(study: str) -> list[LeftOut]:
    """Break-even sweeps whose points fail their checksums (``acceptance_sweep.curves`` skips them)."""
    found = []
    for points in sorted(acceptance_dir(study).glob("*/points.jsonl")):
        try:
            read_records(points)
        except CorruptResultError as error:
            found.append(LeftOut(str(points.parent), str(error), SWEEP))
    return found


def study_left_out(study: str, results: StudyResults, modelled_left_out: list[LeftOut] = ()) -> list[LeftOut]:
    """Everything 04_analysis left out of a study, once each (a run left out whole is not listed
    again for its step costs): ``results.excluded``, then the modelled rows' (``Modelled.left_out``),
    then damaged break-even sweeps."""
    entries = [left_out_run(Path(path), reason) for path, reason in results.excluded]
    entries += [*modelled_left_out, *damaged_sweeps(study)]
    seen, unique = set(), []
    for entry in entries:
        if entry.path not in seen:
            seen.add(entry.path)
            unique.append(entry)
    return unique


def with_lost_evidence(claims, left_out: list[LeftOut]):
    """claims.csv's frame with each verdict's evidence opened by what it lost, where it lost any."""
    claims = claims.copy()
    for index, key in claims["key"].items():
        lost = [entry for entry in left_out if key in entry.claims]
        if lost:
            note = "; ".join(entry.line().split("; ")[0] for entry in lost)
            claims.loc[index, "evidence"] = (f"[evidence left out ({len(lost)}, see {LEFT_OUT_FILE}): {note}] "
                                             f"{claims.loc[index, 'evidence']}")
    return claims


def write_left_out(folder: Path, left_out: list[LeftOut]) -> None:
    """04_analysis: each left-out file printed with ``!!`` and written, sealed, to ``left_out.json``."""
    for entry in left_out:
        affected = f" [verdicts: {', '.join(entry.claims)}]" if entry.claims else ""
        print(f"!! left out: {entry.line()}{affected}")
    records = [{**asdict(entry), "path": short(entry.path), "reason": short(entry.reason)} for entry in left_out]
    write_sealed(folder / LEFT_OUT_FILE, json.dumps({"left_out": records}, indent=2) + "\n")


def analysis_file_problem(study: str, name: str) -> str:
    """Why one of 04_analysis's sealed files cannot be trusted ("" when it matches its checksum)."""
    return sealed_problem(figures_dir(study) / name, ANALYSIS_REPAIR)


def read_left_out(study: str) -> tuple[list[LeftOut], str]:
    """The entries of 04's ``left_out.json`` and, where it cannot be trusted, why (no entries then).
    No file at all (04 has not run, or ran before it wrote one): nothing, and no problem."""
    if not (figures_dir(study) / LEFT_OUT_FILE).exists():
        return [], ""
    problem = analysis_file_problem(study, LEFT_OUT_FILE)
    if problem:
        return [], problem
    records = read_json(figures_dir(study) / LEFT_OUT_FILE).get("left_out", [])
    return [LeftOut(**{**record, "claims": tuple(record.get("claims", ()))}) for record in records], ""

