#!/usr/bin/env bash
# Run a command on a lent GPU machine (the device tool), from the repo root, with what the kit needs
# there and cannot download: vLLM from the carried site bundle (.bundle/site.tar.xz, built by
# ../shared/gpu/build_site_bundle.py), papermill/nbconvert/ipykernel/math-verify from carried wheels
# (.whl/), traces and tokenizer (.devdata/data.tar.xz), earlier run folders and replays (.devdata/state.tar.xz),
# and this checkout's newest commits (.devdata/head.bundle: `git bundle create .devdata/head.bundle
# BASE..main`), so that runs record the commit they ran and not "uncommitted changes".
# Usage: benchmarks/on_device.sh COMMAND [ARGS...]   (carry .bundle, .whl and .devdata, all three
# ignored through .git/info/exclude; together with the tracked files they must stay under 64 MiB).
# Preparing them here (2026-12-06: bundle 38 MiB, wheels 4.3 MiB, data 1.6 MiB):
#   .whl: pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64
#         --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d /tmp/w papermill nbconvert
#         nbformat ipykernel "math-verify[antlr4_13_2]" ipywidgets, then copy the wheels the device image and the
#         bundle lack (not sympy, mpmath, pyzmq, pyyaml, pygments, jinja2, markupsafe, jsonschema*,
#         referencing, rpds_py, attrs, psutil, tqdm, click, packaging, typing_extensions, requests and
#         its deps, python_dateutil, tzdata; debugpy and jedi are optional and left out for size; of
#         ipywidgets only its own wheel: tqdm imports it, the front-end packages are not needed headless)
#   .devdata/data.tar.xz: tar cJf of traces/ (../shared/data/traces/*.jsonl) and tokenizer/
#         (../shared/tokenizers/r1-distill-qwen)
set -u
if [ -f .devdata/head.bundle ]; then
  git fetch -q .devdata/head.bundle main:refs/remotes/local/main && git reset -q local/main
fi
echo "== commit $(git rev-parse --short HEAD), $(git status --porcelain --untracked-files=no | wc -l) files changed"
# A call on a machine still warm from the previous one finds all of this in place: it keeps its
# /tmp and its outputs/, whose run folders are newer than the carried state and must not be
# overwritten by it.
[ -f /tmp/site/.unpacked ] || { python3 -c "import tarfile; tarfile.open('.bundle/site.tar.xz', 'r:xz').extractall('/tmp/site')" \
  && touch /tmp/site/.unpacked; } || exit
if compgen -G ".whl/*.whl" > /dev/null && [ ! -d /tmp/nb ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/nb .whl/*.whl || exit
fi
mkdir -p /tmp/devdata outputs
[ ! -f .devdata/data.tar.xz ] || [ -d /tmp/devdata/traces ] || tar xJf .devdata/data.tar.xz -C /tmp/devdata || exit
if [ -d outputs/runs ]; then echo "== warm machine: its outputs/ are kept, the carried state is not unpacked"
elif compgen -G ".devdata/state.tar.*" > /dev/null; then tar xf .devdata/state.tar.* -C outputs || exit; fi
export PYTHONPATH=/tmp/site:/tmp/nb VLLM_USE_FLASHINFER_SAMPLER=0 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
  NVSHMEM_DISABLE_NVLS=1 VLLM_ALLREDUCE_USE_SYMM_MEM=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
  TTS_TRACES_DIR=/tmp/devdata/traces TTS_TRACE_TOKENIZER=/tmp/devdata/tokenizer \
  JUPYTER_PATH=/tmp/nb/share/jupyter  # nbconvert's templates, installed with --target beside it
"$@"
