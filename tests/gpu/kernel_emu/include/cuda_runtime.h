// cuda_runtime.h (kernel_emu stand-in): the CUDA emulation of tests/gpu/kernel_emu/cuda_emu.h.
#pragma once
#include "../cuda_emu.h"
