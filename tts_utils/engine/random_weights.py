"""Write a local model folder: a shipped architecture with random weights saved as safetensors.

A stand-in for downloaded weights on a machine without them. The engine loads it like a real
checkpoint (``load_format: auto`` through ``model_paths``), so everything after loading runs as
with real weights: the engine's own n-gram acceptance, the batched pass and its check, grading
(accuracy near 0: the text is noise) and 04. Unlike system-only mode (``load_format: dummy``,
where vLLM fills weights itself and the kit skips grading), nothing is switched off.

    python -m tts_utils random_weights --shape 1.5b --tokenizer DIR --out DIR [--seed 0]

``--shape``: a registry key with a shipped shape (1.5b, 7b, 14b, s1.1-*, tiny-draft) or a folder
holding a config.json. ``--tokenizer``: a folder with tokenizer.json and tokenizer_config.json
(for R1-Distill shapes the R1-Distill-Qwen tokenizer). Its base vocabulary must fit the shape's
embedding rows; added tokens past them get rows of their own (config.json's vocab_size is raised
and ``vocab_size_raised`` in RANDOM_WEIGHTS.json says so), as the engine needs a row for every id.
1.5B in bf16 is ~3.5 GB and takes a minute or two on one core; the tests write tiny-draft only.
Used by the GPU first-run profile (params/gpu-first-run.yaml) and the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from tts_utils.cli import OneLineParser, run
from tts_utils.engine.model_source import TOKENIZER_FILES
from tts_utils.errors import ConfigError
from tts_utils.models import MODELS, RANDOM_WEIGHTS_MARKER
from tts_utils.paths import MODEL_SHAPES_DIR


def shape_folder(shape: str) -> Path:
    """The folder holding ``shape``'s config.json: a registry key's shipped shape, or a path."""
    if shape in MODELS and MODELS[shape].shape:
        folder = MODEL_SHAPES_DIR / MODELS[shape].shape
    else:
        folder = Path(shape).expanduser()
    if not (folder / "config.json").is_file():
        known = ", ".join(key for key, spec in MODELS.items() if spec.shape)
        raise ConfigError(f"--shape {shape!r} is neither a registry key with a shipped shape ({known}) "
                          "nor a folder holding config.json")
    return folder


def write_random_weights(shape: str, tokenizer: Path, out: Path, seed: int = 0) -> Path:
    """Write config, tokenizer and random safetensors weights into ``out`` (built beside it, then
    renamed, so an interrupted write leaves no half model). Returns ``out``."""
    source = shape_folder(shape)
    config = _json_file(source / "config.json", "--shape")
    if not isinstance(config.get("vocab_size"), int) or not config.get("architectures"):
        raise ConfigError(f"--shape {source / 'config.json'} names no vocab_size or architectures: not a model config")
    missing = [name for name in TOKENIZER_FILES if not (tokenizer / name).is_file()]
    if missing:
        raise ConfigError(f"--tokenizer {tokenizer} lacks {', '.join(missing)}")
    vocabulary = _json_file(tokenizer / "tokenizer.json", "--tokenizer").get("model", {}).get("vocab", {})
    if len(vocabulary) > config["vocab_size"]:
        raise ConfigError(f"the tokenizer's {len(vocabulary)} tokens exceed the shape's vocabulary of "
                          f"{config['vocab_size']} rows")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder")
    try:
        return _write(source, config, tokenizer, out, shape, seed)
    except OSError as error:
        raise ConfigError(f"--out {out}: cannot write there ({error.strerror or error})") from None


def _json_file(path: Path, flag: str) -> dict:
    """A JSON object from ``path``, or a one-line ConfigError naming the flag that gave it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{flag} {path}: not a readable JSON file ({error})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} {path}: expected a JSON object")
    return value


def _copy_shape(source: Path, config: dict, staging: Path) -> None:
    """The shipped config.json (``config``'s vocab_size where it was raised) and generation_config.json."""
    for name in ("config.json", "generation_config.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)
    if json.loads((source / "config.json").read_text(encoding="utf-8")) != config:
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write(source: Path, config: dict, tokenizer: Path, out: Path, shape: str, seed: int) -> Path:
    """The folder itself: staged beside ``out``, renamed at the end."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    shipped_rows = config["vocab_size"]

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _copy_shape(source, config, staging)
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer / name, staging / name)
    # Every id the engine's tokenizer has (read as it reads it: from the folder, whose config picks the
    # class; Qwen2's adds <|endoftext|>) needs an embedding row, or the engine crashes at warm-up. R1's
    # shared tokenizer there has 152,065 ids over 1.5B's 151,936 rows: the added tokens get rows.
    try:
        ids = len(AutoTokenizer.from_pretrained(staging, fix_mistral_regex=False))
    except (OSError, ValueError) as error:
        raise ConfigError(f"--tokenizer {tokenizer}: cannot load it ({str(error).splitlines()[0]})") from None
    if ids > config["vocab_size"]:
        print(f"-- the tokenizer has {ids} ids (added tokens included), the shape {config['vocab_size']} embedding "
              f"rows: the embedding gets {ids} rows (vocab_size_raised in {RANDOM_WEIGHTS_MARKER})")
        config = {**config, "vocab_size": ids}
        _copy_shape(source, config, staging)
    dtype = getattr(torch, config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the checkpoint dtype: 1.5B in float32 would need 7 GB
    try:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(staging))
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(staging)  # safetensors: the default since transformers 4.35, the only format in 5
    # save_pretrained rewrites config.json and generation_config.json; keep the shipped ones.
    _copy_shape(source, config, staging)
    recipe = {"shape": shape, "config_sha256": hashlib.sha256((source / "config.json").read_bytes()).hexdigest(),
              "tokenizer": str(tokenizer), "seed": seed, "dtype": str(dtype).removeprefix("torch."),
              "parameters": sum(p.numel() for p in model.parameters()),
              **({"vocab_size_raised": {"shape": shipped_rows, "written": config["vocab_size"],
                                        "why": "the tokenizer's added tokens need embedding rows"}}
                 if config["vocab_size"] != shipped_rows else {}),
              "note": "random weights: the text is noise, accuracy near 0; timings are the architecture's"}
    (staging / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(recipe, indent=2) + "\n")
    if out.exists():
        out.rmdir()
    os.rename(staging, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m tts_utils random_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", required=True, help="registry key with a shipped shape, or a folder with config.json")
    parser.add_argument("--tokenizer", required=True, type=Path, help="folder with tokenizer.json, tokenizer_config.json")
    parser.add_argument("--out", required=True, type=Path, help="the model folder to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def command() -> None:
        out = write_random_weights(args.shape, args.tokenizer, args.out, args.seed)
        size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        print(f"wrote {out} ({size / 2**30:.2f} GiB of safetensors); use it with "
              f"--set 'model_paths=[{args.shape}={out}]' and load_format: auto")

    return run(command)


if __name__ == "__main__":
    raise SystemExit(main())
