// test_fence.c: checks of the fenced backend itself (tests/fenced/fenced.c), built by
// tests/fenced/fenced.mk as $(BUILD)/fenced/test_fence and run by tests/t_fenced.sh:
//  * what must keep working: zero-filled nn_alloc, nn_to_backend / nn_to_host round trips, ops on
//    backend buffers, a freed block reused zero-filled, the byte counters (n * 4 per buffer);
//  * what must die (each in a child process), with a message naming the problem: host code reading
//    or writing backend memory (with a backtrace naming the offending function), touching a freed
//    buffer, a malloc'd pointer passed to an op, a backend pointer as host_dst / host_src, extents
//    past the end of a buffer (element-count ops and a shape op), a freed buffer passed to an op,
//    a double free; packed bf16 buffers (uint16_t *): extents in bf16 values, 2-byte alignment.
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "fenced.h"
#include "nn.h"
#include "test.h"

enum { N = 1000 };

// Non-static and not inlined: the backtrace must name them (-rdynamic).
__attribute__((noinline)) void fence_test_read_backend(void *arg) {
    (void)arg;
    float *x = nn_alloc(N);
    volatile float *v = x;
    printf("read %g\n", (double)v[17]);
}
__attribute__((noinline)) void fence_test_write_backend(void *arg) {
    (void)arg;
    float *x = nn_alloc(N);
    x[3] = 1.0f;
    printf("wrote x[3]\n");
}
static void touch_freed(void *arg) {
    (void)arg;
    float *x = nn_alloc(N);
    nn_free(x);
    volatile float *v = x;
    printf("read %g\n", (double)v[0]);
}
static void host_ptr_to_op(void *arg) {
    (void)arg;
    float *h = malloc(N * sizeof(float));
    nn_fill(h, 1.0f, N);
    printf("nn_fill took a malloc'd pointer\n");
}
static void stack_ptr_to_op(void *arg) {
    (void)arg;
    float h[16] = {0};
    float *x = nn_alloc(16);
    nn_axpy(x, 1.0f, h, 16);
    printf("nn_axpy took a stack pointer\n");
}
static void backend_as_host_dst(void *arg) {
    (void)arg;
    float *a = nn_alloc(N), *b = nn_alloc(N);
    nn_to_host(b, a, N);
}
static void backend_as_host_src(void *arg) {
    (void)arg;
    float *a = nn_alloc(N), *b = nn_alloc(N);
    nn_to_backend(b, a, N);
}
static void copy_past_end(void *arg) {
    (void)arg;
    float *a = nn_alloc(N), *b = nn_alloc(N);
    nn_copy(b, a, N + 1);
}
static void fill_offset_past_end(void *arg) {
    (void)arg;
    float *a = nn_alloc(N);
    nn_fill(a + 10, 0.0f, N - 9);
}
static void conv_weights_too_small(void *arg) {
    (void)arg;
    // x (1, 2, 4, 4), w needs 3*2*3*3 = 54 floats but has 53
    float *out = nn_alloc(3 * 16), *x = nn_alloc(2 * 16), *w = nn_alloc(53);
    conv2d_forward(out, x, w, NULL, 1, 2, 3, 4, 4, 3);
}
static void freed_to_op(void *arg) {
    (void)arg;
    float *a = nn_alloc(N);
    nn_free(a);
    nn_scale(a, 2.0f, N);
}
static void double_free(void *arg) {
    (void)arg;
    float *a = nn_alloc(N);
    nn_free(a);
    nn_free(a);
}
// Packed bf16 buffers (uint16_t *, nn.h "bf16 activation storage"): extents in bf16 values.
static void pack_past_end(void *arg) {
    (void)arg;
    float *x = nn_alloc(N + 1), *pk = nn_alloc(N / 2); // room for N bf16 values
    nn_pack_bf16((uint16_t *)pk, x, N + 1);
}
static void pack_odd_offset_past_end(void *arg) {
    (void)arg;
    float *x = nn_alloc(N), *pk = nn_alloc(N / 2);
    nn_pack_bf16((uint16_t *)pk + 1, x, N); // one value past the end
}
static void unpack_past_end(void *arg) {
    (void)arg;
    float *y = nn_alloc(N + 2), *pk = nn_alloc(N / 2);
    nn_unpack_bf16(y, (const uint16_t *)pk, N + 2);
}
static void pack_misaligned(void *arg) {
    (void)arg;
    float *x = nn_alloc(N), *pk = nn_alloc(N);
    nn_pack_bf16((uint16_t *)((char *)pk + 1), x, 4);
}
static void misaligned(void *arg) {
    (void)arg;
    float *a = nn_alloc(N);
    nn_fill((float *)((char *)a + 2), 0.0f, 4);
}

