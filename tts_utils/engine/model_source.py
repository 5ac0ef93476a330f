"""Turn a registry key into what the engine loads: a hub id, the tiny model, or a weightless shape.

* ``tiny``: built locally by tiny_model.py.
* ``tiny-draft``: a smaller shape over the tiny tokenizer, random weights only (a drafter for tiny).
* a real key with ``load_format: auto``: the Hugging Face id (vLLM downloads it).
* a real key with ``load_format: dummy`` (system-only mode): a folder with the model's
  ``config.json`` from ``tts_utils/model_shapes`` and the tiny tokenizer (token ids stay below
  every real vocabulary), so the real architecture runs offline with random weights.
* an EAGLE-3 head for system-only mode (``eagle3_head``): a one-layer ``LlamaForCausalLMEagle3``
  config shaped like its target, as published heads are, filled with random weights by the engine.
Used by sweep.py (01-03) and 00_setup.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tts_utils.data import hub_reachable
from tts_utils.engine.tiny_model import ensure_tiny_model, recipe_hash
from tts_utils.errors import ConfigError
from tts_utils.models import ModelSpec, has_random_weights
from tts_utils.paths import MODEL_SHAPES_DIR, cache_dir

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class ModelSource:
    """What to pass to the engine, and the stable identity that goes into run hashes."""

    engine_path: str
    tokenizer_path: str
    identity: str
    max_context: int | None
    # A local folder written by ``random_weights`` (its marker): loaded as a checkpoint, labelled random.
    random_weights: bool = False


def _context_of(config_file: Path) -> int | None:
    try:
        return int(json.loads(config_file.read_text())["max_position_embeddings"])
    except (OSError, KeyError, ValueError):
        return None


def _shape_folder(spec: ModelSpec) -> Path:
    if spec.shape is None or not (MODEL_SHAPES_DIR / spec.shape / "config.json").exists():
        raise ConfigError(f"model {spec.key!r} has no local shape for system-only mode (load_format: dummy)")
    tiny = ensure_tiny_model()
    target = cache_dir() / "models" / f"shape-{spec.shape}-tok{recipe_hash()}"
    if not (target / "config.json").exists():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(MODEL_SHAPES_DIR / spec.shape, staging)
        for name in TOKENIZER_FILES:
            shutil.copy2(tiny / name, staging / name)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def resolve(spec: ModelSpec, load_format: str, local_dirs: Mapping[str, str] | None = None) -> ModelSource:
    """Where the engine gets this model under this load format; ``local_dirs`` (``model_paths``)
    maps registry keys to local weight folders, loaded as they are (not in system-only mode)."""
    local = (local_dirs or {}).get(spec.key)
    if local is not None and load_format != "dummy":
        # Named by folder, like a local drafter: a moved folder still resumes, another folder does not.
        return ModelSource(local, local, f"{spec.hf_id or spec.key}@local:{Path(local).name}",
                           _context_of(Path(local) / "config.json"), has_random_weights(local))
    if spec.hf_id is None and spec.shape is not None and load_format != "dummy":
        raise ConfigError(f"model {spec.key!r} is a shape without weights: system-only mode (load_format: dummy) only")
    if spec.hf_id is None and spec.shape is None:
        path = ensure_tiny_model()
        return ModelSource(str(path), str(path), f"tiny-{recipe_hash()}", _context_of(path / "config.json"))
    if load_format == "dummy":
        path = _shape_folder(spec)
        return ModelSource(str(path), str(path), f"{spec.shape}-random-weights",
                           _context_of(path / "config.json"))
    return ModelSource(spec.hf_id, spec.hf_id, spec.hf_id, None)


def shape_config(spec: ModelSpec) -> dict | None:
    """The model's shipped shape (config.json under tts_utils/model_shapes), or None without one."""
    path = MODEL_SHAPES_DIR / spec.shape / "config.json" if spec.shape else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def shape_context(spec: ModelSpec) -> int | None:
    """The model's context from its shipped shape (``max_position_embeddings``), without the hub."""
    return _context_of(MODEL_SHAPES_DIR / spec.shape / "config.json") if spec.shape else None


