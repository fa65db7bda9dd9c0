# tests/fenced/fenced.mk: the fenced backend, included by the Makefile (after cuda/cuda.mk). Uses
# the Makefile's variables (CC ALL_CFLAGS ALL_LDFLAGS ALL_LIBS CORE_SRC CORE_OBJ CPU_SRC BUILD
# STAMP Q say REQ_MISSING).
#   make fenced   $(BUILD)/fenced/lola: the whole program with the host code of the CUDA build and
#                 the CPU backend's ops behind a memory fence (tests/fenced/fenced.c): backend
#                 memory is PROT_NONE outside ops and every op checks its pointer arguments. A
#                 direct host access to backend memory, or a host pointer passed to an op, dies with
#                 a message and a backtrace instead of silently working as on the CPU backend.
#                 Also $(BUILD)/fenced/test_fence (the fence's own checks). `make test` builds both;
#                 tests/t_fenced.sh runs every lola command with it. See cuda/README.md.
#
# How it is put together (no GPU, nvcc or python needed):
#   * host code: the core objects of the normal build, except the sources that test
#     LOLA_BACKEND_CUDA (all of them when a header does, like cuda-check), which are compiled again
#     with -DLOLA_BACKEND_CUDA -DLOLA_BACKEND_FENCED: the host-staging paths the CUDA build takes
#     are the ones checked. src/buildinfo.c queries the CUDA runtime under LOLA_BACKEND_CUDA, so it
#     gets -DLOLA_BACKEND_FENCED only. A CUDA-only knob a core file calls (cuda/nn_cuda.h) comes
#     from tests/gpu/nn_cuda_stub.c.
#   * backend: src/cpu/*.c compiled with every nn.h name renamed cpu_<name>
#     (tests/gpu/gen_cpu_ref.sh), the wrappers generated from src/nn.h (tests/fenced/gen_fenced.sh,
#     extents from tests/fenced/extents.txt) and the runtime tests/fenced/fenced.c (nn_alloc & co.).
#     A new nn.h op is wrapped automatically; a missing wrapper is a link error.
#   * same compiler flags as build/lola, so the CPU math is bit-identical to it.

FEN := $(BUILD)/fenced
FEN_GEN := $(FEN)/gen
FEN_CPU_OBJ := $(patsubst src/cpu/%.c,$(FEN)/cpu/%.o,$(CPU_SRC))
FEN_RT_OBJ := $(FEN)/rt/fenced.o $(FEN)/rt/fenced_ops.o
FEN_CU_SRC := $(filter-out src/buildinfo.c,$(if $(shell grep -l LOLA_BACKEND_CUDA src/*.h mpi/*.h 2>/dev/null),$(CORE_SRC) src/main.c,$(shell grep -l LOLA_BACKEND_CUDA $(CORE_SRC) src/main.c 2>/dev/null)))
FEN_FLAVOR_SRC := $(FEN_CU_SRC) src/buildinfo.c
FEN_FLAVOR_OBJ := $(patsubst %.c,$(FEN)/obj/%.o,$(FEN_FLAVOR_SRC))
FEN_MAIN := $(if $(filter src/main.c,$(FEN_FLAVOR_SRC)),,$(BUILD)/obj/src/main.o)
FEN_CORE := $(filter-out $(patsubst %.c,$(BUILD)/obj/%.o,$(FEN_FLAVOR_SRC)),$(CORE_OBJ))
FEN_DEFS = -DLOLA_BACKEND_CUDA -DLOLA_BACKEND_FENCED -Icuda
FEN_INC := -Itests -Itests/fenced -I$(FEN_GEN)

.PHONY: fenced
fenced: $(FEN)/lola $(FEN)/test_fence

$(FEN_GEN)/nn_names.txt: src/nn.h tests/gpu/gen_cpu_ref.sh
	$(Q)bash tests/gpu/gen_cpu_ref.sh src/nn.h $(FEN_GEN) >/dev/null

$(FEN_GEN)/fenced_ops.c: src/nn.h tests/fenced/gen_fenced.sh tests/fenced/extents.txt
	$(call say,GEN,$@)
	$(Q)bash tests/fenced/gen_fenced.sh src/nn.h tests/fenced/extents.txt $@ >/dev/null

$(FEN)/cpu/%.o: src/cpu/%.c $(FEN_GEN)/nn_names.txt $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC-FEN,$<)
	$(Q)$(CC) $(ALL_CFLAGS) -include $(FEN_GEN)/cpu_rename.h -MMD -MP -c $< -o $@

$(FEN)/obj/src/buildinfo.o: FEN_DEFS = -DLOLA_BACKEND_FENCED
$(FEN)/obj/%.o: %.c $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC-FEN,$<)
	$(Q)$(CC) $(ALL_CFLAGS) $(FEN_DEFS) -MMD -MP -c $< -o $@

$(FEN)/rt/fenced_ops.o: $(FEN_GEN)/fenced_ops.c $(FEN_GEN)/nn_names.txt tests/fenced/fenced.h $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC-FEN,$<)
	$(Q)$(CC) $(ALL_CFLAGS) $(FEN_INC) -MMD -MP -c $< -o $@

$(FEN)/rt/%.o: tests/fenced/%.c $(FEN_GEN)/nn_names.txt $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC-FEN,$<)
	$(Q)$(CC) $(ALL_CFLAGS) $(FEN_INC) -MMD -MP -c $< -o $@

$(FEN)/rt/nn_cuda_stub.o: tests/gpu/nn_cuda_stub.c cuda/nn_cuda.h $(STAMP)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -Icuda -c $< -o $@

# The core objects the fenced flavour does not replace, plus the CUDA knob stubs (linked only when
# referenced).
$(FEN)/libcore.a: $(FEN_CORE) $(FEN)/rt/nn_cuda_stub.o
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

# -rdynamic: the fault reports' backtraces name the functions.
$(FEN)/lola: $(FEN_MAIN) $(FEN_FLAVOR_OBJ) $(FEN_RT_OBJ) $(FEN_CPU_OBJ) $(FEN)/libcore.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -rdynamic $^ -o $@ $(ALL_LIBS)

$(FEN)/test_fence: $(FEN)/rt/test_fence.o $(FEN_RT_OBJ) $(FEN_CPU_OBJ) $(FEN)/libcore.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -rdynamic $^ -o $@ $(ALL_LIBS)

# `make test` builds it too (tests/t_fenced.sh uses it).
ifndef LOLA_NO_PROBE
ifeq ($(REQ_MISSING),)
test: fenced
endif
endif

-include $(shell find $(FEN) -name '*.d' 2>/dev/null)
