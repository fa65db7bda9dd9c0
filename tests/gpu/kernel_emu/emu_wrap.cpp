// emu_wrap.cpp: counts the calls of the bf16 weight-cache bookkeeping (lcu_note_params,
// lcu_note_write: precision.cu's when it is emulated, else emu_lcu.cpp's stand-ins) for the
// report's "params" requirement, through the linker's --wrap on their C++ symbols (run.sh links
// this file into the test program only, with -Wl,--wrap=SYMBOL for both).
#include <cstddef>

void emu_count_note(int params);
void emu_check_device_range(const void *p, size_t bytes, const char *what);
extern "C" void __real__Z15lcu_note_paramsPKfm(const float *p, size_t n);
extern "C" void __real__Z14lcu_note_writePKvm(const void *p, size_t n);
extern "C" void __wrap__Z15lcu_note_paramsPKfm(const float *p, size_t n) {
    emu_count_note(1);
    if (n) emu_check_device_range(p, n * sizeof(float), "lcu_note_params");
    __real__Z15lcu_note_paramsPKfm(p, n);
}
extern "C" void __wrap__Z14lcu_note_writePKvm(const void *p, size_t n) {
    emu_count_note(0);
    if (n) emu_check_device_range(p, n * sizeof(float), "lcu_note_write");
    __real__Z14lcu_note_writePKvm(p, n);
}
