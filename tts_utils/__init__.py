"""tts_utils: the code behind the test-time-scaling notebooks (engine, runner, grading, cost, store).

Notebooks orchestrate and explain; these modules compute. See docs/code-map.md for the module map.
"""

__version__ = "0.1.0"
