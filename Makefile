# The two commands of the README: `make demo` (set up, run the default workflow, write the report)
# and `make test` (set up, run every test). Both install what they need on a fresh Debian machine.

VENV := .venv
PYTHON := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= all

.PHONY: demo test setup system-packages sweeps frontier report results-doc

demo: setup
	$(SNAKEMAKE) --cores $(CORES)
	$(SNAKEMAKE) --report results/report.html
	@echo "Tables: results/tables/  Figures: results/figures/  Report: results/report.html"

# Two pytest workers (pytest-xdist), one test file per worker at a time (--dist loadscope keeps a
# file's module-scoped runs on one worker); the tiny DAG run is shared between them.
TEST_WORKERS ?= 2

test: setup
	$(VENV)/bin/pytest -ra --durations=15 -n $(TEST_WORKERS) --dist loadscope

sweeps: setup
	$(SNAKEMAKE) --cores $(CORES) sweeps

frontier: setup
	$(SNAKEMAKE) --cores $(CORES) frontier

# docs/results.md and docs/frontier.md are the pages the rules wrote for the default run and the
# frontier target (run that first); the README's run times are spliced from them. No number in
# them is typed by hand.
results-doc: setup
	$(SNAKEMAKE) --cores $(CORES) results/results.md
	cp results/results.md docs/results.md
	if [ -f results/frontier.md ]; then cp results/frontier.md docs/frontier.md; fi
	if [ -f results/sweeps.md ]; then cp results/sweeps.md docs/sweeps.md; fi
	$(PYTHON) -m packd.results_doc README.md docs/results.md docs/frontier.md docs/sweeps.md

report: setup
	$(SNAKEMAKE) --report results/report.html

setup: system-packages $(VENV)/.installed

# clang traces the kernels (SanitizerCoverage; llvm's llvm-link lets the hooks be inlined),
# valgrind is the second tracer, gcc (cc) builds ROAST's C kernels, graphviz draws the rule
# graph; slurm and munge let the tests bring up a real single-node cluster.
system-packages:
	@missing=""; \
	for tool in cc clang llvm-link valgrind dot slurmctld slurmd sbatch munged; do \
		command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			gcc clang llvm valgrind graphviz slurmctld slurmd slurm-client munge >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -e ".[workflow,test]"
	touch $@
