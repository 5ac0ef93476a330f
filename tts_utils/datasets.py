"""Dataset registry: which problems a name means, where the hub keeps them, and how a record gives
its problem text, its gold answer and its id.

The prompt is not a dataset's: the model's template (models.py) wraps every problem. Used by
data.py (the ``dataset`` parameter of 00-03, the replay CLI's ``--dataset``) and traces.py (a
trace's own gold answer is read by its dataset's rule before it is compared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tts_utils.errors import ConfigError


def _after_hashes(solution: str) -> str:
    """GSM8K's gold: the number after the closing ``####`` of its worked solution, commas removed."""
    return solution.split("####")[-1].strip().replace(",", "")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of problems with gold answers.

    Attributes:
        key: registry name, the value of ``dataset`` (``math500``, ``gsm8k``, ...).
        hub_id: Hugging Face dataset id; ``hub_config`` and ``split`` say which part holds the problems.
        problem_field, gold_field: a record's problem text and gold answer.
        id_field: a record's id; ``None``: the dataset has none, and ids are ``<key>/<row index>``.
        gold_rule: how the gold answer is read from ``gold_field``, in words (replays state it).
        extract_gold: that rule, from the field's text to the gold answer.
    """

    key: str
    hub_id: str
    split: str
    problem_field: str
    gold_field: str
    id_field: str | None
    gold_rule: str = "the answer field as written"
    extract_gold: Callable[[str], str] = str
    hub_config: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields every record must have: problem, gold and (when the dataset has ids) id."""
        return (self.problem_field, self.gold_field) + ((self.id_field,) if self.id_field else ())

    def gold(self, value: object) -> str:
        """The gold answer a record's ``gold_field`` value holds."""
        return self.extract_gold(str(value))


DATASETS: dict[str, DatasetSpec] = {
    spec.key: spec for spec in (
        DatasetSpec("math500", "HuggingFaceH4/MATH-500", "test", "problem", "answer", "unique_id"),
        DatasetSpec("gsm8k", "openai/gsm8k", "test", "question", "answer", None,
                    "the number after '####' in the worked solution, commas removed", _after_hashes, "main"),
        DatasetSpec("aime2024", "HuggingFaceH4/aime_2024", "train", "problem", "answer", "id",
                    "the answer field, stripped", str.strip),
        DatasetSpec("aime2025", "yentinglin/aime_2025", "train", "problem", "answer", None,
                    "the answer field, stripped", str.strip),
    )
}
MATH500 = DATASETS["math500"]


def get_dataset(key: str) -> DatasetSpec:
    """Look a name up; an unknown name is a one-line ConfigError listing the known ones."""
    try:
        return DATASETS[key]
    except KeyError:
        raise ConfigError(f"unknown dataset {key!r}; known datasets: {', '.join(DATASETS)} (or a .jsonl/.parquet "
                          "file: PATH with MATH500's fields, NAME:PATH with dataset NAME's)") from None
