# The two commands a newcomer pastes (README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench eval clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "refinery needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,models,caption,annotate,train,workflows]"
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

setup: $(STAMP)

demo: setup   ## build the bundled sample, curate it, caption it with a tiny random LLaVA, train a tiny UNet on it, check the nightly workflow spec
	$(BIN)/refinery curate demo --output demo-out
	$(BIN)/refinery caption demo --output demo-out
	$(BIN)/refinery train fit --config tiny-cpu --steps 40 --resume
	$(BIN)/refinery train sample --checkpoint demo-out/runs/tiny-cpu/ckpt-00000040 --steps 10 \
	    --prompt "a ginger tabby cat" --prompt "a cup of coffee" --out demo-out/samples.png
	$(BIN)/refinery workflow validate workflows/examples/nightly.yaml

# The CJK font the Chinese OCR test renders with (Debian/Ubuntu fonts-wqy-microhei: 1.6 MB
# download, 5 MB installed). Installed only when no Chinese font is there; without apt-get it
# says so and the Chinese OCR test skips, naming the font.
CJK_FONT ?= /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
.PHONY: fonts
fonts:  ## install the CJK font for the OCR tests when it is missing (apt; sudo unless root)
	@if test -f $(CJK_FONT) || { command -v fc-list >/dev/null && test -n "$$(fc-list :lang=zh file)"; }; then :; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >/dev/null 2>&1 \
	  || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends fonts-wqy-microhei; }; \
	else echo "make fonts: no apt-get here: install a CJK font (WenQuanYi Micro Hei) or the Chinese OCR test skips"; fi

.PHONY: postgres
postgres:  ## the PostgreSQL server the annotation store's tests use (starts or installs one when none answers)
	@bash .ci/postgres.sh

test: setup fonts postgres  ## the whole test suite (what .ci/run runs)
	REFINERY_PROGRESS=0 $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

bench: setup  ## benchmarks: each prints ratios against a baseline of the same run
	$(BIN)/python bench/bench_cpu_stage.py
	$(BIN)/python bench/bench_dedup.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_finalize.py --sizes 100000,1000000
	$(BIN)/python bench/bench_pipeline.py --sizes 2000,5000
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_caption.py
	$(BIN)/python bench/bench_annotate.py
	$(BIN)/python bench/bench_trainer.py

.PHONY: bench-peers
bench-peers: setup  ## refinery vs imagededup (PHash) and cleanvision on the same files (installs the bench extra: torch)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python bench/bench_peers.py

eval: setup   ## accuracy of the default decisions (the table in the README)
	$(BIN)/python bench/eval_accuracy.py

.PHONY: report-shot
report-shot: setup  ## the bundled sample's report.html in headless Chromium -> demo-out/report.png (curates it first if needed)
	test -f demo-out/curated/report.html || $(BIN)/refinery curate demo --output demo-out
	$(BIN)/python -m curate.report.shot demo-out/curated/report.html demo-out/report.png

clean:
	rm -rf demo-out .pytest_cache