int main(void) {
    nn_init(-1);
    // --- what keeps working
    float *a = nn_alloc(N), *b = nn_alloc(N);
    float h[N];
    for (int i = 0; i < N; i++) h[i] = 7.0f;
    nn_to_host(h, a, N);
    int zero = 1;
    for (int i = 0; i < N; i++) zero &= h[i] == 0.0f;
    CHECK(zero, "fence: nn_alloc is zero-filled (read through nn_to_host)");
    CHECK(((uintptr_t)a % (uintptr_t)sysconf(_SC_PAGESIZE)) == 0 && a != b, "fence: buffers are page-aligned and distinct");
    for (int i = 0; i < N; i++) h[i] = (float)i;
    nn_to_backend(a, h, N);
    nn_copy(b, a, N);
    nn_axpy(b, 2.0f, a, N); // b = 3 a
    nn_to_host(h, b, N);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= h[i] == 3.0f * (float)i;
    CHECK(ok, "fence: nn_to_backend, nn_copy, nn_axpy, nn_to_host on backend buffers give 3 i");
    double ss = nn_sum_squares(a + 1, 2); // 1 + 4
    CHECK(ss == 5.0, "fence: an op on an interior pointer with an in-bounds extent (sum of squares %g)", ss);
    size_t used = nn_bytes_in_use();
    CHECK(used == 2 * N * sizeof(float), "fence: nn_bytes_in_use counts n * 4 per buffer (%zu)", used);
    nn_fill(b, 5.0f, N);
    nn_free(b);
    float *c = nn_alloc(N);
    nn_to_host(h, c, N);
    zero = 1;
    for (int i = 0; i < N; i++) zero &= h[i] == 0.0f;
    CHECK(c == b && zero, "fence: a freed block is reused first-fit and reads as zeros (%p -> %p)", (void *)b, (void *)c);
    float *big = nn_alloc(3 * N);
    nn_free(big);
    CHECK(nn_bytes_in_use() == 2 * N * sizeof(float) && nn_bytes_peak() >= 5 * N * sizeof(float),
          "fence: in use back to %zu after a free, peak %zu", nn_bytes_in_use(), nn_bytes_peak());
    float *z = nn_alloc(0);
    nn_copy(z, z, 0);
    CHECK(z != NULL && z != a && z != c, "fence: a 0-float buffer is a distinct pointer ops accept with n = 0");
    nn_free(z);
    // bf16 storage: N values fill N / 2 floats exactly; a packed range may start mid-float
    for (int i = 0; i < N; i++) h[i] = (float)(i % 256 - 128) / 64.0f; // 8 significant bits: exact in bf16
    nn_to_backend(a, h, N);
    float *pk = nn_alloc(N / 2), *u = nn_alloc(N);
    nn_pack_bf16((uint16_t *)pk, a, N);
    nn_unpack_bf16(u, (const uint16_t *)pk, N);
    float h2[N];
    nn_to_host(h2, u, N);
    int rt_ok = !memcmp(h, h2, sizeof h);
    nn_zero(pk, N / 2), nn_zero(u, N);
    nn_pack_bf16((uint16_t *)pk + 1, a + 1, N - 1); // bytes 2 .. 2N of the N / 2 floats
    nn_unpack_bf16(u + 1, (const uint16_t *)pk + 1, N - 1);
    nn_to_host(h2, u, N);
    rt_ok &= h2[0] == 0.0f && !memcmp(h + 1, h2 + 1, (N - 1) * sizeof(float));
    CHECK(rt_ok, "fence: nn_pack_bf16 / nn_unpack_bf16 of N values through N / 2 floats, and of N - 1 from bf16 "
          "offset 1 (round trips exact)");
    nn_free(pk), nn_free(u);
    nn_free(a);
    nn_free(c);

    // --- what must die
    char msg[8192];
    int st = test_run_capture(fence_test_read_backend, NULL, msg, sizeof msg);
    printf("  message: %.*s\n", (int)strcspn(msg, "\n"), msg);
    CHECK(st != 0 && strstr(msg, "host code touched backend memory at") && strstr(msg, "inside an allocation of 1000 floats") &&
              strstr(msg, "float offset 17") && strstr(msg, "fence_test_read_backend") && !strstr(msg, "read 0"),
          "fence: host code reading backend memory dies: message, buffer, offset and a backtrace naming the function");
    st = test_run_capture(fence_test_write_backend, NULL, msg, sizeof msg);
    printf("  message: %.*s\n", (int)strcspn(msg, "\n"), msg);
    CHECK(st != 0 && strstr(msg, "host code touched backend memory at") && strstr(msg, "fence_test_write_backend") &&
              !strstr(msg, "wrote"),
          "fence: host code writing backend memory dies, the backtrace names the function");
    CHECK_DIES(touch_freed, NULL, "not inside any live allocation", "fence: host code touching a freed buffer dies");
    CHECK_DIES(host_ptr_to_op, NULL, "nn_fill: parameter x = ", "fence: a malloc'd pointer passed to nn_fill dies");
    CHECK_DIES(host_ptr_to_op, NULL, "is not backend memory", "fence: ... and says it is not backend memory");
    CHECK_DIES(stack_ptr_to_op, NULL, "nn_axpy: parameter x = ", "fence: a stack array passed to nn_axpy dies");
    CHECK_DIES(backend_as_host_dst, NULL, "nn_to_host: parameter host_dst", "fence: a backend buffer as nn_to_host's host_dst dies");
    CHECK_DIES(backend_as_host_src, NULL, "nn_to_backend: parameter host_src", "fence: a backend buffer as nn_to_backend's host_src dies");
    CHECK_DIES(copy_past_end, NULL, "covers 1001 floats", "fence: nn_copy of n + 1 floats from an n-float buffer dies");
    CHECK_DIES(fill_offset_past_end, NULL, "1 floats past the end", "fence: nn_fill from an interior pointer past the end dies");
    CHECK_DIES(conv_weights_too_small, NULL, "conv2d_forward: parameter w", "fence: conv2d_forward with a too small weight buffer dies (extents.txt)");
    CHECK_DIES(freed_to_op, NULL, "nn_scale: parameter x", "fence: a freed buffer passed to nn_scale dies");
    CHECK_DIES(double_free, NULL, "nn_free(", "fence: a double free dies");
    CHECK_DIES(misaligned, NULL, "not float-aligned", "fence: a misaligned pointer dies");
    CHECK_DIES(pack_past_end, NULL, "nn_pack_bf16: parameter dst", "fence: nn_pack_bf16 of N + 1 values into N / 2 floats dies");
    CHECK_DIES(pack_past_end, NULL, "covers 1001 bf16 values", "fence: ... counting the packed extent in bf16 values");
    CHECK_DIES(pack_odd_offset_past_end, NULL, "1 bf16 values past the end",
               "fence: nn_pack_bf16 of N values from bf16 offset 1 of N / 2 floats dies (1 value past the end)");
    CHECK_DIES(unpack_past_end, NULL, "nn_unpack_bf16: parameter src", "fence: nn_unpack_bf16 reading past a packed buffer dies");
    CHECK_DIES(pack_misaligned, NULL, "not 2-byte-aligned", "fence: a packed pointer at an odd byte dies");
    return test_summary();
}
