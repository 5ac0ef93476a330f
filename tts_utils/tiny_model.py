"""The embedded default model: a random-weight Qwen2 the kit builds itself, offline.

Small enough for two CPU cores (2 layers, hidden 128, 2 heads of size 64, 2 KV heads so TP=2 runs)
with a 512-token byte-level BPE tokenizer trained here on the built-in problems. Built once into
``cache_dir()/models/tiny-<recipe hash>`` and reused. Its output is noise: every number measured
with it measures plumbing, not reasoning. Used by model_source.py (all sweeps) and the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tts_utils.paths import BUILTIN_PROBLEMS_FILE, cache_dir

SPECIAL_TOKENS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<think>", "</think>"]
RECIPE = {
    "version": 1,
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "dtype": "bfloat16",
    "seed": 0,
}
PLUMBING_WARNING = (
    "EMBEDDED DEFAULT: a random-weight tiny model on CPU. These numbers measure the kit's plumbing, "
    "not reasoning, accuracy or any real hardware's serving speed."
)
# Registry keys of the kit's own random-weight models: their accuracy and timings are plumbing.
PLUMBING_MODELS = frozenset({"tiny", "tiny-draft"})


def recipe_hash() -> str:
    """Short hash of the recipe; a changed recipe builds a new folder."""
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:10]


def tiny_model_dir() -> Path:
    """Folder of the built model (may not exist yet)."""
    return cache_dir() / "models" / f"tiny-{recipe_hash()}"


def _training_corpus() -> list[str]:
    lines = []
    for line in BUILTIN_PROBLEMS_FILE.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        lines += [record["problem"], record["solution"]]
    lines.append("Please reason step by step, and put your final answer within \\boxed{}.")
    return lines


def _build_tokenizer(target: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=RECIPE["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.model_max_length = RECIPE["max_position_embeddings"]
    fast.save_pretrained(target)


def _build_weights(target: Path) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=RECIPE["vocab_size"], hidden_size=RECIPE["hidden_size"],
        intermediate_size=RECIPE["intermediate_size"], num_hidden_layers=RECIPE["num_hidden_layers"],
        num_attention_heads=RECIPE["num_attention_heads"],
        num_key_value_heads=RECIPE["num_key_value_heads"], head_dim=RECIPE["head_dim"],
        max_position_embeddings=RECIPE["max_position_embeddings"], tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    torch.manual_seed(RECIPE["seed"])
    model = Qwen2ForCausalLM(config).to(getattr(torch, RECIPE["dtype"]))
    model.save_pretrained(target)


def ensure_tiny_model() -> Path:
    """Build the tiny model if it is not cached yet; return its folder.

    Built in a temporary sibling folder and renamed into place, so an interrupted build never
    leaves a half-written model behind.
    """
    target = tiny_model_dir()
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=target.parent))
    try:
        _build_tokenizer(staging)
        _build_weights(staging)
        (staging / "RECIPE.json").write_text(json.dumps(RECIPE, indent=2) + "\n")
        try:
            os.rename(staging, target)
        except OSError:  # another process finished the same build first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
