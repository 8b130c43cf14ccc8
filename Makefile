# Two commands for a newcomer: `make demo` and `make test`. Each sets up .venv first, with what it needs:
#   make demo        samkit + the `demo` extra (OpenCV, for the demo's overlay.mp4)
#   make test        samkit + the `dev` extra: the test tools, every optional package and the official
#                    sam2==1.1.0 package (the test oracle, built with SAM2_BUILD_CUDA=0)
# Each install is redone when pyproject.toml changes (its stamp carries the file's checksum).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(HASH)

.PHONY: demo test test-fast setup setup-demo clean

$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[demo]"
	rm -f $(VENV)/.installed-demo-*
	touch $(DEMO_STAMP)

# dev holds every package of demo, so a test set-up serves the demo too
$(DEV_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(DEV_STAMP) $(DEMO_STAMP)

setup-demo: $(DEMO_STAMP)

setup: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/samkit demo --out demo_out

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

# everyday work: no slow test, no comparison with the official package
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not parity" --durations=10

clean:
	rm -rf $(VENV) demo_out
