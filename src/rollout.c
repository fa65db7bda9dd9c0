// rollout.c: see rollout.h.
#include "rollout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nn.h"

int rollout_calls(const RolloutConfig *rc, int rollout) {
    if (rollout <= rc->window) return 1;
    int rest = rollout - rc->window, per = rc->window - rc->overlap;
    return 1 + (rest + per - 1) / per;
}

static void check_config(const RolloutConfig *rc, int rollout) {
    if (rc->window < 2) lola_die("rollout: window %d < 2", rc->window);
    if (rc->context < 1 || rc->context >= rc->window)
        lola_die_hint("set eval.context between 1 and trajectory.length - 1", "rollout: context %d outside [1, %d]", rc->context, rc->window - 1);
    if (rc->overlap < 1 || rc->overlap >= rc->window)
        lola_die_hint("set eval.overlap between 1 and trajectory.length - 1", "rollout: overlap %d outside [1, %d]", rc->overlap, rc->window - 1);
    if (rc->batch < 1 || rc->channels < 1 || rc->state < 1) lola_die("rollout: empty batch or state");
    if (rollout < rc->context) lola_die("rollout: %d states requested but %d context states given", rollout, rc->context);
}

int rollout_run(const RolloutConfig *rc, EmulateFn fn, void *fn_ctx, const float *z_ctx, int rollout,
                StateSink sink, void *sink_ctx) {
    check_config(rc, rollout);
    const int W = rc->window, C = rc->channels, B = rc->batch;
    const size_t S = rc->state, win = (size_t)C * W * S, st = (size_t)C * S;
    float *h_y = LOLA_NEW(float, (size_t)B * win), *h_x = LOLA_NEW(float, (size_t)B * win);
    float *h_state = LOLA_NEW(float, (size_t)B * st);
    float *y = nn_alloc((size_t)B * win), *x_hat = nn_alloc((size_t)B * win);
    float mask[64];
    if (W > 64) lola_die("rollout: window %d too long", W);
    // First observation: the context states, replicated over members.
    int k = rc->context;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int l = 0; l < k; l++)
                memcpy(h_y + (size_t)b * win + ((size_t)c * W + l) * S, z_ctx + ((size_t)c * k + l) * S, S * sizeof(float));
    int produced = 0, calls = 0;
    while (produced < rollout) {
        int first = calls == 0 ? 0 : produced - rc->overlap;
        for (int l = 0; l < W; l++) mask[l] = l < k ? 1.0f : 0.0f;
        nn_to_backend(y, h_y, (size_t)B * win);
        fn(fn_ctx, x_hat, y, mask, calls, first);
        nn_to_host(h_x, x_hat, (size_t)B * win);
        // Emit the new states.
        for (int l = calls == 0 ? 0 : rc->overlap; l < W && produced < rollout; l++, produced++) {
            for (int b = 0; b < B; b++)
                for (int c = 0; c < C; c++) {
                    const float *src = h_x + (size_t)b * win + ((size_t)c * W + l) * S;
                    for (size_t p = 0; p < S; p++)
                        if (!isfinite(src[p]))
                            lola_die("rollout: emulator call %d produced a non-finite value at state %d (window position %d), member %d, channel %d",
                                     calls, produced, l, b, c);
                    memcpy(h_state + ((size_t)b * C + c) * S, src, S * sizeof(float));
                }
            if (sink) sink(sink_ctx, produced, h_state);
        }
        calls++;
        // Next observation: the last `overlap` states of this window.
        k = rc->overlap;
        memset(h_y, 0, (size_t)B * win * sizeof(float));
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                for (int l = 0; l < k; l++)
                    memcpy(h_y + (size_t)b * win + ((size_t)c * W + l) * S, h_x + (size_t)b * win + ((size_t)c * W + (W - k + l)) * S,
                           S * sizeof(float));
    }
    nn_free(y);
    nn_free(x_hat);
    free(h_y);
    free(h_x);
    free(h_state);
    return calls;
}
