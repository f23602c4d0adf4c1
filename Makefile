# Entry points: `make reproduce`, `make test` and `make site` (the website of the committed results;
# make reproduce builds it too). All create .venv/ first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pdd-installed

.PHONY: env test reproduce length-study fair-setup test-pool site benchmark clean-env

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

env: $(STAMP)

# the malloc settings of make reproduce's jobs (pdd/procenv.py); --durations: the 25 slowest tests, to keep the suite in budget
test: env
	GLIBC_TUNABLES="$$($(PY) -m pdd.procenv)" PDD_SMOKE=1 $(PY) -m pytest -q --durations=25 tests notebooks --nbval-lax

# ROWS=pdd: the comparison's rows without the seed papers' methods (KDSR, HR-aware): a third less training
ROWS ?= default
reproduce: env
	$(PY) -m pdd.reproduce --rows $(ROWS)

# the length study (issue 25; README): static/EMA PDD and their controls under the fair set-up, 3,000 iterations
# after the D-only warm-up, 2 seeds, then notebook 11. Hours on a 2-core CPU; run it again after any
# interruption: it resumes where it stopped
length-study: env
	$(PY) -m pdd.reproduce --study length

# the fair set-up's decisions (GAN stage length, D's start) from the starting models and the fine-tune control;
# then R4, the second candidate GAN stage (GAN weight 0.01), and R5, the third (R1's stage trained on to 1,200
# iterations from its 600-iteration checkpoints; results/Synth-ISO/scratch/fair_setup/RULES.md)
fair-setup: env
	$(PY) -m pdd.experiments.decisions --seeds 0 1
	$(PY) -m pdd.experiments.decisions --seeds 0 1 --gan-weight 0.01
	$(PY) -m pdd.experiments.decisions --seeds 0 1 --gan-iters 1200

# the premise on more pictures (issue 25, item 4): the starting models on 128-px tiles of the built-in test
# photos and on the optional test pool of photographs (`sudo apt install mate-backgrounds`), CIs by tile and by photo
test-pool: env
	$(PY) -m pdd.experiments.test_pool --seeds 0 1

# site/ from the executed notebooks and results/ (nothing is executed); open site/index.html
site: env
	$(PY) -m pdd.site --out site

benchmark: env
	$(PY) benchmarks/loss_step.py

clean-env:
	rm -rf $(VENV)
