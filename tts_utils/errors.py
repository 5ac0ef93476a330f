"""The kit's errors, one module below every layer: it imports nothing, so any module can raise them,
vllm_compat and existing_env included (they run before the kit's dependencies are installed).

``cli.BAD_INPUT`` (ConfigError, StudyLockedError, CorruptResultError) are the user's to fix and
print as one line; the others are failures of a run. Used by every layer.
"""


class ConfigError(ValueError):
    """A parameter, profile or input file is wrong; the message is one line that says which and why."""


class CorruptResultError(RuntimeError):
    """A result file failed validation; the message names the file (and line)."""


class StudyLockedError(RuntimeError):
    """Another sweep holds the study's lock."""


class SetupError(RuntimeError):
    """The existing environment cannot take the kit as asked; one line says why."""


class EngineStartError(RuntimeError):
    """The engine did not come up; the message's first line names the cause."""


class RequestError(RuntimeError):
    """A request failed (engine gone, HTTP error, malformed stream)."""


class GraderStartError(RuntimeError):
    """The grading worker died before it could grade anything: nothing can be graded here."""


class SweepError(RuntimeError):
    """One or more runs of a sweep failed; finished runs are kept."""


class ChainError(RuntimeError):
    """A notebook of the chain failed."""
