"""The fast grid (batched accuracy pass, latency on a subset, prediction check) and the break-even
sweep's planning; the grid's engine path runs the real vLLM CPU engine on the tiny model."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tts_utils.config import StudyConfig
from tts_utils.errors import ConfigError
from tts_utils.store import RunFolder, atomic_write_json, load_study, read_records


def _grid(math500_path, **values) -> StudyConfig:
    return StudyConfig.create(study="grid", dataset=str(math500_path), num_problems=6, budgets=[32, 64],
                              batch_concurrency=6, latency_problems=4, cpu_kv_cache_gib=1,
                              extra_engine_args=["--enforce-eager"], **values)


def test_grid_parameters_are_checked_before_anything_starts() -> None:
    for values, message in (({"latency_problems": 4}, "needs batch_concurrency"),
                            ({"latency_problems": 8, "batch_concurrency": 8}, "smaller than num_problems"),
                            ({"prediction_tolerance": 0.0}, "prediction_tolerance"),
                            ({"placement": "slurm"}, "placement must be"),
                            ({"ray_address": "head:6379"}, "only used with placement: ray"),
                            ({"acceptance_lengths": [7]}, r"\[1, spec_tokens \+ 1 = 6\]"),
                            ({"acceptance_lengths": ["fast"]}, "finite numbers")):
        with pytest.raises(ConfigError, match=message):
            StudyConfig.create(**values)


def test_the_latency_subset_is_seeded_and_every_plan_shares_it(math500_path) -> None:
    from tts_utils.study.plan import BATCHED_METHOD, plan_runs

    config = _grid(math500_path)
    greedy, _ = plan_runs(config, "01_greedy")
    spec, _ = plan_runs(config, "03_spec")
    assert [p.method for p in greedy] == [BATCHED_METHOD, "baseline"]
    batched, latency = greedy
    assert batched.concurrency == 6 and not batched.latency_subset
    assert len(latency.latency_subset) == 4 and latency.latency_subset == spec[0].latency_subset
    assert len(latency.request_specs("one-pass", every_problem=False)) == 4
    assert len(latency.request_specs("one-pass")) == 6
    assert plan_runs(_grid(math500_path, seed=1), "01_greedy")[0][1].latency_subset != latency.latency_subset
    assert "latency_problems" in latency.identity() and "env" not in latency.identity()["engine"]


def test_a_failed_batch_check_makes_latency_runs_measure_every_problem(math500_path) -> None:
    """The fallback decision, from what the batched pass's folder records."""
    from tts_utils.study.plan import plan_runs
    from tts_utils.study.results import latency_scope

    batched, latency = plan_runs(_grid(math500_path), "01_greedy")[0]
    assert latency_scope(latency, latency.folder()) == (
        True, "every problem measured: no complete batched pass of this model to predict from")
    folder = batched.folder()
    folder.path.mkdir(parents=True)
    atomic_write_json(folder.run_file, {"identity": batched.identity()})
    for name in ("results.csv", "summary.csv"):
        (folder.path / name).write_text("a\n1\n")
    from tts_utils.store import file_sha256

    digests = {name: file_sha256(folder.path / name) for name in ("results.csv", "summary.csv")}
    folder.set_status("complete", sha256=digests, batch_check={"consistent": False, "mismatches": [{}]})
    every, why = latency_scope(latency, latency.folder())
    assert every and "differ from batch-1 tokens" in why
    folder.set_status("complete", sha256=digests, batch_check={"consistent": True, "mismatches": []})
    assert latency_scope(latency, latency.folder()) == (False, "4 problems measured, the others predicted")


def test_break_even_rates_follow_vllms_acceptance_length_schedule() -> None:
    from tts_utils.study.acceptance_sweep import rates_for_length

    assert rates_for_length(1.0, 5) == (0.0,) * 5
    assert rates_for_length(2.5, 5) == (1.0, 0.5, 0.0, 0.0, 0.0)
    assert rates_for_length(6.0, 5) == (1.0,) * 5
    for length in (1.25, 1.5, 2.0, 3.0, 4.5, 6.0):
        assert math.isclose(1 + sum(rates_for_length(length, 5)), length)
    with pytest.raises(ConfigError):
        rates_for_length(6.5, 5)


def test_the_break_even_sweep_is_refused_where_it_cannot_run(math500_path) -> None:
    from tts_utils.study.acceptance_sweep import plan_sweeps

    with pytest.raises(ConfigError, match="load_format: dummy"):
        plan_sweeps(StudyConfig.create(acceptance_lengths=[1.5, 2]))
    with pytest.raises(ConfigError, match="needs a GPU engine"):  # this machine has no GPU
        plan_sweeps(StudyConfig.create(load_format="dummy", acceptance_lengths=[1.5, 2], dataset=str(math500_path)))


