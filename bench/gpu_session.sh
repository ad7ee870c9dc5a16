#!/usr/bin/env bash
# The prepared device check of issue 14, run ONCE on a GPU machine (at most ~9 minutes: every
# stage's timeout is cut to what is left of GPU_SESSION_BUDGET, 540 s by default):
#   here:   bash bench/gpu_wheels.sh            (once; fills .whl/)
#   device: run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=590)
# Prints and writes to $OUT (or ./gpu_out), one file per stage, in this order:
#   train_gan   goal 1: GAN step levers at 256 px, batch 64 (textbook, fp32, bf16, bf16+fused,
#               auto, compile, cudagraphs = compile_mode reduce-overhead): >= 2.0x textbook with
#               out err <= 0.02. cl, cl+bf16 and fused were measured before (issue 14): left out.
#   detect      goal 6: detector inference (plain, MRI) and training step in fp32 / bf16 /
#               channels_last / bf16+channels_last: which should `auto` pick
#   train_loop  goal 2: `mrigan train-gan`'s loop vs the step (>= 0.90 on long epochs)
#   pytest      the cuda-marked tests (trainer incl. CUDA graphs, resume, MRIGenerator, detector)
#   verdicts    each goal's verdict line (grep "issue 14 goal"), ready to paste into README
# Dry run on a CPU (no GPU, tiny sizes, the eager compile backend; tests the script, ~2 min on
# 2 cores; what it prints are not figures):
#   GPU_SESSION_DRY=1 PY=.venv/bin/python OUT=/tmp/gpu_dry bash bench/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
DRY=${GPU_SESSION_DRY:-0}
BUDGET=${GPU_SESSION_BUDGET:-540}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
if [[ $DRY != 1 ]] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi

stage() {  # stage NAME CAP RESERVE CMD...: CMD under a timeout of min(CAP, left - RESERVE) s
  local name=$1 cap=$2 reserve=$3; shift 3
  local left=$(( BUDGET - SECONDS - reserve ))
  local limit=$(( cap < left ? cap : left ))
  if (( limit < 15 )); then
    echo "== $name: skipped, budget spent (${SECONDS}s of ${BUDGET}s)" | tee "$OUT/$name.txt"
    return
  fi
  echo "== $name: timeout ${limit}s, at ${SECONDS}s: $*"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $(( SECONDS - t0 ))s$( (( rc == 124 || rc == 137 )) \
      && echo ' (TIMED OUT: rows above were measured, later ones were not)')" \
      | tee -a "$OUT/$name.txt"
}

GAN_VARIANTS=(textbook fp32 bf16 bf16+fused auto compile cudagraphs)  # compiled last: a timeout keeps the rest
if [[ $DRY == 1 ]]; then
  echo "DRY RUN on the CPU with tiny sizes: the figures below mean nothing"
  DEV=cpu
  GAN=(--sizes 32 --batches 2 --steps 1 --threads 1 --compile-backend eager)
  DET=(--size 64 --batch 4 --batches 1 --repeats 1 --generator-size 64 --generator-width 8
       --train-steps 1 --threads 1 --variants fp32 bf16 cl bf16+cl)
  LOOP=(--size 32 --batch 4 --workers 2 --steps 3 --warmup 1 --faces 8 --threads 1
        --set model.ngf=8 --set model.ndf=8)
else
  DEV=cuda
  GAN=(--sizes 256 --batches 64 --steps 20)
  DET=(--batch 64 --batches 10 --repeats 3 --train-steps 5)
  LOOP=(--size 256 --batch 64 --workers 8 --steps 60)
fi

{ nvidia-smi -L 2>&1 || echo "no nvidia-smi"; "$PY" -c "import torch; print('torch', \
torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"; \
} | tee "$OUT/device.txt"
#     name        cap  reserve (seconds kept for the later stages)
stage train_gan   240  250 "$PY" bench/train_gan.py --device $DEV "${GAN[@]}" \
      --variants "${GAN_VARIANTS[@]}"
stage detect      80   170 "$PY" bench/detect.py --device $DEV "${DET[@]}"
stage train_loop  120  60  "$PY" bench/train_loop.py --device $DEV --config configs/mri_gan.yaml \
      "${LOOP[@]}"
stage pytest      160  0   "$PY" -m pytest -q -m cuda -p no:cacheprovider \
      tests/mrigan/test_gan_speed.py tests/mrigan/test_device_inference.py \
      tests/detectors/test_detector_device.py
echo "== verdicts (issue 14; ${SECONDS}s in all)" | tee "$OUT/verdicts.txt"
for name in train_gan detect train_loop; do
  grep -h "^issue 14 goal" "$OUT/$name.txt" 2>/dev/null \
    || echo "$name: no verdict line (see the end of $OUT/$name.txt)"
done | tee -a "$OUT/verdicts.txt"
{ grep -h -E "^[0-9]+ [a-z]+.* in [0-9.]+s" "$OUT/pytest.txt" 2>/dev/null || echo "no summary"; } \
    | tail -1 | sed 's/^/cuda-marked tests: /' | tee -a "$OUT/verdicts.txt"
exit 0
