// rollout.h: LoLa's autoregressive rollout (lola/emulation.py emulate_rollout, lola-spec.md 5.2).
//
// A batch of B trajectories (the ensemble members) starts from `context` observed states. Each
// call of the emulator produces a window of W states from a window whose first k states are
// observed (k = context on the first call, overlap afterwards). The first call contributes all W
// states, later calls their states overlap..W-1; the observation of the next call is the last
// `overlap` states of the window just produced. States past `rollout` are dropped. With W = 5 and
// context = overlap = c each call adds 5 - c states: Euler (26 states, c = 1) takes 7 calls.
//
// Memory is bounded by the window: every produced state leaves the model buffers through the
// sink callback right away (copied to the host), so nothing of size `rollout` is held here.
#ifndef LOLA_ROLLOUT_H
#define LOLA_ROLLOUT_H

#include <stddef.h>

// Emulator: writes x_hat (B, C, W, S) (backend) for the window whose frames with frame_mask[l] = 1
// hold observed states in y (B, C, W, S) (zeros elsewhere). `call` counts calls from 0; `first`
// is the trajectory index of the window's first state (LoLa's i).
typedef void (*EmulateFn)(void *ctx, float *x_hat, const float *y, const float *frame_mask, int call, int first);
// Receives state t (0 <= t < rollout) of every member: states (B, C, S) on the host.
typedef void (*StateSink)(void *ctx, int t, const float *states);

typedef struct {
    int window;   // W (5)
    int context;  // observed states of the first window (1..W-1)
    int overlap;  // states shared by consecutive windows (1..W-1)
    int channels; // C
    size_t state; // S: points per channel of one state (h*w)
    int batch;    // B: ensemble members
} RolloutConfig;

// Number of emulator calls needed for `rollout` states.
int rollout_calls(const RolloutConfig *rc, int rollout);

// Runs the rollout. z_ctx (C, context, S) host: the encoded context states of one trajectory,
// replicated over the B members. Dies naming the call, state and member when a produced state is
// not finite. Returns the number of emulator calls.
int rollout_run(const RolloutConfig *rc, EmulateFn fn, void *fn_ctx, const float *z_ctx, int rollout,
                StateSink sink, void *sink_ctx);

#endif
