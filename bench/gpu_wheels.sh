#!/usr/bin/env bash
# Fetch, on the development machine, the wheels that the GPU machine's python3 lacks (issue 14),
# into .whl/ (git-ignored). The device machine has torch, torchvision, scikit-image, numba,
# safetensors, tensorboard, opencv, pytest; it reaches no package index. PyAV is too big to carry:
# the device checks use PNG / synthetic data only. efficientnet_pytorch has no wheel: built here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
      --platform manylinux_2_24_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64
      --platform manylinux_2_35_x86_64 --platform any)
for spec in kornia==0.9.0 kornia_rs==0.2.0 albumentations==2.0.8 albucore==0.0.24 \
            pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 \
            typing_inspection==0.4.5 simsimd==6.5.16 stringzilla==5.3.2 facenet-pytorch==2.5.3; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${plat[@]}" -d .whl "$spec"
done
"$PY" -m pip wheel -q --no-deps -w .whl efficientnet_pytorch==0.7.1
ls -l .whl
