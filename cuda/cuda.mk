# cuda/cuda.mk: GPU test targets, included by the Makefile after its cuda section. Uses the
# Makefile's variables (CC CFLAGS OMP_FLAGS DEFS BLAS_CFLAGS BLAS_LIBS CUDA_LIBS NVCC BUILD CPU_SRC
# STAMP Q say).
#   make gpu-tests   build $(BUILD)/tests/gpu/test_gpu_ops: every op of the CUDA backend against
#                    the CPU backend, op by op (building needs nvcc only; running needs a GPU)
#   make test-gpu    build it and run the checks and the op timings (GPU machine)
#   make gpu-selfcheck  the same test program linked with the CPU backend on both sides (plus
#                    no-op knobs, tests/gpu/nn_cuda_stub.c): checks the harness without a GPU
#   make gpu-bundle  $(BUILD)/gpu-bundle/: the prebuilt programs + libraries for the GPU machine
# tests/gpu/run.sh OUTDIR is the self-contained GPU-machine script (bundle or own build, logs, timeouts).
#
# Both backends define the nn.h names: the CPU sources are compiled a second time into
# $(BUILD)/tests/gpu/cpuref/ with every nn.h name renamed cpu_<name> (tests/gpu/gen_cpu_ref.sh
# generates the -include'd #define list from nn.h, so new ops are picked up automatically).

ifneq ($(NVCC),)
GPU_T := $(BUILD)/tests/gpu
GPU_GEN := $(GPU_T)/gen
GPU_CPUREF_OBJ := $(patsubst src/cpu/%.c,$(GPU_T)/cpuref/%.o,$(CPU_SRC))
GPU_CFLAGS = $(CFLAGS) $(OMP_FLAGS) $(DEFS) -Isrc $(BLAS_CFLAGS)
GPU_RPATH = $(patsubst -L%,-Wl$(comma)-rpath$(comma)%,$(filter -L%,$(CUDA_LIBS) $(BLAS_LIBS)))

.PHONY: gpu-tests test-gpu gpu-selfcheck

$(GPU_GEN)/nn_names.txt: src/nn.h tests/gpu/gen_cpu_ref.sh
	$(Q)bash tests/gpu/gen_cpu_ref.sh src/nn.h $(GPU_GEN) >/dev/null

$(GPU_T)/cpuref/%.o: src/cpu/%.c $(GPU_GEN)/nn_names.txt $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC-REF,$<)
	$(Q)$(CC) $(GPU_CFLAGS) -include $(GPU_GEN)/cpu_rename.h -MMD -MP -c $< -o $@

$(GPU_T)/common.o: src/common.c $(STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -Isrc -MMD -MP -c $< -o $@

$(GPU_T)/test_gpu_ops.o: tests/gpu/test_gpu_ops.c $(GPU_GEN)/nn_names.txt $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(GPU_CFLAGS) -Icuda -Itests -I$(GPU_GEN) -MMD -MP -c $< -o $@

$(GPU_T)/test_gpu_ops: $(GPU_T)/test_gpu_ops.o $(GPU_CPUREF_OBJ) $(GPU_T)/common.o $(BUILD)/libbackend_cuda.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(OMP_FLAGS) $^ -o $@ $(BLAS_LIBS) $(CUDA_LIBS) $(OMP_FLAGS) -lm $(GPU_RPATH)

$(GPU_T)/nn_cuda_stub.o: tests/gpu/nn_cuda_stub.c cuda/nn_cuda.h
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -Icuda -c $< -o $@

# The self-check's "GPU" side is the normal CPU backend; its internal globals (cpu_gemm, ...)
# would clash with the reference copy's, so they are renamed selfcheck_* in copies of the objects.
GPU_SELF_SRC_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CPU_SRC))
GPU_SELF_OBJ := $(patsubst src/cpu/%.c,$(GPU_T)/selfcheck/%.o,$(CPU_SRC))
$(GPU_T)/selfcheck/internal.syms: $(GPU_SELF_SRC_OBJ) $(GPU_GEN)/nn_names.txt
	@mkdir -p $(@D)
	$(Q)nm -g --defined-only $(GPU_SELF_SRC_OBJ) | awk 'NF == 3 {print $$3}' | sort -u | \
	  grep -vxF -f $(GPU_GEN)/nn_names.txt | awk '{print $$1 " selfcheck_" $$1}' >$@
$(GPU_T)/selfcheck/%.o: $(BUILD)/obj/src/cpu/%.o $(GPU_T)/selfcheck/internal.syms
	$(Q)objcopy --redefine-syms=$(GPU_T)/selfcheck/internal.syms $< $@
