// report.h: evaluation figures (PNG via libpng) and the frames they show.
//
// FrameSet: during `lola eval`, the frames of the first evaluated trajectory at a few selected
// states (member 0 of each method, physical units) are collected and written to eval/frames.h5:
//   truth, autoencoder, persistence, diffusion, surrogate   float32 (n_sel, C, H, W) each (a
//       method that did not run is absent)
//   @lead_times int64 (n_sel), @states int64 (n_sel), @fields (C strings), @trajectory int64
// report_figures(eval_dir) then reads eval/stats.csv and eval/frames.h5 and writes
//   eval/frames.png        frame grid: rows truth / AE / diffusion member 0 / solver, columns
//                          selected lead times, for each field (paper Figure 3)
//   eval/vrmse.png         mean VRMSE vs lead time per method (paper Figure 6)
//   eval/spread_skill.png  ensemble spread vs RMSE of the ensemble mean per lead time (diffusion)
// and prints their paths.
#ifndef LOLA_REPORT_H
#define LOLA_REPORT_H

#include <stdint.h>

#include "well.h"

// Sources, equal to stage_eval's method indices, plus the ground truth.
enum { FRAME_AE = 0, FRAME_PERSIST = 1, FRAME_DM = 2, FRAME_NS = 3, FRAME_TRUTH = 4, FRAME_SOURCES = 5 };
#define FRAME_MAX_SEL 4

typedef struct {
    int C, H, W, L_tot, context, stride;
    int n_sel;
    int sel[FRAME_MAX_SEL];      // selected state indices t
    float *data[FRAME_SOURCES];  // (n_sel, C, H, W) per source, NULL until offered
} FrameSet;

// Selects up to FRAME_MAX_SEL states evenly spread over the predicted ones (t >= context).
void frameset_init(FrameSet *f, int C, int H, int W, int L_tot, int context, int stride);
// Keeps v (C, H, W) when t is a selected state (v is member 0 of the source at state t).
void frameset_offer(FrameSet *f, int source, int t, const float *v);
// Writes eval/frames.h5 (layout above); channel names from s.
void frameset_write(const FrameSet *f, const WellSplit *s, int64_t trajectory, const char *path);
void frameset_free(FrameSet *f);

// Writes the figures listed above from eval_dir/stats.csv and eval_dir/frames.h5 (each figure is
// skipped with a warning when its input is missing). Returns the number of figures written.
int report_figures(const char *eval_dir);

#endif