def looks_like_folder(name: str) -> bool:
    """A path on this machine rather than a hub id (``owner/name``)."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def check_tokenizer_reachable(path: str, hint: str = "") -> None:
    """Fail fast, before any download is tried: a folder must exist and hold a tokenizer; a hub id
    needs the hub or the local Hugging Face cache (offline, transformers would retry for a minute)."""
    suffix = f"; {hint}" if hint else ""
    if looks_like_folder(path):
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"tokenizer folder not found: {folder}{suffix}")
        if not any((folder / name).exists() for name in (*TOKENIZER_FILES, "vocab.json", "tokenizer.model")):
            raise ConfigError(f"tokenizer folder {folder} holds no tokenizer (no tokenizer.json){suffix}")
        return

    if hub_reachable():
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "tokenizer_config.json")
    except Exception:  # an id the hub library refuses: let from_pretrained say why
        return
    if not isinstance(cached, str):
        raise ConfigError(f"cannot load the tokenizer of {path}: the Hugging Face hub is unreachable and it is not "
                          f"in the local cache{suffix}")


def load_tokenizer(source: ModelSource, hint: str = ""):
    """The model's tokenizer, for prompt lengths before launch and text at each budget.

    ``hint`` (what the user can give instead) ends the error when the tokenizer cannot be had. One
    object per tokenizer (and version of its files) in a process, shared: callers must not change it.
    A notebook loads the same tokenizer in planning, each run's results and each trace set's replay
    (R1's: 1.6 s a load, four loads per 03_spec of two trace sets). Its ``model_max_length`` is lifted:
    the kit never truncates, and checks lengths against the model's context itself.
    """
    check_tokenizer_reachable(source.tokenizer_path, hint)
    try:
        return _tokenizer(source.tokenizer_path, _files_stamp(source.tokenizer_path))
    except (OSError, ValueError) as error:
        suffix = f"; {hint}" if hint else ""
        raise ConfigError(f"cannot load the tokenizer of {source.tokenizer_path}: "
                          f"{str(error).splitlines()[0]}{suffix}") from None


def _files_stamp(path: str) -> tuple:
    """A local tokenizer folder's files with their sizes and times (a changed file loads afresh)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return ()
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir())
                 if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("vocab.json", "merges.txt")))


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, stamp: tuple):
    from transformers import AutoTokenizer

    # transformers 5 takes a local folder whose config.json names no transformers_version (the
    # shipped shapes, hence random_weights folders) for an old Mistral tokenizer and warns; its
    # "fix" is Mistral's regex, wrong for Qwen's BPE (benchmarks/tokenizer_regex_check.py).
    tokenizer = AutoTokenizer.from_pretrained(path, fix_mistral_regex=False)
    tokenizer.model_max_length = 10**9
    return tokenizer


def load_model_config(source: ModelSource) -> dict:
    """The model's config.json as a dict (local file, or fetched from the hub like the tokenizer)."""
    local = Path(source.engine_path) / "config.json"
    if local.exists():
        return json.loads(local.read_text())
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source.engine_path).to_dict()
    except OSError as error:
        raise ConfigError(f"cannot load the config of {source.engine_path}: {str(error).splitlines()[0]}") from None


# Published EAGLE-3 heads (e.g. yuhuili/EAGLE3-LLaMA3.1-Instruct-8B) draft over a 32,000-token
# subset of the target's vocabulary; the engine maps draft ids to target ids (zeros here: identity).
EAGLE3_DRAFT_VOCAB = 32000
EAGLE3_TARGET_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                        "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "torch_dtype")


def eagle3_head(target: ModelSource) -> Path:
    """A folder with an EAGLE-3 head's config.json shaped like ``target`` (one decoder layer of the
    target's width, its vocabulary, a 32K draft vocabulary): what 03_spec's system-only eagle3 runs
    load with random weights when ``draft_model`` is left empty."""
    shape = load_model_config(target)
    missing = [name for name in EAGLE3_TARGET_FIELDS[:5] if name not in shape]
    if missing:
        raise ConfigError(f"cannot shape an EAGLE-3 head for {target.engine_path}: its config lacks {missing}")
    layers = int(shape.get("num_hidden_layers", 0))
    # Target layers whose hidden states feed the head: vLLM's default (2, L/2, L-3) for real depths,
    # every layer of a shallower (tiny) target. vLLM reads them at the top level or in eagle_config.
    taps = [2, layers // 2, layers - 3] if layers >= 6 else list(range(layers))
    head = {name: shape[name] for name in EAGLE3_TARGET_FIELDS if name in shape}
    head.update(architectures=["LlamaForCausalLMEagle3"], model_type="llama", num_hidden_layers=1,
                hidden_act="silu", tie_word_embeddings=False,
                draft_vocab_size=min(EAGLE3_DRAFT_VOCAB, shape["vocab_size"]),
                eagle_aux_hidden_state_layer_ids=taps, eagle_config={"eagle_aux_hidden_state_layer_ids": taps})
    text = json.dumps(head, indent=2, sort_keys=True)
    folder = cache_dir() / "models" / f"eagle3-head-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    if not (folder / "config.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / "config.json.partial"
        staging.write_text(text + "\n")
        staging.rename(folder / "config.json")
    return folder
