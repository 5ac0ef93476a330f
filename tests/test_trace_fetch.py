"""The public traces by name: fetched from a local server, sha256-checked, local copies offline."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from tts_utils.errors import ConfigError
from tts_utils.speculation.trace_fetch import PUBLIC_TRACES, fetch, resolve_entry, sha256_of

NAME = "r1-distill-qwen-7b.math500-first20"


@pytest.fixture
def server(tmp_path):
    """A file server on 127.0.0.1 laid out like raw.githubusercontent.com: repo/commit/path."""
    root = tmp_path / "www"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _publish(root: Path, data: bytes) -> None:
    trace = PUBLIC_TRACES[NAME]
    target = root / trace.repo / trace.commit / trace.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TTS_TRACES_DIR", raising=False)
    monkeypatch.delenv("TTS_TRACES_URL", raising=False)


def test_pinned_hashes_match_the_shared_copies(traces_dir):
    # ../shared holds the MATH500 sets; the GSM8K sets were copied page by page the same way (not shared)
    shared = [trace for trace in PUBLIC_TRACES.values() if (traces_dir / trace.file).exists()]
    assert {trace.file for trace in shared} >= {trace.file for trace in PUBLIC_TRACES.values() if "math500" in trace.file}
    for trace in shared:
        assert sha256_of(traces_dir / trace.file) == trace.sha256, trace.file


def test_a_public_gsm8k_set_replays_on_its_own_problems(server, clean_env, monkeypatch, outputs_dir,
                                                        r1_tokenizer_path) -> None:
    """A pinned set whose lines carry GSM8K's fields (question, a worked answer ending in #### N)
    replays and grades against those problems, whatever the study's dataset, with no renaming."""
    import dataclasses
    import hashlib
    import json

    from tts_utils.config import StudyConfig
    from tts_utils.speculation import trace_fetch
    from tts_utils.speculation.replay_sets import run_replays

    lines = [{"idx": i, "question": f"Ann has {i + 2} apples and buys {i + 1} more. How many apples now?",
              "answer": f"She has {i + 2} + {i + 1} = {2 * i + 3}.\n#### {2 * i + 3}",
              "output": f"{i + 2} plus {i + 1} is {2 * i + 3}.\n</think>\n\nThe answer is $\\boxed{{{2 * i + 3}}}$.",
              "finish_reason": "stop"} for i in range(3)]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    name = "r1-distill-qwen-1.5b.gsm8k-first100"
    pinned = dataclasses.replace(PUBLIC_TRACES[name], sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(trace_fetch.PUBLIC_TRACES, name, pinned)
    root, url = server
    (root / pinned.repo / pinned.commit / pinned.path).parent.mkdir(parents=True)
    (root / pinned.repo / pinned.commit / pinned.path).write_bytes(data)
    monkeypatch.setenv("TTS_TRACES_URL", url)
    config = StudyConfig.create(study="gsm8k", dataset="builtin", trace_budgets=[8, 64], trace_tokenizer=str(r1_tokenizer_path),
                                trace_sets=[f"1.5b=public:{name}"])
    summary = run_replays(config).set_index("budget_tokens")
    assert (summary["traces"] == 3).all() and summary.loc[64, "accuracy_strict"] == 1.0


def test_fetch_from_a_server_then_from_the_cache(server, traces_dir, clean_env, tmp_path, monkeypatch):
    root, url = server
    _publish(root, (traces_dir / PUBLIC_TRACES[NAME].file).read_bytes())
    path = fetch(NAME, base_url=url)
    assert path == tmp_path / "cache" / "traces" / PUBLIC_TRACES[NAME].file and sha256_of(path) == PUBLIC_TRACES[NAME].sha256
    monkeypatch.setenv("TTS_TRACES_URL", "http://127.0.0.1:9")  # nothing listens: the cache answers
    assert fetch(NAME) == path
    assert resolve_entry(f"public:{NAME}") == str(path)


def test_a_sha256_mismatch_is_refused(server, traces_dir, clean_env, tmp_path):
    root, url = server
    data = (traces_dir / PUBLIC_TRACES[NAME].file).read_bytes()
    _publish(root, data[:-2] + b"x\n")
    with pytest.raises(ConfigError, match="sha256 .* does not match the pinned .*refusing it"):
        fetch(NAME, base_url=url)
    assert not list((tmp_path / "cache" / "traces").glob("*"))  # nothing kept


def test_offline_falls_back_to_a_local_copy(traces_dir, clean_env, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TTS_TRACES_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="could not be fetched .* set TTS_TRACES_DIR"):
        fetch(NAME)
    assert resolve_entry(f"public?:{NAME}") is None and "real traces skipped" in capsys.readouterr().out
    monkeypatch.setenv("TTS_TRACES_DIR", str(traces_dir))
    assert fetch(NAME) == traces_dir / PUBLIC_TRACES[NAME].file
    damaged = tmp_path / "local"
    damaged.mkdir()
    (damaged / PUBLIC_TRACES[NAME].file).write_text("{}\n")
    monkeypatch.setenv("TTS_TRACES_DIR", str(damaged))
    with pytest.raises(ConfigError, match="sha256"):
        resolve_entry(f"public?:{NAME}")  # a wrong local copy is an error even when optional
    with pytest.raises(ConfigError, match="unknown public trace set"):
        fetch("r1-distill-qwen-32b.math500")


def test_public_and_proxy_trace_sets_in_a_study(traces_dir, r1_tokenizer_path, math500_path, outputs_dir,
                                                clean_env, monkeypatch):
    """03_spec's replays: a public set by name (local copy), and 14B standing in with 7B's traces."""
    from tts_utils.config import StudyConfig
    from tts_utils.report.modelled import load_replay_sets
    from tts_utils.speculation.replay_sets import replayed_rates, run_replays

    monkeypatch.setenv("TTS_TRACES_DIR", str(traces_dir))
    config = StudyConfig.create(study="proxy", model="7b,14b", load_format="dummy", dataset=str(math500_path),
                                trace_sets=[f"7b=public:{NAME}", "14b=proxy:7b"], trace_tokenizer=str(r1_tokenizer_path),
                                trace_budgets=[1024, 4096])
    summary = run_replays(config).set_index(["model", "budget_tokens"])
    assert summary.loc[("7b", 4096), "accuracy_strict"] > 0 and summary.loc[("14b", 4096), "accuracy_strict"] != summary.loc[("14b", 4096), "accuracy_strict"]
    assert summary.loc[("14b", 4096), "tokens_per_step"] == summary.loc[("7b", 4096), "tokens_per_step"]
    assert replayed_rates("proxy", "14b", 5, 1, 4)[0] == replayed_rates("proxy", "7b", 5, 1, 4)[0]
    proxy = next(r for r in load_replay_sets("proxy") if r["model"] == "14b")
    assert proxy["proxy_of"]["model"] == "7b" and "strict_correct" not in proxy["rows"]
    with pytest.raises(ConfigError, match="replays no trace set of '1.5b'"):
        run_replays(StudyConfig.create(study="proxy2", model="14b", load_format="dummy", trace_sets=["14b=proxy:1.5b"]))


def _smoke_trace_sets() -> list[str]:
    import yaml

    from tts_utils.paths import REPO_ROOT

    return yaml.safe_load((REPO_ROOT / "params" / "smoke.yaml").read_text())["trace_sets"]


def test_the_embedded_default_replays_its_own_runs_and_optional_public_sets() -> None:
    """Never an error offline: every public entry of smoke.yaml is optional, and its own runs stay."""
    entries = _smoke_trace_sets()
    assert entries[0] == "own" and len(entries) == 5  # MATH500 and GSM8K sets of 1.5B and 7B
    assert all("=public?:" in entry for entry in entries[1:])
    assert sorted(entry.split(".")[-1] for entry in entries[1:]) == ["gsm8k-first100"] * 2 + ["math500-first100"] * 2


def test_offline_without_a_copy_the_public_sets_are_skipped_with_a_note(clean_env, monkeypatch, capsys) -> None:
    """No network, no local copy: each optional public set is one line, and 03's replay step goes on
    (the study has no greedy run yet, so ``own`` has nothing either and says so)."""
    from tts_utils.config import StudyConfig
    from tts_utils.speculation.replay_sets import run_replays

    monkeypatch.setenv("TTS_TRACES_URL", "http://127.0.0.1:9")
    config = StudyConfig.create(study="offline", trace_sets=_smoke_trace_sets(), dataset="builtin", trace_limit=5)
    assert run_replays(config).empty
    notes = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(notes) == len(_smoke_trace_sets()) == 5, notes
    assert "no complete greedy TP1 run in study 'offline'" in notes[0]
    assert all(note.startswith("!! real traces skipped:") and "set TTS_TRACES_DIR" in note for note in notes[1:])


def test_offline_without_a_tokenizer_the_sets_are_skipped_fast(traces_dir, clean_env, monkeypatch, capsys,
                                                               tmp_path) -> None:
    """A local copy of the traces but no tokenizer and no hub: skipped in seconds, naming the variable."""
    import time

    from tts_utils.config import StudyConfig
    from tts_utils.speculation.replay_sets import run_replays

    monkeypatch.setenv("TTS_TRACES_DIR", str(traces_dir))
    monkeypatch.delenv("TTS_TRACE_TOKENIZER", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache
    start = time.monotonic()
    assert run_replays(StudyConfig.create(study="notok", trace_sets=_smoke_trace_sets()[1:])).empty
    assert time.monotonic() - start < 10
    notes = capsys.readouterr().out
    assert notes.count("!! real traces of") == 2 and "set trace_tokenizer=DIR or TTS_TRACE_TOKENIZER=DIR" in notes
    config = StudyConfig.create(study="notok", trace_sets=["1.5b=public:r1-distill-qwen-1.5b.math500-first100"])
    with pytest.raises(ConfigError, match="hub is unreachable"):
        run_replays(config)  # a required set is an error


def test_public_sets_carry_their_problems_and_trace_limit_cuts_them(traces_dir, r1_tokenizer_path, clean_env,
                                                                   monkeypatch, outputs_dir) -> None:
    """The R-KV files hold MATH500's fields, so they replay on a machine whose dataset is the kit's
    built-in problems; ``trace_limit`` keeps the first N traces and names the replay apart."""
    import json

    from tts_utils.config import StudyConfig
    from tts_utils.speculation.replay_sets import run_replays

    monkeypatch.setenv("TTS_TRACES_DIR", str(traces_dir))
    monkeypatch.setenv("TTS_TRACE_TOKENIZER", str(r1_tokenizer_path))
    config = StudyConfig.create(study="limited", dataset="builtin", trace_limit=4, trace_budgets=[1024, 16384],
                                trace_sets=["1.5b=public?:r1-distill-qwen-1.5b.math500-first100"])
    summary = run_replays(config).set_index("budget_tokens")
    assert (summary["traces"] == 4).all() and summary.loc[16384, "accuracy_strict"] >= summary.loc[1024, "accuracy_strict"]
    (folder,) = (outputs_dir / "replays" / "limited").iterdir()
    identity = json.loads((folder / "replay.json").read_text())["identity"]
    assert identity["trace_limit"] == 4 and identity["traces"] == 4
    with pytest.raises(ConfigError, match="trace_limit must be >= 0"):
        StudyConfig.create(trace_limit=-1)
