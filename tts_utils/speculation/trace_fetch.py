"""Public real-model traces by name: fetched at pinned commits, checked by sha256, or read locally.

The traces that ``../shared/data/traces/README.md`` describes (full outputs of DeepSeek-R1-Distill-Qwen
1.5B and 7B on MATH500, from public GitHub repositories) are named here with the repository, commit
and path they come from and the sha256 of their bytes. ``trace_sets`` entries name them as
``MODEL=public:NAME`` (required: an error if it cannot be had) or ``MODEL=public?:NAME`` (used when
it can be had, else skipped with the reason: the embedded default, which must run offline).

Where a file comes from, first found wins: ``$TTS_TRACES_DIR/<file>`` (a local copy, e.g.
``../shared/data/traces`` in CI), the kit's cache (``.cache/traces/``), then the raw file at its
pinned commit (``$TTS_TRACES_URL`` replaces ``https://raw.githubusercontent.com`` for mirrors and
tests). Every copy, local or fetched, must match the pinned sha256; a mismatch is refused. The
files are never part of the repository.

The traces are tokenized with their model's own tokenizer (``trace_tokenizer_for``): a local folder
(``trace_tokenizer``, else ``$TTS_TRACE_TOKENIZER``), the Hugging Face cache, or the hub, whose
reachability is checked first so that an offline machine fails in seconds, not after a minute of
retries. Used by replay.py (03_spec) and the tests.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from tts_utils.data import connection_refused, hub_reachable
from tts_utils.errors import ConfigError
from tts_utils.models import ModelSpec
from tts_utils.paths import cache_dir

TRACES_DIR_ENV = "TTS_TRACES_DIR"
TRACES_URL_ENV = "TTS_TRACES_URL"
TRACE_TOKENIZER_ENV = "TTS_TRACE_TOKENIZER"
RAW_GITHUB = "https://raw.githubusercontent.com"
FETCH_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 3.0
PUBLIC, OPTIONAL = "public:", "public?:"


@dataclass(frozen=True)
class PublicTrace:
    """One public trace file: where it lives upstream and what its bytes hash to."""

    file: str
    model: str
    repo: str
    commit: str
    path: str
    sha256: str
    licence: str
    # The dataset (tts_utils/datasets.py) whose own fields each line holds (MATH500's problem, answer,
    # unique_id; GSM8K's question and answer): the file is its own problem set, so it replays without
    # a copy of the dataset (offline, the embedded default). Empty: the study's dataset.
    problems: str = ""

    def url(self, base: str | None = None) -> str:
        return f"{(base or os.environ.get(TRACES_URL_ENV) or RAW_GITHUB).rstrip('/')}/{self.repo}/{self.commit}/{self.path}"


_RKV = ("Zefan-Cai/R-KV", "8e1c06cdfaaf572de390d1ce4308c9d05880936f")
PUBLIC_TRACES = {
    "r1-distill-qwen-1.5b.math500-first100": PublicTrace(
        "r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl", "1.5b", *_RKV,
        "results/validation-2026-07-08-h100/flashinfer_sweep/records/acc_1p5b_math_fullkv.jsonl",
        "86f35abd75e973e2f5a244c7415ad08a5c2e771a223d5c4be3b31fa55296ed9b", "Apache-2.0", problems="math500"),
    "r1-distill-qwen-7b.math500-first100": PublicTrace(
        "r1-distill-qwen-7b.math500-first100.t0.6.jsonl", "7b", *_RKV,
        "results/validation-2026-07-08-h100/flashinfer_sweep/records/acc_7b_math_fullkv.jsonl",
        "cf00f6b34bb29836c0d80d636bf7cfc84e603bfc735893f621e3d42af47978d3", "Apache-2.0", problems="math500"),
    # The first 100 GSM8K test problems, same run (H100, seed 42, temperature 0.6, top_p 0.95, 8K cap,
    # no KV compression); copied page by page from the pinned commit, 223,108 and 232,972 bytes.
    "r1-distill-qwen-1.5b.gsm8k-first100": PublicTrace(
        "r1-distill-qwen-1.5b.gsm8k-first100.t0.6.jsonl", "1.5b", *_RKV,
        "results/validation-2026-07-08-h100/flashinfer_sweep/records/acc_1p5b_gsm8k_fullkv.jsonl",
        "84d869dd9b6259b3dba60518e75c246c9162e23e763d4a07f707e98c72ed86e9", "Apache-2.0", problems="gsm8k"),
    "r1-distill-qwen-7b.gsm8k-first100": PublicTrace(
        "r1-distill-qwen-7b.gsm8k-first100.t0.6.jsonl", "7b", *_RKV,
        "results/validation-2026-07-08-h100/flashinfer_sweep/records/acc_7b_gsm8k_fullkv.jsonl",
        "5053c28dbc383715cccfaae59e42f9b9318f82608495dd2ee39ce2a10a19d4f2", "Apache-2.0", problems="gsm8k"),
    "r1-distill-qwen-7b.math500-first20": PublicTrace(
        "r1-distill-qwen-7b.math500-first20.t0.6.jsonl", "7b", "markyx316/LLM-Reasoning-Trace-Topology",
        "f841ba72f3948260a84db0d7fd37ca0722f301ad", "data/traces/pilot_math500_qwen7b.jsonl",
        "e8aada94bff3e4a34ed6b8b14f3d9ae5fbed98d70a124d44ceeb4fa7ae5f8c69", "MIT"),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(path: Path, trace: PublicTrace, where: str) -> Path:
    actual = sha256_of(path)
    if actual != trace.sha256:
        raise ConfigError(f"{trace.file} from {where}: sha256 {actual[:16]}... does not match the pinned "
                          f"{trace.sha256[:16]}...; refusing it (a different or damaged file)")
    return path


def lookup(name: str) -> PublicTrace:
    """A public trace by name (with or without ``.t0.6.jsonl``)."""
    key = name.removesuffix(".jsonl").removesuffix(".t0.6")
    if key not in PUBLIC_TRACES:
        raise ConfigError(f"unknown public trace set {name!r}; known: {', '.join(PUBLIC_TRACES)}")
    return PUBLIC_TRACES[key]


@lru_cache(maxsize=8)
def _reachable(url: str) -> None:
    """Fail in seconds where the network drops packets (a download would wait FETCH_TIMEOUT_S per file)."""
    parts = urlparse(url)
    if parts.scheme in {"http", "https"} and parts.hostname:
        why = connection_refused(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), CONNECT_TIMEOUT_S)
        if why:
            raise OSError(f"{parts.hostname} unreachable: {why}")


def fetch(name: str, base_url: str | None = None, timeout_s: float = FETCH_TIMEOUT_S) -> Path:
    """The local path of a public trace file: a local copy, the cache, or a download (all sha256-checked).

    ConfigError when no copy can be had, saying where it looked and how to give one."""
    trace = lookup(name)
    local_dir = os.environ.get(TRACES_DIR_ENV)
    if local_dir and (Path(local_dir) / trace.file).exists():
        return _checked(Path(local_dir) / trace.file, trace, f"{TRACES_DIR_ENV}={local_dir}")
    cached = cache_dir() / "traces" / trace.file
    if cached.exists():
        return _checked(cached, trace, str(cached))
    url = trace.url(base_url)
    try:
        _reachable(url)
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (https or a test's file URL)
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ConfigError(f"public trace set {trace.file} could not be fetched from {url} ({error}); offline, "
                          f"set {TRACES_DIR_ENV}=FOLDER holding {trace.file} or give its path") from None
    partial = cached.with_suffix(".part")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data)
    try:
        _checked(partial, trace, url)
    except ConfigError:
        partial.unlink()
        raise
    partial.replace(cached)
    return cached


def resolve_entry(path: str) -> str | None:
    """A ``trace_sets`` path: ``public:NAME`` becomes its local file, ``public?:NAME`` too or None
    (skipped, with the reason printed) when it cannot be had; anything else is returned as given."""
    if path.startswith(OPTIONAL):
        try:
            return str(fetch(path[len(OPTIONAL):]))
        except ConfigError as error:
            if "sha256" in str(error) or "unknown public" in str(error):
                raise
            print(f"!! real traces skipped: {error}")
            return None
    if path.startswith(PUBLIC):
        return str(fetch(path[len(PUBLIC):]))
    return path


def own_problems(path: str, resolved: str) -> str:
    """The ``dataset`` that replays a ``trace_sets`` path: ``NAME:FILE`` when it names a public set whose
    lines carry their problems (its file, pinned by sha256, is then the replay's problem set), else ""
    (the study's dataset)."""
    prefix = next((p for p in (OPTIONAL, PUBLIC) if path.startswith(p)), None)
    problems = lookup(path[len(prefix):]).problems if prefix is not None else ""
    return f"{problems}:{resolved}" if problems else ""


def _cached_tokenizer(hf_id: str) -> str | None:
    """The hub cache's folder of ``hf_id``'s tokenizer, when an earlier run downloaded it."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = [try_to_load_from_cache(hf_id, name) for name in ("tokenizer.json", "tokenizer_config.json")]
    if all(isinstance(path, str) for path in found) and Path(found[0]).parent == Path(found[1]).parent:
        return str(Path(found[0]).parent)
    return None


def trace_tokenizer_for(model: ModelSpec, given: str = "") -> str:
    """Where the tokenizer of ``model``'s traces comes from: ``given`` (the ``trace_tokenizer``
    parameter), ``$TTS_TRACE_TOKENIZER``, the hub's cache, or the hub id (tokenizer files only).

    ConfigError, in seconds, when none is local and the hub is unreachable."""
    local = given or os.environ.get(TRACE_TOKENIZER_ENV, "")
    if local:
        if not Path(local).expanduser().is_dir():
            raise ConfigError(f"trace tokenizer folder {local} does not exist")
        return str(Path(local).expanduser())
    if model.hf_id is None:
        raise ConfigError(f"model {model.key!r} has no hub id: give its tokenizer with trace_tokenizer=DIR")
    cached = _cached_tokenizer(model.hf_id)
    if cached:
        return cached
    if not hub_reachable():
        raise ConfigError(f"the tokenizer of {model.key} ({model.hf_id}) is not on this machine and the hub is "
                          f"unreachable; set trace_tokenizer=DIR or {TRACE_TOKENIZER_ENV}=DIR (a folder with tokenizer.json)")
    return model.hf_id
