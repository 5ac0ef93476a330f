"""A vLLM worker extension that changes synthetic acceptance rates in a running engine.

vLLM mixes this class into its GPU worker when the server starts with
``--worker-extension-cls tts_utils.engine.worker_ext.SyntheticAcceptance``; with
``VLLM_SERVER_DEV_MODE=1`` the server's ``POST /collective_rpc`` then calls these methods on every
worker. The break-even sweep (acceptance_sweep.py, 03_spec) uses it to time many acceptance lengths
with one engine start: the rejection sampler keeps its per-position conditional rates in a device
tensor that its kernel reads at every step, so overwriting it in place changes acceptance from
the next step on. Runs inside the engine's worker processes; imports vLLM and torch lazily.
"""

from __future__ import annotations

import json


class SyntheticAcceptance:
    """Methods added to the engine's worker (``self`` is vLLM's worker)."""

    def tts_set_synthetic_acceptance(self, rates_json: str) -> dict:
        """Set unconditional per-position acceptance rates (a JSON list, one per draft position).

        Returns ``{"conditional": [...]}`` (the rates now in the sampler) or ``{"error": "..."}``:
        an exception raised here would take the whole engine down, so none is.
        """
        import torch
        from vllm.v1.spec_decode.utils import unconditional_to_conditional_rates

        sampler = getattr(getattr(self, "model_runner", None), "rejection_sampler", None)
        current = getattr(sampler, "synthetic_conditional_rates", None)
        if current is None:
            return {"error": "the engine was not started with synthetic rejection sampling"}
        try:
            rates = [float(rate) for rate in json.loads(rates_json)]
        except (TypeError, ValueError) as error:
            return {"error": f"rates must be a JSON list of numbers: {error}"}
        if len(rates) != current.numel():
            return {"error": f"{len(rates)} rates given for {current.numel()} draft positions"}
        conditional = torch.tensor(unconditional_to_conditional_rates(rates), dtype=current.dtype)
        current.copy_(conditional.to(current.device))
        return {"conditional": [float(value) for value in current.tolist()]}