$(GPU_T)/selfcheck_gpu_ops: $(GPU_T)/test_gpu_ops.o $(GPU_CPUREF_OBJ) $(GPU_T)/common.o $(GPU_T)/nn_cuda_stub.o \
                            $(GPU_SELF_OBJ)
	$(call say,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(OMP_FLAGS) $^ -o $@ $(BLAS_LIBS) $(OMP_FLAGS) -lm $(GPU_RPATH)

gpu-selfcheck: $(GPU_T)/selfcheck_gpu_ops
	OMP_NUM_THREADS=2 $(GPU_T)/selfcheck_gpu_ops

gpu-tests: $(GPU_T)/test_gpu_ops
	@echo "gpu-tests: built $(GPU_T)/test_gpu_ops ($(CUDA_ARCH)); run it on a GPU machine (make test-gpu)"

test-gpu: $(GPU_T)/test_gpu_ops
	$(GPU_T)/test_gpu_ops --bench

# $(GPU_T)/test_nccl: the NCCL transport of src/gradsync.c (cuda/nccl.cu) on the GPU machine (one
# process on one GPU, or mpirun -np N on N GPUs; see the file). Linked like $(CHK)/lola: the CUDA
# flavour of the core + the CUDA backend (BACKEND=cpu), or $(BUILD)/liblola.a (BACKEND=cuda).
$(GPU_T)/test_nccl.o: tests/gpu/test_nccl.c $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(ALL_CFLAGS) $(CUDA_DEFS) $(CUDA_CFLAGS) -Itests -MMD -MP -c $< -o $@
ifeq ($(BACKEND),cuda)
$(GPU_T)/test_nccl: $(GPU_T)/test_nccl.o $(BUILD)/liblola.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $^ -o $@ $(ALL_LIBS) $(GPU_RPATH)
else
$(GPU_T)/test_nccl: $(GPU_T)/test_nccl.o $(filter-out %/main.o,$(CUDA_FLAVOR_OBJ)) $(BUILD)/libbackend_cuda.a $(CHK)/libcore.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(filter %.o,$^) -Wl,--whole-archive $(BUILD)/libbackend_cuda.a -Wl,--no-whole-archive $(CHK)/libcore.a -o $@ $(ALL_LIBS) $(CUDA_LIBS) $(patsubst -L%,-Wl$(comma)-rpath$(comma)%,$(filter -L%,$(CUDA_LIBS)))
endif
gpu-tests: $(GPU_T)/test_nccl

# make gpu-bundle: $(BUILD)/gpu-bundle/, everything the GPU machine needs to run the whole program
# without building it (it lacks libyaml and parallel HDF5): the CUDA program (cuda-check), the CPU
# program, well-euler, the GPU test programs, bench-lola (CUDA + CPU) when tools/bench-lola.c
# exists, and the shared libraries the machine lacks; wrappers set LD_LIBRARY_PATH. The library
# policy (what is taken along and why) is in tests/gpu/bundle.sh; the use in cuda/README.md.
# A CUDA tool is linked like $(CHK)/lola: its object in the CUDA flavour + the CUDA backend + core.
.PHONY: gpu-bundle
ifeq ($(BACKEND),cuda)
gpu-bundle:
	@echo "gpu-bundle: needs the default BACKEND=cpu build (it bundles the CPU and the cuda-check CUDA program)" >&2; exit 1
else
CHK_TOOLS := $(patsubst tools/%.c,$(CHK)/%,$(wildcard tools/bench-lola.c))
$(CHK_TOOLS): $(CHK)/%: $(BUILD)/obj-cuda/tools/%.o $(filter-out %/main.o,$(CUDA_FLAVOR_OBJ)) $(BUILD)/libbackend_cuda.a $(CHK)/libcore.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(filter %.o,$^) -Wl,--whole-archive $(BUILD)/libbackend_cuda.a -Wl,--no-whole-archive $(CHK)/libcore.a -o $@ $(ALL_LIBS) $(CUDA_LIBS) $(patsubst -L%,-Wl$(comma)-rpath$(comma)%,$(filter -L%,$(CUDA_LIBS)))
GPU_BUNDLE_BINS := lola=$(CHK)/lola lola-cpu=$(BUILD)/lola well-euler=$(BUILD)/well-euler test_gpu_ops=$(GPU_T)/test_gpu_ops \
    $(if $(wildcard tests/gpu/test_nccl.c),test_nccl=$(GPU_T)/test_nccl) \
    $(if $(CHK_TOOLS),bench-lola=$(CHK)/bench-lola bench-lola-cpu=$(BUILD)/bench-lola)
gpu-bundle: $(foreach b,$(GPU_BUNDLE_BINS),$(lastword $(subst =, ,$(b))))
	$(Q)bash tests/gpu/bundle.sh $(BUILD)/gpu-bundle $(GPU_BUNDLE_BINS)
endif

-include $(shell find $(GPU_T) -name '*.d' 2>/dev/null)
else
.PHONY: gpu-bundle
gpu-bundle:
	@echo "gpu-bundle: needs nvcc (CUDA_HOME or PATH) to build the CUDA programs" >&2; exit 1
endif

# make test also builds the self-check of the GPU op tests (run by tests/t_gpu_host.sh): the
# Makefile's test target depends on this name (only when its required dependencies are present).
ifneq ($(NVCC),)
.PHONY: gpu-selfcheck-build
gpu-selfcheck-build: $(GPU_T)/selfcheck_gpu_ops
endif
