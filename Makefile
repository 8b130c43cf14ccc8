# Two commands for a newcomer: `make demo` and `make test`. Each sets up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/samkit demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

# everyday work: no slow test, no comparison with the official package
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not parity" --durations=10

clean:
	rm -rf $(VENV) demo_out
