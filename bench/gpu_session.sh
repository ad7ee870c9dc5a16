#!/usr/bin/env bash
# The prepared device check of issue 14, run ONCE on a GPU machine (about 8 minutes):
#   here:   bash bench/gpu_wheels.sh            (once; fills .whl/)
#   device: run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=560)
# Prints and writes to $OUT (or ./gpu_out): the GAN step levers at 256 px batch 64 (goal 1:
# >= 2.0x the textbook step, out err <= 0.02), the loop vs the step (goal 2: >= 0.90), and the
# cuda-marked tests (trainer, resume, MRIGenerator and detector on CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
  | tee -a "$OUT/device.txt"
timeout 200 python3 bench/train_gan.py --device cuda --sizes 256 --batches 64 --steps 20 \
  2>&1 | tee "$OUT/train_gan.txt"
timeout 150 python3 bench/train_loop.py --device cuda --config configs/mri_gan.yaml \
  --size 256 --batch 64 --workers 8 --steps 60 2>&1 | tee "$OUT/train_loop.txt"
timeout 150 python3 -m pytest -q -m cuda -p no:cacheprovider tests/mrigan/test_gan_speed.py \
  tests/mrigan/test_device_inference.py tests/detectors/test_detector_device.py \
  2>&1 | tee "$OUT/pytest_cuda.txt"
