# cuda/cuda.mk: GPU test targets, included by the Makefile after its cuda section. Uses the
# Makefile's variables (CC CFLAGS OMP_FLAGS DEFS BLAS_CFLAGS BLAS_LIBS CUDA_LIBS NVCC BUILD CPU_SRC
# STAMP Q say).
#   make gpu-tests   build $(BUILD)/tests/gpu/test_gpu_ops: every op of the CUDA backend against
#                    the CPU backend, op by op (building needs nvcc only; running needs a GPU)
#   make test-gpu    build it and run the checks and the op timings (GPU machine)
#   make gpu-selfcheck  the same test program linked with the CPU backend on both sides (plus
#                    no-op knobs, tests/gpu/nn_cuda_stub.c): checks the harness without a GPU
# tests/gpu/run.sh OUTDIR is the self-contained GPU-machine script (own build, logs, timeouts).
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

-include $(shell find $(GPU_T) -name '*.d' 2>/dev/null)
endif
