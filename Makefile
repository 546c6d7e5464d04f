# The two README commands. Both create .venv when it is missing, install once (re-run only when
# setup.py or settings.ini change), and are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean-venv

install: $(STAMP)

$(STAMP): setup.py settings.ini
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first, pinned: an unpinned torch can pull a multi-GB CUDA build (see README)
	$(BIN)/python -m pip install -q torch==2.13.0 || $(BIN)/python -m pip install -q 'torch>=2.1,<2.14'
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## make demo: the main job on CPU, writes its figure and metrics to outputs/demo/
demo: $(STAMP)
	$(BIN)/flash-dmd demo --out outputs/demo

## make test: notebooks and library in sync, every notebook runs, pytest
test: $(STAMP)
	@before="$$(git status --porcelain -- nbs flash_dmd 2>/dev/null; git diff -- nbs flash_dmd 2>/dev/null | sha1sum)"; \
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean || exit 1; \
	after="$$(git status --porcelain -- nbs flash_dmd 2>/dev/null; git diff -- nbs flash_dmd 2>/dev/null | sha1sum)"; \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: nbdev_export / nbdev_clean changed files; edit the notebooks, run both, commit:"; \
	  git status --short -- nbs flash_dmd; exit 1; fi; \
	echo "ok: notebooks and flash_dmd/ are in sync and clean"
	@# two notebooks at a time, one thread each: small MLPs gain little from a 2nd thread and lose a lot to oversubscription
	PATH="$(CURDIR)/$(BIN):$$PATH" MPLBACKEND=Agg OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing
	PATH="$(CURDIR)/$(BIN):$$PATH" MPLBACKEND=Agg $(BIN)/python -m pytest tests -q

clean-venv:
	rm -rf $(VENV)
