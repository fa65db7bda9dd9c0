// cublasLt.h (kernel_emu stand-in): the mock cuBLASLt of tests/gpu/kernel_emu/emu_cublaslt.h.
#pragma once
#include "../cuda_emu.h"
#include "../emu_cublaslt.h"
