# One-command set-up: each target creates .venv at the repository root when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo lint format clean bench-fairchem bench-model fairchem-fixtures fairchem-parity tiny-model conservation-study bench-relax bench-screen bench-phonons bench-kappa gpu-wheels

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# CPU torch first: a bare "torch" requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# Everything: the unit lane (tests/unit/<layer>) and the integration lane (whole flows)
test: $(STAMP)
	$(BIN)/python -m pytest -q

# The unit lane without the tests marked slow: about a minute on 2 cores
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit -m "not slow"

demo: $(STAMP)
	$(BIN)/python examples/demo.py --store demo-results --report report.html

# ruff, and the layers and no-cycles contracts of pyproject.toml ([tool.importlinter])
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# fairchem-core's eSEN for the model-speed comparison, in its own venv (not part of make test)
.venv-fairchem/.installed:
	test -x .venv-fairchem/bin/python || $(PYTHON) -m venv .venv-fairchem
	.venv-fairchem/bin/python -m pip install --quiet "torch==2.13.0"
	.venv-fairchem/bin/python -m pip install --quiet "fairchem-core==2.24.0"
	touch .venv-fairchem/.installed

# fairchem-core 1.10 (the published eSEN-30M files' format) pins torch~=2.4 and imports
# torch_scatter: installed without its pins beside torch 2.13, with import-time stand-ins
FAIRCHEM1_DEPS := ase "e3nn>=0.5" hydra-core lmdb numba "numpy<2" orjson pydantic pymatgen \
	pyyaml requests submitit torch-geometric torchtnt tqdm huggingface_hub tensorboard wandb
.venv-fairchem1/.installed:
	test -x .venv-fairchem1/bin/python || $(PYTHON) -m venv .venv-fairchem1
	.venv-fairchem1/bin/python -m pip install --quiet "torch==2.13.0"
	.venv-fairchem1/bin/python -m pip install --quiet --no-deps "fairchem-core==1.10.0"
	.venv-fairchem1/bin/python -m pip install --quiet $(FAIRCHEM1_DEPS)
	touch .venv-fairchem1/.installed

# The committed test fixtures: eSEN checkpoints fairchem itself writes (1.x and 2.x formats,
# random weights) and fairchem's own energies, forces and stresses for them
fairchem-fixtures: .venv-fairchem/.installed .venv-fairchem1/.installed
	PYTHONPATH=benchmarks/fairchem1_shims .venv-fairchem1/bin/python \
		benchmarks/_fairchem_write.py --out tests/data/fairchem/v1
	.venv-fairchem/bin/python benchmarks/_fairchem_write.py --out tests/data/fairchem/v2

# fairchem's eSEN against esen-flows on checkpoints of new seeds and the published shapes
# (30M-OAM, 30M-MP) in both formats; minutes on 2 cores. Not part of make test.
fairchem-parity: $(STAMP) .venv-fairchem/.installed .venv-fairchem1/.installed
	$(BIN)/python benchmarks/fairchem_parity.py

bench-fairchem: $(STAMP) .venv-fairchem/.installed
	$(BIN)/python benchmarks/model_speed.py

bench-model: $(STAMP)
	$(BIN)/python benchmarks/model_speed.py

# Relaxation throughput against atomate2's ForceFieldRelaxMaker, a plain ASE loop and torch-sim's
# batched FIRE (torch-sim-atomistic 0.3.0 on Python 3.11; 0.6 needs 3.12). Not part of make test.
bench-relax: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/relax_throughput.py

# PhononMaker against atomate2's forcefield PhononMaker, 20 structures with esen-emt-tiny in
# float64 (about 5 minutes on 2 cores; --quick: 4 structures). Not part of make test.
bench-phonons: $(STAMP)
	$(BIN)/python benchmarks/phonons.py

# esen-emt-tiny's kappa SRME against EMT, and the maker against phono3py driven directly
bench-kappa: $(STAMP)
	$(BIN)/python benchmarks/kappa.py

# A whole screen at 1,000, 3,000 and 10,000 structures with EMT and esen-emt-tiny on the embedded
# store: wall time, peak memory, jobs, store size, cost per structure. Hours on 2 cores; --quick
# (50, 100, 200) takes about a minute for EMT. Not part of make test.
bench-screen: $(STAMP)
	$(BIN)/python benchmarks/screen_scaling.py

# The wheels a lent GPU machine lacks (Python 3.12), into .whl/ for the device tool to carry;
# then `bash benchmarks/gpu_run.sh ...` there (benchmarks/README.md). Not part of make test.
gpu-wheels: $(STAMP)
	$(BIN)/python benchmarks/gpu_wheels.py

# Re-make the shipped esen-emt-tiny (and its direct twin) from scratch: EMT data, two stages,
# test errors; about an hour on 2 cores. Resumes when interrupted.
tiny-model: $(STAMP)
	$(BIN)/esen-flows train --out runs/esen-emt-tiny
	cp runs/esen-emt-tiny/esen-emt-tiny.pt runs/esen-emt-tiny/esen-emt-tiny-direct.pt esen_flows/zoo/

# The model card's NVE table and plot (conservative model against its direct twin).
conservation-study: $(STAMP)
	$(BIN)/python examples/conservation_study.py --plot esen_flows/zoo/nve-drift.png

clean:
	rm -rf demo-results report.html .pytest_cache
