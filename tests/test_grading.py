"""The grading rule (strict vs lenient) on hand-written traces, and the grader under hostile input."""

from __future__ import annotations

import json
import random
import time

import pytest

from tts_utils.grading import GradeItem, Grader, final_answer_part, grade_in_process

COMPLETE = "Let me add: 3 + 4 = 7.\n</think>\nThe answer is $\\boxed{7}$."
# Cut off by the budget: the gold value appears mid-reasoning, but the reasoning never ended.
TRUNCATED = "We try x = 7, so \\boxed{7} maybe. Wait, let me re-check the case where x"
WRONG_AFTER_THINK = "Perhaps 7.\n</think>\n\\boxed{8}"
S1_COMPLETE = "<|im_start|>think\nsum is 12<|im_start|>answer\nAnswer: $\\boxed{12}$"


@pytest.fixture(scope="module")
def grader():
    with Grader(item_timeout_s=10.0) as instance:
        yield instance


def test_complete_trace_counts_under_both_rules(grader: Grader) -> None:
    grade = grader.grade(GradeItem(COMPLETE, "7", "</think>"))
    assert (grade.strict_correct, grade.lenient_correct, grade.reasoning_finished) == (True, True, True)
    assert grade.status == "ok" and grade.strict_answer == "7"


def test_truncated_trace_counts_only_under_the_lenient_rule(grader: Grader) -> None:
    grade = grader.grade(GradeItem(TRUNCATED, "7", "</think>"))
    assert grade.lenient_correct is True
    assert grade.strict_correct is False and grade.reasoning_finished is False


def test_wrong_final_answer_fails_strict(grader: Grader) -> None:
    grade = grader.grade(GradeItem(WRONG_AFTER_THINK, "7", "</think>"))
    assert grade.strict_correct is False and grade.strict_answer == "8"


def test_s11_answer_marker_and_equivalent_forms(grader: Grader) -> None:
    assert grader.grade(GradeItem(S1_COMPLETE, "12", "<|im_start|>answer")).strict_correct
    assert grader.grade(GradeItem("</think> \\boxed{0.75}", "\\frac{3}{4}", "</think>")).strict_correct
    assert not grader.grade(GradeItem("</think> \\boxed{0.76}", "\\frac{3}{4}", "</think>")).strict_correct


def test_answer_part_is_after_the_last_marker() -> None:
    assert final_answer_part("a</think>b</think>c", "</think>") == "c"
    assert final_answer_part("no marker", "</think>") is None


def _hostile_strings(count: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    alphabet = "0123456789{}[]()^_\\$+-*/=.,;:!? abcxyzABC\n\t\\frac\\sqrt\\boxed"
    fixed = [
        "\\boxed{" * 100_000,                                  # ~700 KB of unclosed boxes
        ("\\boxed{" * 150_000)[:1_000_000],                    # 1 MB of them
        "</think>\\boxed{" + "9" * 50_000 + "}",               # a huge number
        "</think>\\boxed{" + "{" * 5_000 + "1" + "}" * 5_000 + "}",  # deeply nested braces
        "</think>$\\frac{1}{" + "\\frac{1}{" * 2_000 + "2" + "}" * 2_001 + "$",
        "</think>\\boxed{10^{10^{10^{10^{10}}}}}",             # a tower of powers
        "</think>\\boxed{\\left( \\right. \\begin{matrix}",     # unbalanced LaTeX
        b"\xff\xfe\xfd</think>\\boxed{7}",                     # not UTF-8
        "</think>\\boxed{\x00\x01\x02}",
        "",
    ]
    random_strings = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(count - len(fixed))]
    return fixed + random_strings


@pytest.mark.slow
def test_ten_thousand_hostile_outputs_never_crash_or_hang() -> None:
    items = _hostile_strings(10_000)
    started = time.monotonic()
    with Grader(item_timeout_s=5.0) as grader:
        grades = [grader.grade(GradeItem(text, "7", "</think>")) for text in items]
    elapsed = time.monotonic() - started
    slowest = max(grades, key=lambda g: g.grade_s)
    statuses = {g.status.split(":")[0] for g in grades}
    print(f"\n10,000 hostile outputs graded in {elapsed:.1f} s; slowest item {slowest.grade_s:.2f} s "
          f"({slowest.status}); statuses {sorted(statuses)}")
    assert len(grades) == 10_000
    assert statuses <= {"ok", "timeout", "crash", "error"}
    assert slowest.grade_s < 5.0 + 31.0  # the timeout, plus a fresh worker's start on the first item
    assert grades[7].strict_correct  # the non-UTF-8 item still grades its final answer


def test_a_script_without_a_main_guard_is_refused_loudly_not_graded_wrong(tmp_path) -> None:
    import subprocess
    import sys

    body = ('from tts_utils.grading import GradeItem, Grader\n'
            'with Grader() as grader:\n'
            '    print("status:", grader.grade(GradeItem("so \\\\boxed{2}", "2", "</think>")).status)\n')
    (tmp_path / "unguarded.py").write_text(body)
    (tmp_path / "guarded.py").write_text("if __name__ == '__main__':\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    unguarded = subprocess.run([sys.executable, "unguarded.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert unguarded.returncode != 0 and "status:" not in unguarded.stdout
    assert "GraderStartError" in unguarded.stderr and '`if __name__ == "__main__":`' in unguarded.stderr
    guarded = subprocess.run([sys.executable, "guarded.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert guarded.returncode == 0 and "status: ok" in guarded.stdout, guarded.stderr[-2000:]


def test_a_grader_starved_of_cpu_grades_as_a_quiet_one(traces_dir, monkeypatch) -> None:
    """Seen in CI: beside two CPU engines, a correct 7B answer (MATH500 item 0, gold (3, pi/2)) was graded
    wrong: math-verify's limits are wall-clock alarms (2 s), and the grader waited for a core. Here each
    extraction first waits 2.5 s without using the CPU, as a starved process does: no limit may fire."""
    import math_verify.parser

    record = json.loads((traces_dir / "r1-distill-qwen-7b.math500-first100.t0.6.jsonl").open().readline())
    extract = math_verify.parser.extract_target_from_pred

    def starved(*args, **kwargs):
        time.sleep(2.5)
        return extract(*args, **kwargs)

    monkeypatch.setattr(math_verify.parser, "extract_target_from_pred", starved)
    grade = grade_in_process(GradeItem(record["output"], record["answer"], "</think>"))
    assert grade["status"] == "ok" and grade["strict_correct"] and grade["lenient_correct"], grade


def test_a_parse_that_spins_is_still_cut_at_its_cpu_seconds() -> None:
    from tts_utils.grading import CpuTimeout, cpu_limit

    with cpu_limit(0.5):
        time.sleep(0.8)  # waiting uses no CPU time: nothing fires
    started = time.perf_counter()
    with pytest.raises(CpuTimeout), cpu_limit(0.3):
        while True:
            pass
    assert time.perf_counter() - started < 5.0

