#!/usr/bin/env bash
# Prepare .whl/ for tools/gpu_check.sh on a GPU machine that has PyTorch but no network (`make gpu-wheels`).
#
# Downloads, for Python 3.12, the pure-Python wheels the check imports that a stock PyTorch/CUDA image
# may lack — hydra-core, omegaconf, antlr4-python3-runtime (sdist only: built into a wheel here),
# open_clip_torch, ftfy, wcwidth — at the versions of this checkout's environment, and copies the
# SmolLM2 tokenizer (tokenizer files only, no weights) to .whl/tokenizer. .whl/ is git-ignored; carry it
# to the GPU machine next to the checkout (a few MB). Needs PyPI access here, none there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
PKGS=(hydra-core omegaconf open_clip_torch ftfy wcwidth)

mkdir -p .whl
rm -rf .whl/*.whl .whl/tokenizer
pins=()
for p in "${PKGS[@]}"; do
  pins+=("$p==$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p")")
done
echo "downloading ${pins[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py -d .whl "${pins[@]}"
antlr="antlr4-python3-runtime==$("$PY" -c "import importlib.metadata as m; print(m.version('antlr4-python3-runtime'))")"
echo "building $antlr (published as an sdist only)"
"$PY" -m pip wheel -q --no-deps -w .whl "$antlr"

"$PY" - <<'PY'
import shutil
from pathlib import Path

from flamingo_eval.models.assets import smollm2_dir

src, dst = smollm2_dir(), Path(".whl/tokenizer")
dst.mkdir(parents=True)
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
    if (src / name).exists():
        shutil.copy2(src / name, dst / name)
from transformers import AutoTokenizer

assert len(AutoTokenizer.from_pretrained(dst)) > 49000, "the copied tokenizer does not load"
PY
ls -la .whl .whl/tokenizer
du -sh .whl
