"""The paper's claims as a registry: one named entry per claim, looked up by key.

Each entry holds the paper's sentence, the rule that decides it in words (shown on the landing page)
and whether the rule is judged per model.
The rules themselves are ``analysis.claim_*``; ``verdicts.check_all_claims`` chooses the evidence.
Adding a claim: an entry here, its rule in analysis.py, its line in ``verdicts.check_all_claims``.
Used by 04_analysis, the landing page and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    key: str
    sentence: str
    rule: str
    per_model: bool = True


REGISTRY: tuple[Claim, ...] = (
    Claim("accuracy_flattens", "Accuracy gains flatten as the output budget grows",
          "per model, greedy at TP 1 over three or more budgets: the last budget step gains less strict accuracy "
          "than the first (interval of last gain - first gain below 0, problems resampled jointly); holds if it "
          "holds for every model"),
    Claim("speculation_faster", "Speculative decoding lowers latency at every budget",
          "per model and budget at TP 1: speculative over greedy mean latency on the same problems (paired "
          "interval) below 1; holds if it holds for every model at every budget, measured and modelled series apart"),
    Claim("tp_diminishing", "Tensor parallelism has diminishing returns",
          "per model, greedy: efficiency (TP 1 latency / TP n latency / n) below 1 at every TP n > 1 and falling "
          "as n grows"),
    Claim("small_model_slower_with_tp", "For the smallest model, more GPUs are slower",
          "the smallest model with several TP sizes: latency at every TP n > 1 over TP 1's, averaged over "
          "budgets, above 1"),
    Claim("compute_not_system_optimal", "Compute-optimal is not system-optimal",
          "among configurations within 95% of the best strict accuracy (point estimates), the compute-only pick "
          "(fewest FLOPs per request; FLOPs ties each take the tied configuration best at what is compared) is "
          "slower or costlier than the fastest or cheapest, its paired interval above 1x; across models, "
          "so it has no per-model answer", per_model=False),
)
CLAIMS: dict[str, Claim] = {claim.key: claim for claim in REGISTRY}


def claim(key: str) -> Claim:
    """The registry entry of ``key`` (KeyError names the keys there are)."""
    try:
        return CLAIMS[key]
    except KeyError:
        raise KeyError(f"no claim {key!r}; claims: {', '.join(CLAIMS)}") from None


def figure_title(key: str, verdicts: dict[str, str]) -> str:
    """The title of the figure under a claim: its sentence and its verdict (04_analysis)."""
    return f"{claim(key).sentence}: {verdicts.get(key, 'not judged')}"
