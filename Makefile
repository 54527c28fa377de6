# Thin wrapper over CMake/CTest. The README's two commands are `make run` and `make test`.
JOBS ?= $(shell nproc)
BUILD ?= build
TEST_BUILD ?= build-asan

.PHONY: all deps build run cluster test clean format

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLOTILLA_TESTS=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Install what is missing, build, and start one member on 127.0.0.1:2379.
run: build
	./$(BUILD)/src/cmd/flotilla serve

# Install what is missing, build, and start a local 3-member cluster in the
# foreground (clients on 127.0.0.1:2379, :22379, :32379; see scripts/cluster.sh).
cluster: build
	./scripts/cluster.sh

# Install what is missing, build with ASan+UBSan, and run the whole suite.
test: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFLOTILLA_SANITIZE=ON >/dev/null
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure --timeout 600 -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
