#!/usr/bin/env bash
# One-command GPU check for flamingo-eval: the gpu-marked tests, then an OpenFlamingo-3B-shaped bench.
#
#   tools/gpu_check.sh --out DIR            # on any machine with a CUDA GPU (about 4 minutes on an H200)
#   tools/gpu_check.sh --out DIR --dry-run  # the same code paths on the CPU with tiny shapes (in the test suite)
#
# Writes DIR/gpu_check.json (everything) and DIR/gpu_check.md (the tables), plus DIR/gpu-tests.xml and
# DIR/stages.txt. Every stage runs under its own time box, and each writes its part of the JSON as soon
# as it has it, so a stage that fails or hangs leaves the others' results. Exit code 0 only when every
# stage passed.
#
# A GPU machine without network: `make gpu-wheels` (tools/gpu_wheels.sh) fills .whl/ here with the pure-Python
# wheels the check needs that a stock PyTorch image may lack (hydra-core, omegaconf, antlr4, open_clip_torch,
# ftfy, wcwidth) and a copy of the SmolLM2 tokenizer; carry .whl along. They are installed into a
# temporary directory (never into the system's site-packages).
#
# Budget (expected seconds on one H200; time box in brackets):
#   wheels  install carried wheels                                   ~10  [60]
#   env     versions, GPU, 8192^3 bf16 matmul peak                   ~15  [60]
#   tests   pytest -m gpu tests/gpu (7 tests, CUDA init, tiny models) ~60  [180]
#   bench   build 2.6B-param random model ~60, warm-up ~10,
#           engine cold + steady (32 queries each) ~20, reference (8 queries) ~30  ~130  [330]
#   report  gpu_check.md                                               ~2  [30]
#   total                                                             ~220 [660 worst case; time boxes are caps]
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=""
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (use --out DIR [--dry-run])" >&2; exit 2 ;;
  esac
done
if [ -z "$OUT" ]; then
  echo "gpu_check.sh: --out DIR is required (where gpu_check.json and gpu_check.md go)" >&2
  exit 2
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
: > "$OUT/stages.txt"
rm -f "$OUT/gpu_check.json" "$OUT/gpu-tests.xml"

PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false CI=true
export FLAMINGO_EVAL_GPU_CHECK=1
FAILED=0

BOX=1  # time-box multiplier: a dry run on a small shared CPU is slower than the GPU run the boxes are sized for
[ "$DRY" -eq 1 ] && BOX=4

stage() {  # stage NAME TIMEBOX CMD...: run CMD under a time box, log its exit code and seconds
  local name="$1" limit=$(($2 * BOX)); shift 2
  local t0=$SECONDS
  echo "== [$name] started (time box ${limit}s): $*"
  timeout --kill-after=15 "$limit" "$@"
  local rc=$?
  echo "$name $rc $((SECONDS - t0))" >> "$OUT/stages.txt"
  echo "== [$name] exit code $rc after $((SECONDS - t0))s"
  [ "$rc" -eq 0 ] || FAILED=1
}

SITE="${TMPDIR:-/tmp}/flamingo-eval-gpu-site"
if [ "$DRY" -eq 0 ] && compgen -G ".whl/*.whl" > /dev/null; then
  stage wheels 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -f .whl/tokenizer/tokenizer.json ]; then
  export FLAMINGO_EVAL_TOKENIZER="$PWD/.whl/tokenizer"
fi

if [ "$DRY" -eq 1 ]; then
  export FLAMINGO_EVAL_GPU_CHECK_DEVICE=cpu
  FLAG=(--dry-run)
else
  export FLAMINGO_EVAL_GPU_CHECK_DEVICE=cuda
  FLAG=()
fi

stage env 60 "$PY" -m tools.gpu_check env --out "$OUT" "${FLAG[@]}"
stage tests 180 "$PY" -m pytest tests/gpu -m gpu -q -p no:cacheprovider -rfEs --junitxml="$OUT/gpu-tests.xml"
stage bench 330 "$PY" -m tools.gpu_check bench --out "$OUT" --budget-s $((290 * BOX)) "${FLAG[@]}"
stage report 30 "$PY" -m tools.gpu_check report --out "$OUT"
[ -f "$OUT/gpu_check.md" ] && cat "$OUT/gpu_check.md"
exit "$FAILED"
