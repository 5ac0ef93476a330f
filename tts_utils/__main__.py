"""``python -m tts_utils COMMAND [ARGS]``: every command line of the kit under one name.

Each command is its module's ``main``; ``python -m tts_utils`` alone lists them. The modules also
run on their own (``python -m tts_utils sweep ...``).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "pipeline": ("tts_utils.pipeline", "the notebook chain: reproduce, run NOTEBOOK, check PROFILE"),
    "sweep": ("tts_utils.study.sweep", "01-03's runs without Jupyter"),
    "estimate": ("tts_utils.study.estimate", "a study's plan, wall time and GPU-hours before it runs"),
    "acceptance_sweep": ("tts_utils.study.acceptance_sweep", "the break-even acceptance sweep (GPU, system-only)"),
    "replay": ("tts_utils.speculation.replay", "replay n-gram speculation on a trace file and grade it by budget"),
    "pick": ("tts_utils.report.pick", "the system-optimal configuration for an accuracy target or latency limit"),
    "vllm_compat": ("tts_utils.engine.vllm_compat", "the installed vLLM against the tested range and internals"),
    "random_weights": ("tts_utils.engine.random_weights", "a model folder with random safetensors weights"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        known = "\n".join(f"  {name:<17} {text}" for name, (_, text) in COMMANDS.items())
        print(f"usage: python -m tts_utils COMMAND [ARGS]  (COMMAND --help for its options)\n{known}",
              file=sys.stderr if argv else sys.stdout)
        return 2 if argv else 0
    module, _ = COMMANDS[argv[0]]
    return importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
