# switchyard — the entry points. Thin wrappers over scripts/ and CMake.
#   make demo    install what is missing, build, train the demo config, report
#   make test    install what is missing, build, run every test (C++ and the PyTorch parity test)
#   make bench   build, run the benchmarks (switchyard vs PyTorch on the same machine; expert
#                parallelism: layouts and the measured cost of imbalance)
#   make lint    clang-format check and clang-tidy
#   make fuzz    the libFuzzer targets, FUZZ_SECONDS (default 600) each (docs/testing.md)
#   make sanitize  ASan+UBSan over the test suites, TSan (Archer) over kernels, routing, MoE
BUILD ?= build
JOBS ?= 2

.PHONY: all deps build test demo bench lint format clean fuzz sanitize

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@scripts/run-tests.sh $(BUILD)
	@JOBS=$(JOBS) scripts/run-sanitizers.sh
	@scripts/fuzz.sh smoke

demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	@scripts/bench.sh $(BUILD)
	@scripts/ep_bench.sh $(BUILD)

lint: deps
	@scripts/lint.sh $(BUILD)

fuzz: deps
	@scripts/fuzz.sh long

sanitize: deps
	@JOBS=$(JOBS) scripts/run-sanitizers.sh

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
