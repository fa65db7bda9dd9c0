// test_rollout.c: rollout bookkeeping (lola-spec.md 5.2, 10.3): calls per trajectory, which states
// are kept, the observation passed between windows, and the non-finite stop.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nn.h"
#include "rollout.h"
#include "test.h"

typedef struct {
    RolloutConfig rc;
    int *seen; // states received by the sink
    int bad_member, bad_call;
    int max_obs_err;
    int first_err;
    int expected_first;
} Ctx;

// "Physics": every generated state's value is its trajectory index plus 1000 * member (context
// states carry no member offset); observed frames are copied through. A correct rollout therefore
// yields state t == t (+ 1000 b past the context) and observations equal to earlier outputs.
static void emulate(void *vctx, float *x_hat, const float *y, const float *mask, int call, int first) {
    Ctx *c = (Ctx *)vctx;
    const RolloutConfig *rc = &c->rc;
    size_t S = rc->state, win = (size_t)rc->channels * rc->window * S;
    float *hy = LOLA_NEW(float, rc->batch * win), *hx = LOLA_NEW(float, rc->batch * win);
    nn_to_host(hy, y, rc->batch * win);
    int k = 0;
    while (k < rc->window && mask[k] == 1.0f) k++;
    if (first != c->expected_first) c->first_err = 1;
    c->expected_first = first + rc->window - rc->overlap;
    for (int b = 0; b < rc->batch; b++)
        for (int ch = 0; ch < rc->channels; ch++) {
            // observed frames must hold states first..first+k-1
            for (int l = 0; l < k; l++)
                for (size_t p = 0; p < S; p++) {
                    float want = (float)(first + l) + (first + l >= rc->context ? 1000.0f * b : 0.0f);
                    if (hy[b * win + (ch * rc->window + l) * S + p] != want) c->max_obs_err = 1;
                }
            for (int l = 0; l < rc->window; l++)
                for (size_t p = 0; p < S; p++) {
                    float v = l < k ? hy[b * win + (ch * rc->window + l) * S + p] : (float)(first + l) + 1000.0f * b;
                    if (call == c->bad_call && b == c->bad_member && l == rc->window - 1) v = NAN;
                    hx[b * win + (ch * rc->window + l) * S + p] = v;
                }
        }
    nn_to_backend(x_hat, hx, rc->batch * win);
    free(hy);
    free(hx);
}

static void sink(void *vctx, int t, const float *states) {
    Ctx *c = (Ctx *)vctx;
    const RolloutConfig *rc = &c->rc;
    int ok = 1;
    for (int b = 0; b < rc->batch; b++)
        for (size_t i = 0; i < rc->channels * rc->state; i++) ok &= states[(size_t)b * rc->channels * rc->state + i] == (float)t + (t >= rc->context ? 1000.0f * b : 0.0f);
    c->seen[t] = ok ? 1 : -1;
}

static int run_case(int context, int rollout, int expected_calls) {
    Ctx c;
    memset(&c, 0, sizeof c);
    c.rc = (RolloutConfig){5, context, context, 2, 6, 3};
    c.bad_call = c.bad_member = -1;
    c.seen = calloc(rollout, sizeof(int));
    float *z = LOLA_NEW(float, 2 * context * 6);
    for (int ch = 0; ch < 2; ch++)
        for (int l = 0; l < context; l++)
            for (int p = 0; p < 6; p++) z[(ch * context + l) * 6 + p] = (float)l;
    int calls = rollout_run(&c.rc, emulate, &c, z, rollout, sink, &c);
    int all = 1;
    for (int t = 0; t < rollout; t++) all &= c.seen[t] == 1;
    CHECK(calls == expected_calls && rollout_calls(&c.rc, rollout) == expected_calls,
          "context %d, %d states: %d emulator calls (got %d)", context, rollout, expected_calls, calls);
    CHECK(all && !c.max_obs_err && !c.first_err, "context %d, %d states: every state kept once, in order, observations carried over", context, rollout);
    free(c.seen);
    free(z);
    return calls;
}

static void nan_case(void *arg) {
    (void)arg;
    Ctx c;
    memset(&c, 0, sizeof c);
    c.rc = (RolloutConfig){5, 1, 1, 2, 6, 3};
    c.bad_call = 2;
    c.bad_member = 1;
    c.seen = calloc(26, sizeof(int));
    float z[12] = {0};
    rollout_run(&c.rc, emulate, &c, z, 26, sink, &c);
}

int main(void) {
    nn_init(-1);
    run_case(1, 26, 7);  // Euler, 26 states (lola-spec.md 10.3)
    run_case(1, 42, 11); // RB from start 32
    run_case(1, 46, 12); // RB from start 16 / TGC
    run_case(2, 26, 8);  // 5 + 3 * 7 >= 26
    run_case(3, 26, 12); // 5 + 2 * 11 >= 26
    run_case(1, 3, 1);   // shorter than a window
    CHECK_DIES(nan_case, NULL, "member 1", "a non-finite state stops the rollout naming the call, state and member");
    return test_summary();
}
