# django-mailroom: `make demo` runs the demo, `make test` runs every check CI runs.
PYTHON ?= python3
# The first Python 3.12 that really runs (a pyenv shim may exist without the version active).
PY312 ?= $(shell for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null) $$(command -v python3.12); do "$$p" -c '' 2>/dev/null && echo "$$p" && break; done)
VENV := .venv
VENV61 := .venv-dj61
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: demo test browser pgbouncer lint test-sqlite test-postgres test-mariadb test-dj61 venv venv61 bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/pip install $(PIP_FLAGS) "Django>=5.2,<5.3" -e ".[dev,lint,browser]"
	touch $@

venv: $(VENV)/.installed

$(VENV61)/.installed: pyproject.toml
	@if [ -z "$(PY312)" ]; then echo "no Python 3.12 found: cannot build the Django 6.1 environment"; exit 1; fi
	$(PY312) -m venv $(VENV61)
	$(VENV61)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV61)/bin/pip install $(PIP_FLAGS) "Django>=6.1,<6.2" -e ".[dev,browser]"
	touch $@

venv61: $(VENV61)/.installed

demo: venv
	$(VENV)/bin/python example/demo.py

lint: venv
	$(VENV)/bin/ruff check src tests example bench
	$(VENV)/bin/ruff format --check src tests example bench
	$(VENV)/bin/mypy

test-sqlite: venv
	MAILROOM_TEST_DB=sqlite $(VENV)/bin/pytest -q -p no:cacheprovider

# The suites that touch the database (integration and real worker processes) run again on
# PostgreSQL and MariaDB; the pure unit tests need not.
test-postgres: venv
	MAILROOM_TEST_DB=postgres $(VENV)/bin/pytest -q -p no:cacheprovider tests/integration tests/process

test-mariadb: venv
	MAILROOM_TEST_DB=mariadb $(VENV)/bin/pytest -q -p no:cacheprovider tests/integration tests/process

# The real worker processes (signals, SIGKILL, the supervisor) do not depend on Django's
# version: they run under 5.2 on all three databases, not again here.
test-dj61:
	@if [ -z "$(PY312)" ]; then \
		echo "SKIPPED: Django 6.1 leg: no Python 3.12 found on this machine"; \
	else \
		$(MAKE) venv61 && \
		MAILROOM_TEST_DB=sqlite $(VENV61)/bin/pytest -q -p no:cacheprovider --ignore=tests/process && \
		MAILROOM_TEST_DB=postgres MAILROOM_PG_TEST_NAME=test_mailroom_dj61 \
			$(VENV61)/bin/pytest -q -p no:cacheprovider tests/integration; \
	fi

# Everything CI checks: lint and types, then the suite on SQLite, PostgreSQL and MariaDB
# under Django 5.2 (python3), and again under Django 6.1 (Python 3.12).
# The admin's browser tests drive Debian's Chromium (installed here if missing).
browser:
	bash .ci/install-browser.sh

# A worker behind a pooler in transaction mode (tests/process/test_pgbouncer.py) runs against
# Debian's PgBouncer (installed here if missing).
pgbouncer:
	bash .ci/install-pgbouncer.sh

# The legs run two at a time, the longest first: each spends much of its time waiting on a
# database, a socket or a worker process, so two share 2 CPUs well (CI on 2026-11-29: 16 min
# 9 s one after another, 9 min 19 s two at a time). Every test database is named by the pid
# of its run. Each leg's output is printed whole when it ends (Django 6.1's, which makes its
# environment itself, as it goes); -k runs every leg even after one fails.
LEGS := test-dj61 test-mariadb test-postgres test-sqlite

test: browser pgbouncer lint venv
	@if [ -n "$(PY312)" ]; then $(MAKE) --no-print-directory venv61; fi
	$(MAKE) --no-print-directory -k -j2 --output-sync=target $(LEGS)

clean:
	rm -rf $(VENV) $(VENV61) .pytest_cache .mypy_cache .ruff_cache

# The benchmarks beside raw smtplib and the peers, in their own .bench-venv (bench/README.md):
# `make bench` (about 30 minutes), `make bench BENCH_ARGS=--quick` (about 2).
bench:
	bash bench/run.sh $(BENCH_ARGS)
