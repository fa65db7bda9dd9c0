// cudnn.h (kernel_emu stand-in): the mock cuDNN of tests/gpu/kernel_emu/emu_cudnn.h.
#pragma once
#include "../cuda_emu.h"
#include "../emu_cudnn.h"