def test_break_even_sweeps_of_different_depth_never_share_a_run(monkeypatch) -> None:
    """acceptance_requests (requests per length) names the sweep unless it is 1, the depth the first
    reference sweeps were measured at (their run names stay); more than the study has is refused.
    Planned as if on a GPU: the planning does not touch the engine."""
    import tts_utils.engine.server
    import tts_utils.study.plan
    from tts_utils.hardware import GPU, Hardware
    from tts_utils.study.acceptance_sweep import plan_sweeps, sweep_problems

    gpu = Hardware("test cpu", 16, 128.0, gpus=(GPU(0, "H200", 139.0),))
    monkeypatch.setattr(tts_utils.study.plan, "detect", lambda: gpu)
    monkeypatch.setattr(tts_utils.engine.server, "detect", lambda: gpu)

    def plan(**values):
        return plan_sweeps(StudyConfig.create(model="7b", load_format="dummy", dataset="builtin", num_problems=5,
                                              budgets=[1024, 2048], acceptance_lengths=[1.5, 2], **values))[0]

    one, three = plan(acceptance_requests=1), plan()
    assert one.acceptance == "synthetic: break-even sweep" and one.budgets == (1024,)
    assert three.acceptance.endswith("3 requests per length") and three.run_name != one.run_name
    assert len(sweep_problems(plan(batch_concurrency=4, latency_problems=2, acceptance_requests=2))) == 2
    with pytest.raises(ConfigError, match="acceptance_requests 3 > the 2 problems"):
        plan(batch_concurrency=4, latency_problems=2)
    with pytest.raises(ConfigError, match="acceptance_requests must be a positive integer"):
        plan(acceptance_requests=0)


def test_a_draft_with_another_vocabulary_size_gets_vllms_heterogeneous_vocabulary(math500_path) -> None:
    """R1-Distill 1.5B pads to 151,936 rows and 7B to 152,064 over one tokenizer: vLLM refuses
    that pair for draft_model unless use_heterogeneous_vocab is set, so the kit sets it."""
    from tts_utils.study.plan import plan_runs

    config = StudyConfig.create(model="7b", load_format="dummy", spec_method="draft_model", draft_model="1.5b",
                                dataset=str(math500_path), num_problems=1, budgets=[64], dry_run=True)
    engine_json = plan_runs(config, "03_spec")[0][0].engine.speculative.to_engine_json()
    assert '"use_heterogeneous_vocab": true' in engine_json
    same = StudyConfig.create(spec_method="draft_model", draft_model="tiny", dataset=str(math500_path),
                              num_problems=1, budgets=[64])
    assert "heterogeneous" not in plan_runs(same, "03_spec")[0][0].engine.speculative.to_engine_json()


@pytest.mark.engine
def test_batched_pass_subset_latency_and_prediction_check_on_the_cpu_engine(math500_path) -> None:
    """01: the batched pass (6 problems at once) equals batch-1 tokens on the checked problems; the
    latency run takes the batched pass's engine (same configuration on a CPU); its step-cost check is held to 0.1% (CPU chunk timing is bursty), misses, and
    the run measures every problem in the same engine. 03: with a loose tolerance the n-gram run
    measures 4 problems and predicts the other 2 from the batched tokens, replayed."""
    from tts_utils.study.plan import plan_runs
    from tts_utils.study.sweep import run_sweep

    strict = _grid(math500_path, prediction_tolerance=0.001)
    batched, latency = plan_runs(strict, "01_greedy")[0]
    assert run_sweep(strict, "01_greedy")["outcome"].tolist() == ["completed", "completed"]
    check = batched.folder().status()["batch_check"]
    assert check["consistent"] and len(check["checked"]) == 3, check
    status = latency.folder().status()
    assert not status["prediction_check"]["passed"]
    assert status["latency_scope"].startswith("every problem measured: the step-cost prediction missed")
    assert len(read_records(latency.folder().requests_file)) == 6
    # one engine for both: on a CPU the batched pass and the latency run have one engine configuration
    kept = read_records(latency.folder().segments_file)[-1]
    assert kept["engine_kept_from"] == batched.run_name and kept["engine_startup_s"] is None, kept
    assert f"the engine of run {batched.run_name}" in latency.folder().engine_log.read_text()
    assert read_records(batched.folder().segments_file)[-1]["engine_startup_s"] > 0

    loose = _grid(math500_path, prediction_tolerance=0.99)
    spec = plan_runs(loose, "03_spec")[0][0]
    assert run_sweep(loose, "03_spec")["outcome"].tolist() == ["completed"]
    status = spec.folder().status()
    assert status["prediction_check"]["passed"], status["prediction_check"]
    assert status["latency_scope"] == "4 problems measured, the others predicted"
    assert len(read_records(spec.folder().requests_file)) == 4
    rows = pd.read_csv(spec.folder().results_file)
    predicted = rows[rows["latency_source"] == "predicted"]
    assert len(predicted) == 2 * 2 and set(predicted["problem_id"]).isdisjoint(spec.latency_subset)
    assert (predicted["e2e_latency_s"] > 0).all() and predicted["e2e_latency_s"].notna().all()
    graded = pd.read_csv(batched.folder().results_file).set_index(["problem_id", "budget_tokens"])
    for row in predicted.itertuples():
        source = graded.loc[(row.problem_id, row.budget_tokens)]
        assert row.output_tokens == source["output_tokens"] and row.grade_status == source["grade_status"]
    summary = pd.read_csv(spec.folder().summary_file)
    assert (summary["measured_fraction"] == 4 / 6).all()

    study = load_study("grid")
    assert set(study.batched["method"]) == {"baseline-batched"}
    assert "baseline-batched" not in set(study.rows["method"]) and len(study.rows) == 6 * 2 + 6 * 2
    assert RunFolder(spec.folder().path).is_complete()
