"""Does transformers' "incorrect regex pattern ... fix_mistral_regex" warning matter for R1-Distill-Qwen?

transformers 5.x warns when it loads a tokenizer from a local folder whose config.json names no
``transformers_version`` (the kit's shipped shapes, hence every folder ``random_weights`` writes),
guessing an old Mistral tokenizer. This loads the R1-Distill-Qwen tokenizer from such a folder with
``fix_mistral_regex`` off (what the kit passes) and on (what the warning advises), re-tokenizes the
real traces' outputs, and prints how many match the token counts their generator recorded.

    python benchmarks/tokenizer_regex_check.py TOKENIZER_DIR TRACES.jsonl [...]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from transformers import AutoTokenizer, __version__

from tts_utils.paths import MODEL_SHAPES_DIR


def main(tokenizer_dir: str, *trace_files: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(Path(tokenizer_dir) / name, folder)
        shutil.copy2(MODEL_SHAPES_DIR / "r1-distill-qwen-1.5b" / "config.json", folder)
        tokenizers = {flag: AutoTokenizer.from_pretrained(folder, fix_mistral_regex=flag) for flag in (False, True)}
    print(f"transformers {__version__}")
    for path in trace_files:
        traces = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        for flag, tokenizer in tokenizers.items():
            counts = [len(tokenizer(t["output"], add_special_tokens=False)["input_ids"]) for t in traces]
            # The recorded count includes the end-of-sequence token when the model stopped.
            recorded = [t["output_tokens"] - (t.get("finish_reason") == "stop") for t in traces]
            same = sum(a == b for a, b in zip(counts, recorded))
            print(f"{Path(path).name}: fix_mistral_regex={flag}: {same}/{len(traces)} outputs re-tokenize to the "
                  f"recorded count; {sum(counts):,} tokens against {sum(recorded):,} recorded")


if __name__ == "__main__":
    main(*sys.argv[1:])
