# The two commands of README.md: `make demo` and `make test` set up everything on a fresh machine:
# scripts/setup-system.sh installs the Debian packages they need (or names them and stops),
# then the virtualenv is made once (stamp) and the command runs.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SYSTEM  := PY=$(PY) bash scripts/setup-system.sh
# Most tests wait on a broker or a worker process, so 3 test processes keep 2 cores busy.
TEST_PROCS ?= 3

.PHONY: demo test drill bench lint venv dashboards clean

$(STAMP): pyproject.toml
	$(SYSTEM) python
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(SYSTEM) demo
	$(BIN)/shoppulse demo

test: $(STAMP)
	$(SYSTEM) test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_PROCS) --dist worksteal -m 'not drill'

# the demo's alert -> playbook -> recovery -> resolve beside a drill that must fail, then
# every scenario of the plan through an embedded stack (`shoppulse drill --all`: detected,
# playbook run, recovered) alone: the live demo must keep pace with its traffic
# DRILL_ARGS: more pytest options for both steps (e.g. --deselect a test)
DRILL_ARGS ?=
drill: $(STAMP)
	$(SYSTEM) test
	$(BIN)/python -m pytest -q -n 2 -m drill -k 'not every_scenario' $(DRILL_ARGS)
	$(BIN)/python -m pytest -q -m drill -k every_scenario $(DRILL_ARGS)

bench: $(STAMP)
	$(BIN)/shoppulse bench throughput
	$(BIN)/shoppulse bench detect

lint: $(STAMP)
	$(BIN)/ruff check .

dashboards: $(STAMP)
	$(BIN)/shoppulse dashboards --out grafana/dashboards

clean:
	rm -rf $(VENV) build *.egg-info
