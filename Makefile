# The two commands of the README:  `make study`  and  `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.binsight-installed

.PHONY: setup study test

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

# Without a GPU: one process per CPU core, one thread each (torchrun); NPROC=K chooses (scripts/study.sh).
study: setup
	bash scripts/study.sh $(VENV) --out runs/default

test: setup
	bash scripts/setup.sh $(VENV) --test-system-deps
	$(PY) -m pytest -q
