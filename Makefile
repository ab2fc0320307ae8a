# netdiffd - one Makefile for everything.
#   make            release build: build/netdiff, build/netdiffd
#   make test       every test under ASan+UBSan, plus bounded fuzz runs
#   make test-MOD   the tests of one module (tests/MOD/), e.g. make test-codec
#   make bench      benchmarks, printing tables (BENCH=name for one)
#   make fuzz       the libFuzzer targets for longer (FUZZ_SECONDS=300)
# Modules add their own rules in MOD/module.mk (optional); sources are found
# by wildcard so adding a file needs no edit here.

CC       ?= gcc
CLANG    ?= clang-14
PKGS     := libpcap libpng jansson libmicrohttpd openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN     := -Wall -Wextra -Werror -Wno-error=unused-function
BASE_CFLAGS := -std=c17 -D_GNU_SOURCE -I. $(WARN) $(PKG_CFLAGS) -pthread -MMD -MP
CFLAGS   ?= -O2 -g
LDLIBS   := $(PKG_LIBS) -lz -lm -lpthread
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 10
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BASE_CFLAGS += -DND_VERSION=\"$(VERSION)\" -DND_GIT_REV=\"$(GIT_REV)\"

LIB_DIRS := common codec heuristics kernels weights model gen eval
LIB_SRCS := $(sort $(shell find $(LIB_DIRS) -name '*.c' -not -path 'kernels/cuda/*' -not -path 'kernels/emu/*' 2>/dev/null))
CLI_SRCS := $(sort $(wildcard cli/*.c))
SRV_SRCS := $(sort $(wildcard server/*.c))
TEST_C   := $(sort $(wildcard tests/*/test_*.c))
TEST_SH  := $(sort $(wildcard tests/*/test_*.sh))
FUZZ_C   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_C  := $(sort $(wildcard tests/bench/bench_*.c))

# Three builds of the same sources: release, sanitizer, fuzz (clang).
REL  := build
ASAN := build/asan
FZ   := build/fuzz

rel_obj  = $(patsubst %.c,$(REL)/obj/%.o,$(1))
asan_obj = $(patsubst %.c,$(ASAN)/obj/%.o,$(1))
fuzz_obj = $(patsubst %.c,$(FZ)/obj/%.o,$(1))

REL_LIB  := $(REL)/libnetdiff.a
ASAN_LIB := $(ASAN)/libnetdiff.a
FUZZ_LIB := $(FZ)/libnetdiff.a

TEST_BINS  := $(patsubst tests/%.c,$(ASAN)/tests/%,$(TEST_C))
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(FZ)/%,$(FUZZ_C))
BENCH_BINS := $(patsubst tests/bench/%.c,$(REL)/bench/%,$(BENCH_C))

.PHONY: all test fuzz fuzz-build bench clean run-default cuda emu
all: $(REL)/netdiff $(if $(SRV_SRCS),$(REL)/netdiffd)

-include $(wildcard */module.mk)

# V=1 shows the whole command lines.
Q := $(if $(V),,@)
$(REL)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@
$(ASAN)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC-SAN  $<")
	$(Q)$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -c $< -o $@
$(FZ)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC-FUZZ $<")
	$(Q)$(CLANG) $(filter-out -MMD -MP,$(BASE_CFLAGS)) -O1 -g -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

$(REL_LIB): $(call rel_obj,$(LIB_SRCS))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(ASAN_LIB): $(call asan_obj,$(LIB_SRCS))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
# The fuzz targets exercise parsers; none needs the compute kernels, whose
# intrinsic-heavy files take clang-14 minutes each under the sanitizers.
FUZZ_SRCS := $(filter-out kernels/%,$(LIB_SRCS))
$(FUZZ_LIB): $(call fuzz_obj,$(FUZZ_SRCS))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^

$(REL)/netdiff: $(call rel_obj,$(CLI_SRCS)) $(REL_LIB)
	$(CC) $(CFLAGS) -pthread -o $@ $^ $(LDLIBS)
$(ASAN)/netdiff: $(call asan_obj,$(CLI_SRCS)) $(ASAN_LIB)
	$(CC) $(SAN) -pthread -o $@ $^ $(LDLIBS)
$(REL)/netdiffd: $(call rel_obj,$(SRV_SRCS)) $(REL_LIB)
	$(CC) $(CFLAGS) -pthread -o $@ $^ $(LDLIBS)
$(ASAN)/netdiffd: $(call asan_obj,$(SRV_SRCS)) $(ASAN_LIB)
	$(CC) $(SAN) -pthread -o $@ $^ $(LDLIBS)

$(ASAN)/tests/%: tests/%.c $(ASAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -o $@ $< $(ASAN_LIB) $(LDLIBS)
$(FZ)/%: tests/fuzz/%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(CLANG) $(filter-out -MMD -MP,$(BASE_CFLAGS)) -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_LIB) $(LDLIBS)
$(REL)/bench/%: tests/bench/%.c $(REL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(LDLIBS)

# ---- tests ------------------------------------------------------------------
TEST_DEPS += $(TEST_BINS) $(ASAN)/netdiff $(if $(SRV_SRCS),$(ASAN)/netdiffd) $(REL)/netdiff \
             $(BENCH_BINS)
test: $(TEST_DEPS) $(FUZZ_BINS)
	@ASAN_OPTIONS=detect_leaks=1 sh tests/run.sh $(TEST_BINS) $(TEST_SH) $(if $(FUZZ_BINS),tests/fuzz/run_fuzzers.sh)

test-%: $(TEST_DEPS)
	@sh tests/run.sh $(filter $(ASAN)/tests/$*/%,$(TEST_BINS)) $(filter tests/$*/%,$(TEST_SH))

fuzz-build: $(FUZZ_BINS)
fuzz: $(FUZZ_BINS)
	@FUZZ_SECONDS=$(if $(filter 10,$(FUZZ_SECONDS)),300,$(FUZZ_SECONDS)) sh tests/run.sh tests/fuzz/run_fuzzers.sh

# ---- benchmarks -------------------------------------------------------------
bench: $(BENCH_BINS) $(REL)/netdiff
	@sh tests/bench/run.sh $(BENCH)

# ---- the README's main job --------------------------------------------------
run-default: $(REL)/netdiff
	@sh deploy/run-default.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
