"""One pass, all budgets: derive what a run at a smaller output budget would have returned.

A request run once at the largest budget ``B`` contains every smaller budget ``L``: under greedy
decoding its first ``L`` tokens are what ``max_tokens=L`` returns, and the ``L``-th token's arrival
time is when that shorter request would have finished. ``session.verify_one_pass`` checks the
premise on the live engine and falls back to separate runs where it fails. Used by sweep.py.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetView:
    """A request as seen at output budget ``budget_tokens``."""

    budget_tokens: int
    output_tokens: int
    e2e_latency_s: float
    ttft_s: float
    hit_budget: bool
    finish_reason: str


def view_at_budget(record: dict, budget: int) -> BudgetView:
    """Cut one streamed record (``RequestRecord.to_dict()``) at ``budget`` tokens.

    Latency at ``budget`` is the arrival of the chunk that carried the budget-th token, or the end
    of the stream if the request stopped earlier.
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    produced = record["completion_tokens"]
    chunk_tokens = record["chunk_tokens"]
    chunk_times = record["chunk_times_s"]
    ttft = chunk_times[0] if chunk_times else record["e2e_latency_s"]
    if produced <= budget or record["max_tokens"] <= budget:
        return BudgetView(budget, produced, record["e2e_latency_s"], ttft,
                          record["finish_reason"] == "length", record["finish_reason"])
    index = bisect.bisect_left(chunk_tokens, budget)
    return BudgetView(budget, budget, chunk_times[index], ttft, True, "length")


def record_for_budget(records: list[dict], budget: int) -> dict:
    """Of one problem-sample's records (one per ``max_tokens`` run), the one that covers ``budget``:
    the shortest run at least that long (the single long run in one-pass mode)."""
    covering = [r for r in records if r["max_tokens"] >= budget]
    if not covering:
        raise ValueError(f"no record reaches budget {budget}")
    return min(covering, key=lambda r: r["max_tokens"])
