"""Model registry: which checkpoint a key means, how to prompt it, where its reasoning ends.

Used by 00_setup (inventory, cost estimate), the sweeps of 01-03 and the grader (strict rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Written by ``python -m tts_utils random_weights`` into every model folder it makes, read wherever
# a study says what its numbers are (banners, run identities, replays, pages): random weights.
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS.json"
# s1.1 models are R1-Distill-Qwen shapes fine-tuned by simplescaling: keyed ``s1.1-<size>`` (size_key).
S1_PREFIX = "s1.1-"
DEEPSEEK_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class ModelSpec:
    """One servable model.

    Attributes:
        key: registry key used in parameters (``1.5b``, ``s1.1-7b``, ``tiny``).
        hf_id: Hugging Face id, or ``None`` for a model the kit builds itself (``tiny``, or a
            shape of the tiny tokenizer's vocabulary, ``tiny-draft``).
        prompt_template: completion prompt; ``{problem}`` is replaced by the problem text.
        reasoning_end: text that closes the reasoning; the strict grader only reads what follows.
        shape: folder under ``tts_utils/model_shapes`` with its config.json (system-only mode).
        params_billion: parameter count, for cost estimates.
        tokenizer_family: models of one family share a vocabulary (a draft model must share its
            target's: vLLM verifies draft token ids against the target's).
    """

    key: str
    hf_id: str | None
    prompt_template: str
    reasoning_end: str
    shape: str | None
    params_billion: float
    tokenizer_family: str = ""

    def prompt(self, problem: str) -> str:
        """The exact text sent to ``/v1/completions`` for one problem."""
        return self.prompt_template.replace("{problem}", problem)


# DeepSeek's advice for the R1 distills: no system prompt, the instruction in the user turn, and the
# assistant turn opened with "<think>\n" (what their chat template emits).
_DEEPSEEK_TEMPLATE = (
    "<｜begin▁of▁sentence｜><｜User｜>{problem}\n" + DEEPSEEK_INSTRUCTION + "<｜Assistant｜><think>\n"
)
# s1.1 uses Qwen2.5's chat format with no extra instruction; it thinks after "<|im_start|>think"
# and answers after "<|im_start|>answer" (simplescaling/s1 README, budget-forcing example).
_S1_TEMPLATE = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n<|im_start|>think"
)
# The tiny model's tokenizer knows these markers as single tokens (see tiny_model.py).
_TINY_TEMPLATE = "<|user|>{problem}\n" + DEEPSEEK_INSTRUCTION + "<|assistant|><think>\n"

_SIZES = {"1.5b": ("1.5B", 1.78), "7b": ("7B", 7.62), "14b": ("14B", 14.8)}

MODELS: dict[str, ModelSpec] = {
    "tiny": ModelSpec("tiny", None, _TINY_TEMPLATE, "</think>", None, 0.0002, "tiny"),
    # A smaller drafter for the tiny model (1 layer, hidden 64, its tokenizer): a shape only, so
    # system-only mode (load_format: dummy) alone; the CPU tests' draft_model path uses it.
    "tiny-draft": ModelSpec("tiny-draft", None, _TINY_TEMPLATE, "</think>", "tiny-draft", 0.00003, "tiny"),
}
for _key, (_size, _billions) in _SIZES.items():
    MODELS[_key] = ModelSpec(
        _key, f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{_size}", _DEEPSEEK_TEMPLATE, "</think>",
        f"r1-distill-qwen-{_key}", _billions, "deepseek-r1-distill-qwen",
    )
    MODELS[f"{S1_PREFIX}{_key}"] = ModelSpec(
        f"{S1_PREFIX}{_key}", f"simplescaling/s1.1-{_size}", _S1_TEMPLATE, "<|im_start|>answer",
        f"r1-distill-qwen-{_key}", _billions, "qwen2.5-instruct",
    )


def size_key(model_key: str) -> str:
    """The R1-Distill key of a model's size, whose shape and measured constants it shares
    (``s1.1-7b`` -> ``7b``); any other key as it is. Used by the cost estimate (run_costs.py)."""
    return model_key.removeprefix(S1_PREFIX)


def has_random_weights(folder: str | Path) -> bool:
    """A local model folder written by the kit's ``random_weights`` (it holds the marker)."""
    return (Path(folder).expanduser() / RANDOM_WEIGHTS_MARKER).is_file()


def get_model(key: str) -> ModelSpec:
    """Look a key up; an unknown key is a one-line error listing the known ones."""
    try:
        return MODELS[key]
    except KeyError:
        raise KeyError(f"unknown model {key!r}; known models: {', '.join(MODELS)}") from None
