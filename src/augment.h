// augment.h: The Well's random geometric augmentations and LoLa's LogScalars (lola-spec.md §1.3;
// the_well/data/augmentation.py RandomAxisFlip/RandomAxisPermute/RandomAxisRoll, lola/data.py
// LogScalars), drawn from an explicit Rng.
//
//   random_axis_flip    each spatial axis flipped independently with p = 0.5; a vector component
//                       along a flipped axis changes sign (t2: sign (-1)^(flips of i + flips of j));
//                       that axis's BC pair is swapped lo<->hi.
//   random_axis_permute uniform random permutation p of the axes (p = 1): new axis j = old axis
//                       p[j] (torch.movedim(source=p, destination=0..D-1)), vector components
//                       likewise (index_select with p), BC rows likewise (bc[p]). Needs a square
//                       (cubic) grid: augment_check dies otherwise.
//   random_axis_roll    every axis whose BC is PERIODIC on both sides (after the previous
//                       augmentations) is rolled by a uniform integer in [0, size) (torch.roll:
//                       out[i] = in[(i - shift) mod size]); BCs unchanged.
//   log_scalars         natural log of the constant scalars whose lower-cased name is rayleigh,
//                       prandtl or rho0. LoLa compares key.lower() with the literal "T0", so T0 is
//                       never logged: reproduced on purpose.
// Augmentations run in list order; each draws from the Rng when it runs (flip: one uniform per
// axis; permute: Fisher-Yates; roll: one rng_below per periodic axis). Geometric augmentations are
// skipped on non-cartesian grids (as in the_well). The same draw applies to every frame of a
// sample. The label is computed after augmentation.
//
// Implementation: the draws are composed into one AugPlan, an index map from output to input
// coordinates (per output axis: source axis, direction, offset) plus a channel map (source channel,
// sign). augment_gather applies it (and the transform/z-score) in one pass from the raw field
// buffer to the output, so a sample costs one read and one write of its floats.
#ifndef LOLA_AUGMENT_H
#define LOLA_AUGMENT_H

#include <stdint.h>

#include "rng.h"
#include "well.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { AUG_FLIP = 1, AUG_PERMUTE = 2, AUG_ROLL = 3, AUG_LOG_SCALARS = 4 } AugKind;
#define AUG_MAX 8

typedef struct {
    int n;
    int op[AUG_MAX]; // AugKind, in application order
} AugmentList;

// "random_axis_flip", "random_axis_permute", "random_axis_roll", "log_scalars" -> AugKind, or -1.
int augment_parse(const char *name);
const char *augment_name(int kind);
// Builds a list from names; dies naming the bad entry (`what` names the source, e.g. the config).
void augment_list_init(AugmentList *a, const char *const *names, int n, const char *what);
// Dies if the list cannot apply to this split (permute on a non-square grid).
void augment_check(const AugmentList *a, const WellSplit *s);

// One recorded draw (for tests and reproducibility logs).
typedef struct {
    int kind;
    int v[WELL_MAX_DIMS]; // flip: mask per axis; permute: permutation; roll: shift per axis (0 if not rolled)
} AugStep;

typedef struct AugPlan {
    int n_dims;
    int64_t shape[WELL_MAX_DIMS];   // sizes of the output axes (original sizes permuted)
    int src_axis[WELL_MAX_DIMS];    // output axis j reads input axis src_axis[j]
    int dir[WELL_MAX_DIMS];         // +1 or -1
    int64_t off[WELL_MAX_DIMS];     // input index = (dir*i + off) mod size
    int comp_sign[WELL_MAX_DIMS];   // output component k = comp_sign[k] * input component src_axis[k]
    int bc[WELL_MAX_DIMS][2];       // boundary codes after augmentation
    int log_scalars;                // 1: log rayleigh/prandtl/rho0 in the label
    int geometric;                  // 0 when the plan is the identity map
    int n_steps;
    AugStep steps[AUG_MAX];
} AugPlan;

// Identity plan for one file of the split (its BCs, no log).
void augment_identity(AugPlan *p, const WellSplit *s, int file);
// Draws a plan for one sample of `file` from `rng` (list order; see above).
void augment_draw(AugPlan *p, const AugmentList *a, const WellSplit *s, int file, Rng *rng);
// Applies one explicit step (used by augment_draw and by tests): flip mask / permutation / shifts.
void augment_apply_step(AugPlan *p, const AugStep *st);

// Label θ for (file, traj) under plan p (NULL = identity): constant scalars (logged when
// p->log_scalars and the name qualifies) then bc flattened [ax0_lo, ax0_hi, ...]. label_dim floats.
void augment_label(const AugPlan *p, const WellSplit *s, int file, int64_t traj, float *label);
// 1 if LoLa's LogScalars logs a scalar of this name (rayleigh, prandtl, rho0; not T0).
int augment_logs_scalar(const char *name);

// Gathers nframes frames from the raw read buffer into the output, applying the plan (NULL =
// identity) and then the pre-processing (NULL = none).
// raw: the fields one after another, field f as (nframes, prod(shape), ncomp_f) (file layout).
// out: element (frame l, channel c, point p) at out[l*frame_stride + c*chan_stride + p].
void augment_gather(const AugPlan *p, const struct Preprocess *pre, const WellSplit *s,
                    const float *raw, int nframes, float *out, int64_t frame_stride, int64_t chan_stride);

#ifdef __cplusplus
}
#endif
#endif
