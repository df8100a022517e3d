# Two commands do all the set-up on a fresh clone with only python3:
#   make repro   create .venv, install requirements.txt, run `dvc repro`, print the run's summary and whether its
#                outputs are the committed dvc.lock's
#   make test    create .venv, install requirements.txt and Debian's Chromium (apt-get, as root; the browser test
#                of reports/index.html), run the test suite (the data stages of the lock reproduced in a fresh clone)
# and, before committing a dvc.lock:
#   make check-lock   the whole committed dvc.lock reproduced in a fresh clone (about 10 minutes on two cores)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell $(PYTHON) -c "import hashlib,sys;print(hashlib.sha1(open('requirements.txt','rb').read()).hexdigest()[:12])")
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test check-lock bench chromium

setup: $(STAMP) chromium

# Debian's Chromium for tests/evaluate/test_page_browser.py and scripts/screenshot_report.py (Playwright drives it;
# nothing is downloaded by Playwright itself)
chromium:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "make: could not install Debian's chromium; tests/evaluate/test_page_browser.py will fail or skip"

$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

repro: $(STAMP)
	dvc repro
	python scripts/compare_locks.py --base HEAD dvc.lock \
		|| echo "make: not the committed dvc.lock's outputs (HEAD): expected after a change to params.yaml or the code; on an unchanged checkout, a reproducibility bug: please report it"
	python scripts/summary.py

test: $(STAMP) chromium
	python -m pytest -q -ra --durations=15 -n 2 --dist loadfile --no-loadscope-reorder -m "not lock"

check-lock: $(STAMP)
	python -m pytest -q -ra -m lock tests/test_stages.py

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do PYTHONPATH=. python $$f || exit 1; done
