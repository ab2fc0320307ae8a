# kernels/module.mk - extra rules for the kernels module.
.PHONY: test-ops test-emu test-cuda emu cuda
# the op parity test alone (every op, every backend, against cpu_ref)
test-ops: test-kernels

# ---- the SIMT emulation build of kernels/cuda/*.cu (the "emu" backend) ---------
# The .cu sources go through the host C++ compiler with -DND_EMU, which makes
# kernels/cuda/cu_compat.h include kernels/emu/emu.h instead of CUDA. The ASan
# objects are linked into the tests that use them (test_ops, test_emu); `make
# emu` builds optimised ones and the same two tests without sanitizers.
CXX      ?= g++
EMU_CU   := $(sort $(wildcard kernels/cuda/*.cu))
EMU_RT   := kernels/emu/emu_runtime.cpp
EMU_CXXFLAGS := -std=c++17 -DND_EMU -D_GNU_SOURCE -I. $(WARN) -pthread -MMD -MP \
                -fno-exceptions -fno-rtti -fno-strict-aliasing
EMU_ASAN_OBJS := $(patsubst %,$(ASAN)/emu/%.o,$(EMU_CU) $(EMU_RT))
EMU_REL_OBJS  := $(patsubst %,$(REL)/emu/%.o,$(EMU_CU) $(EMU_RT))
EMU_SELFTEST_ASAN := $(ASAN)/emu/tests/emu/emu_selftest.cu.o $(ASAN)/emu/$(EMU_RT).o
EMU_SELFTEST_REL  := $(REL)/emu/tests/emu/emu_selftest.cu.o $(REL)/emu/$(EMU_RT).o

$(ASAN)/emu/%.o: % kernels/emu/emu.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX-EMU $<")
	$(Q)$(CXX) -x c++ $(EMU_CXXFLAGS) -O2 -g $(SAN) -fno-sanitize=vptr -c $< -o $@
$(REL)/emu/%.o: % kernels/emu/emu.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX-EMU $<")
	$(Q)$(CXX) -x c++ $(EMU_CXXFLAGS) -O2 -g -c $< -o $@

# the sanitizer tests that run kernels on the emulator link these objects
$(ASAN)/tests/kernels/test_ops: $(EMU_ASAN_OBJS)
$(ASAN)/tests/kernels/test_ops: LDLIBS += $(EMU_ASAN_OBJS) $(ASAN_LIB) -lstdc++
$(ASAN)/tests/emu/test_emu: $(EMU_SELFTEST_ASAN)
$(ASAN)/tests/emu/test_emu: LDLIBS += $(EMU_SELFTEST_ASAN) $(ASAN_LIB) -lstdc++

emu: $(REL)/emu/libnd_emu.a $(REL)/emu/test_ops $(REL)/emu/test_emu $(REL)/emu/netdiff
$(REL)/emu/libnd_emu.a: $(EMU_REL_OBJS)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(REL)/emu/test_ops: tests/kernels/test_ops.c $(REL_LIB) $(EMU_REL_OBJS)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(EMU_REL_OBJS) $(REL_LIB) $(LDLIBS) -lstdc++
$(REL)/emu/test_emu: tests/emu/test_emu.c $(REL_LIB) $(EMU_SELFTEST_REL)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(EMU_SELFTEST_REL) $(REL_LIB) $(LDLIBS) -lstdc++

# netdiff with the emu backend linked in (`--backend emu`): the whole
# generator on the CUDA sources, on any machine (tests/gen/test_generate_emu.sh).
$(REL)/emu/netdiff: $(call rel_obj,$(CLI_SRCS)) $(REL_LIB) $(EMU_REL_OBJS)
	$(CC) $(CFLAGS) -pthread -o $@ $(call rel_obj,$(CLI_SRCS)) $(REL_LIB) $(EMU_REL_OBJS) $(REL_LIB) $(LDLIBS) -lstdc++
TEST_DEPS += $(REL)/emu/netdiff

# the emu tests alone, under ASan/UBSan: the runtime's own test, then the op
# test with only cpu_ref (the oracle) and emu
test-emu: $(ASAN)/tests/emu/test_emu $(ASAN)/tests/kernels/test_ops
	@ND_TEST_BACKENDS=emu sh tests/run.sh $^

# ---- the CUDA build: nvcc 13, sm_90 SASS + compute_90 PTX ---------------------
CUDA_HOME ?= /usr/local/cuda
NVCC     ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH := -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS := -std=c++17 -I. -O3 -lineinfo $(CUDA_ARCH) -Xcompiler -Wall,-Wextra \
             -Werror all-warnings
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcudnn -lstdc++ \
             -Wl,-rpath,$(CUDA_HOME)/lib64
CUDA_OBJS := $(patsubst %,$(REL)/cuda/%.o,$(EMU_CU))

$(REL)/cuda/%.cu.o: %.cu $(wildcard kernels/cuda/*.h kernels/cuda/*.cuh)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

cuda: $(REL)/cuda/libnd_cuda.a $(REL)/cuda/test_ops $(REL)/cuda/netdiff $(REL)/cuda/netdiffd \
      $(REL)/cuda/bench_ops $(REL)/cuda/bench_pipeline
$(REL)/cuda/libnd_cuda.a: $(CUDA_OBJS)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
# the op test linked against the cuda backend (runs on a machine with a GPU)
$(REL)/cuda/test_ops: tests/kernels/test_ops.c $(REL_LIB) $(CUDA_OBJS)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(CUDA_OBJS) $(REL_LIB) $(LDLIBS) $(CUDA_LIBS)
# the op benchmark with the cuda backend (ND_BENCH_BACKEND=cuda: the GPU table)
$(REL)/cuda/bench_ops: tests/bench/bench_ops.c $(REL_LIB) $(CUDA_OBJS)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(CUDA_OBJS) $(REL_LIB) $(LDLIBS) $(CUDA_LIBS)
# the full pipeline's images/s on the GPU against diffusers fp16 (the #8 table)
$(REL)/cuda/bench_pipeline: tests/bench/bench_pipeline.c $(REL_LIB) $(CUDA_OBJS)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(CUDA_OBJS) $(REL_LIB) $(LDLIBS) $(CUDA_LIBS)
# netdiff and netdiffd with the cuda backend linked in (`--backend cuda`)
$(REL)/cuda/netdiff: $(call rel_obj,$(CLI_SRCS)) $(REL_LIB) $(CUDA_OBJS)
	$(CC) $(CFLAGS) -pthread -o $@ $(call rel_obj,$(CLI_SRCS)) $(REL_LIB) $(CUDA_OBJS) $(REL_LIB) $(LDLIBS) $(CUDA_LIBS)
$(REL)/cuda/netdiffd: $(call rel_obj,$(SRV_SRCS)) $(REL_LIB) $(CUDA_OBJS)
	$(CC) $(CFLAGS) -pthread -o $@ $(call rel_obj,$(SRV_SRCS)) $(REL_LIB) $(CUDA_OBJS) $(REL_LIB) $(LDLIBS) $(CUDA_LIBS)
