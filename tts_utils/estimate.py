"""What a profile will cost before it runs: requests, tokens, and expected device-hours.

Upper bounds: every request is assumed to run to the largest budget. Per-token times come from
``REFERENCE_MS_PER_TOKEN`` (raw vLLM 0.26.0 on one H200, batch 1, see reference_results/) for GPU
machines, and from a measured rate for the tiny model on 2 CPU cores; other hardware scales
differently, so the estimate says which table it used. Used by 00_setup and dry runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from tts_utils.sweep import RunPlan

# ms per decoded token at batch 1, keyed by (model size, TP); H200, bf16, measured 2026-11-28.
REFERENCE_MS_PER_TOKEN = {
    ("1.5b", 1): 2.14, ("1.5b", 2): 2.39, ("1.5b", 4): 1.83,
    ("7b", 1): 4.83, ("7b", 2): 3.23, ("7b", 4): 2.53,
    ("14b", 1): 9.02, ("14b", 2): 5.84, ("14b", 4): 4.24,
}
TINY_CPU_MS_PER_TOKEN = 5.0
ENGINE_START_S = {"gpu": 90.0, "cpu": 60.0}


def ms_per_token(model_key: str, tensor_parallel_size: int) -> float:
    """Reference decode time for a model key (s1.1 keys use the same shapes)."""
    if model_key == "tiny":
        return TINY_CPU_MS_PER_TOKEN
    size = model_key.removeprefix("s1.1-")
    return REFERENCE_MS_PER_TOKEN.get((size, tensor_parallel_size),
                                      REFERENCE_MS_PER_TOKEN.get((size, 1), 10.0))


def estimate_plans(plans: list[RunPlan], accelerator: str = "gpu") -> pd.DataFrame:
    """One row per planned run: requests, token upper bound, hours and device-hours."""
    rows = []
    for plan in plans:
        requests = len(plan.request_specs("one-pass"))
        tokens = requests * max(plan.budgets)
        # Speculation on real text is assumed no faster than baseline: a safe upper bound.
        decode_s = tokens * ms_per_token(plan.model.key, plan.tensor_parallel_size) / 1000.0
        prefill_s = sum(plan.prompt_tokens) * plan.samples_per_problem * 0.05 / 1000.0
        seconds = decode_s / max(1, plan.concurrency) + prefill_s + ENGINE_START_S[accelerator]
        rows.append({
            "run_name": plan.run_name, "model": plan.model.key, "method": plan.method,
            "tensor_parallel_size": plan.tensor_parallel_size, "requests": requests,
            "max_output_tokens": tokens, "expected_hours": seconds / 3600.0,
            "expected_device_hours": seconds * plan.tensor_parallel_size / 3600.0,
            "already_complete": plan.folder().is_complete(),
        })
    return pd.DataFrame(rows)
