// augment.c: augmentation draws composed into one index map, and the fused gather (augment.h).
#include "augment.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "transform.h"

static const char *AUG_NAMES[] = {"", "random_axis_flip", "random_axis_permute", "random_axis_roll", "log_scalars"};

int augment_parse(const char *name) {
    for (int k = 1; k <= 4; k++)
        if (name && strcmp(name, AUG_NAMES[k]) == 0) return k;
    return -1;
}

const char *augment_name(int kind) { return (kind >= 1 && kind <= 4) ? AUG_NAMES[kind] : "?"; }

void augment_list_init(AugmentList *a, const char *const *names, int n, const char *what) {
    if (!what) what = "dataset.augment";
    memset(a, 0, sizeof(*a));
    if (n < 0 || n > AUG_MAX) lola_die("%s: %d augmentations (at most %d)", what, n, AUG_MAX);
    for (int i = 0; i < n; i++) {
        int k = augment_parse(names[i]);
        if (k < 0)
            lola_die_hint("known: random_axis_flip, random_axis_permute, random_axis_roll, log_scalars",
                          "%s[%d]: unknown augmentation '%s'", what, i, names[i] ? names[i] : "(null)");
        a->op[a->n++] = k;
    }
}

void augment_check(const AugmentList *a, const WellSplit *s) {
    for (int i = 0; i < a->n; i++) {
        if (a->op[i] != AUG_PERMUTE) continue;
        for (int d = 1; d < s->n_dims; d++)
            if (s->shape[d] != s->shape[0])
                lola_die_hint("remove random_axis_permute from dataset.augment for non-square data",
                              "random_axis_permute needs a square grid, but the %s split of %s is %lldx%lld%s",
                              s->split, s->physics_names[0], (long long)s->shape[0], (long long)s->shape[1],
                              s->n_dims == 3 ? "x..." : "");
    }
}

int augment_logs_scalar(const char *name) {
    char low[WELL_NAME_LEN];
    size_t n = strlen(name);
    if (n >= sizeof(low)) n = sizeof(low) - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = 0;
    // LoLa: key.lower() in ("rayleigh", "prandtl", "rho0", "T0"): the upper-case "T0" can never
    // match a lower-cased key, so T0 is not logged. Kept as in the reference.
    return strcmp(low, "rayleigh") == 0 || strcmp(low, "prandtl") == 0 || strcmp(low, "rho0") == 0 ||
           strcmp(low, "T0") == 0;
}

void augment_identity(AugPlan *p, const WellSplit *s, int file) {
    memset(p, 0, sizeof(*p));
    p->n_dims = s->n_dims;
    for (int d = 0; d < s->n_dims; d++) {
        p->shape[d] = s->shape[d];
        p->src_axis[d] = d;
        p->dir[d] = 1;
        p->off[d] = 0;
        p->comp_sign[d] = 1;
        p->bc[d][0] = s->files[file].bc[d][0];
        p->bc[d][1] = s->files[file].bc[d][1];
    }
}

static int64_t pmod(int64_t a, int64_t n) {
    int64_t r = a % n;
    return r < 0 ? r + n : r;
}

void augment_apply_step(AugPlan *p, const AugStep *st) {
    const int D = p->n_dims;
    if (p->n_steps < AUG_MAX) p->steps[p->n_steps++] = *st;
    switch (st->kind) {
    case AUG_FLIP:
        for (int a = 0; a < D; a++) {
            if (!st->v[a]) continue;
            // T'[i] = T[n-1-i] and T[i] = orig[dir*i + off]  =>  dir' = -dir, off' = off + dir*(n-1)
            p->off[a] = pmod(p->off[a] + p->dir[a] * (p->shape[a] - 1), p->shape[a]);
            p->dir[a] = -p->dir[a];
            p->comp_sign[a] = -p->comp_sign[a];
            int t = p->bc[a][0];
            p->bc[a][0] = p->bc[a][1];
            p->bc[a][1] = t;
            p->geometric = 1;
        }
        break;
    case AUG_PERMUTE: {
        AugPlan q = *p;
        int ident = 1;
        for (int j = 0; j < D; j++) {
            int k = st->v[j];
            if (k < 0 || k >= D) lola_die("augment: permutation entry %d = %d out of range", j, k);
            if (k != j) ident = 0;
            q.shape[j] = p->shape[k];
            q.src_axis[j] = p->src_axis[k];
            q.dir[j] = p->dir[k];
            q.off[j] = p->off[k];
            q.comp_sign[j] = p->comp_sign[k];
            q.bc[j][0] = p->bc[k][0];
            q.bc[j][1] = p->bc[k][1];
        }
        *p = q;
        if (!ident) p->geometric = 1;
        break;
    }
    case AUG_ROLL:
        for (int a = 0; a < D; a++) {
            if (!st->v[a]) continue;
            // T'[i] = T[(i - r) mod n]  =>  off' = off - dir*r
            p->off[a] = pmod(p->off[a] - p->dir[a] * (int64_t)st->v[a], p->shape[a]);
            p->geometric = 1;
        }
        break;
    case AUG_LOG_SCALARS: p->log_scalars = 1; break;
    default: lola_die("augment: unknown step kind %d", st->kind);
    }
}

void augment_draw(AugPlan *p, const AugmentList *a, const WellSplit *s, int file, Rng *rng) {
    augment_identity(p, s, file);
    const int D = s->n_dims;
    const int cartesian = strcmp(s->grid_type, "cartesian") == 0;
    for (int i = 0; i < a->n; i++) {
        AugStep st;
        memset(&st, 0, sizeof(st));
        st.kind = a->op[i];
        switch (st.kind) {
        case AUG_FLIP:
            if (!cartesian) continue;
            for (int d = 0; d < D; d++) st.v[d] = rng_uniform(rng) < 0.5;
            break;
        case AUG_PERMUTE:
            if (!cartesian) continue;
            for (int d = 0; d < D; d++) st.v[d] = d;
            for (int d = D - 1; d > 0; d--) {
                int j = (int)rng_below(rng, (uint64_t)d + 1);
                int t = st.v[d];
                st.v[d] = st.v[j];
                st.v[j] = t;
            }
            break;
        case AUG_ROLL:
            if (!cartesian) continue;
            for (int d = 0; d < D; d++)
                if (p->bc[d][0] == WELL_PERIODIC && p->bc[d][1] == WELL_PERIODIC)
                    st.v[d] = (int)rng_below(rng, (uint64_t)p->shape[d]);
            break;
        case AUG_LOG_SCALARS: break;
        default: lola_die("augment: unknown augmentation code %d", st.kind);
        }
        augment_apply_step(p, &st);
    }
}

void augment_label(const AugPlan *p, const WellSplit *s, int file, int64_t traj, float *label) {
    const double *sc = well_scalars(s, file, traj);
    const int logs = p && p->log_scalars;
    int n = 0;
    for (int i = 0; i < s->n_scalars; i++) {
        double v = sc[i];
        if (logs && augment_logs_scalar(s->scalar_names[i])) v = log(v);
        label[n++] = (float)v;
    }
    for (int d = 0; d < s->n_dims; d++)
        for (int e = 0; e < 2; e++) label[n++] = (float)(p ? p->bc[d][e] : s->files[file].bc[d][e]);
}

// Gathers one output frame of one channel (no sign, no transform): dst[q] = src[in(q) * ncomp]
// where in(q) = sum_j tab[j][i_j]. The last two output axes are walked in 64x64 tiles so a
// transposed read (permute) stays in cache; leading axes (3-D) are an outer loop.
static void gather_frame(const float *src, int64_t *const *tab, const int64_t *n, int D, int ncomp, float *dst) {
    enum { TB = 64 };
    if (D == 1) {
        for (int64_t i = 0; i < n[0]; i++) dst[i] = src[tab[0][i] * ncomp];
        return;
    }
    const int64_t na = n[D - 2], nb = n[D - 1];
    const int64_t *ta = tab[D - 2], *tb = tab[D - 1];
    const int64_t planes = D == 3 ? n[0] : 1;
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *sp = src + (D == 3 ? tab[0][pl] * ncomp : 0);
        float *dp = dst + pl * na * nb;
        for (int64_t i0 = 0; i0 < na; i0 += TB)
            for (int64_t j0 = 0; j0 < nb; j0 += TB) {
                const int64_t i1 = i0 + TB < na ? i0 + TB : na, j1 = j0 + TB < nb ? j0 + TB : nb;
                for (int64_t i = i0; i < i1; i++) {
                    const float *row = sp + ta[i] * ncomp;
                    float *d = dp + i * nb;
                    if (ncomp == 1)
                        for (int64_t j = j0; j < j1; j++) d[j] = row[tb[j]];
                    else
                        for (int64_t j = j0; j < j1; j++) d[j] = row[tb[j] * ncomp];
                }
            }
    }
}

void augment_gather(const AugPlan *p, const Preprocess *pre, const WellSplit *s, const float *raw,
                    int nframes, float *out, int64_t frame_stride, int64_t chan_stride) {
    const int D = s->n_dims, C = s->n_channels;
    const int64_t P = s->frame_size;
    AugPlan ident;
    if (!p) {
        augment_identity(&ident, s, 0);
        p = &ident;
    }
    Preprocess none;
    if (!pre) {
        memset(&none, 0, sizeof(none));
        none.n_channels = C;
        pre = &none;
    } else if (pre->n_channels != C) {
        lola_die("preprocessing has %d channels but the %s split has %d", pre->n_channels, s->split, C);
    }
    // Input strides (row-major over the stored shape) and per-output-axis offset tables.
    int64_t in_stride[WELL_MAX_DIMS];
    in_stride[D - 1] = 1;
    for (int d = D - 2; d >= 0; d--) in_stride[d] = in_stride[d + 1] * s->shape[d + 1];
    int64_t tabsz = 0;
    for (int j = 0; j < D; j++) tabsz += p->shape[j];
    int64_t tab_store[3 * 4096];
    int64_t *tabbuf = tabsz <= (int64_t)(sizeof(tab_store) / sizeof(tab_store[0])) ? tab_store : LOLA_NEW(int64_t, tabsz);
    int64_t *tab[WELL_MAX_DIMS];
    int64_t pos = 0;
    for (int j = 0; j < D; j++) {
        tab[j] = tabbuf + pos;
        pos += p->shape[j];
        const int64_t n = p->shape[j];
        for (int64_t i = 0; i < n; i++) tab[j][i] = in_stride[p->src_axis[j]] * pmod(p->dir[j] * i + p->off[j], n);
    }
    const int last = D - 1;
    const int64_t nl = p->shape[last];
    const int64_t rows = P / nl;
    // Is the last output axis the stored last axis, unflipped? Then each row is two contiguous runs.
    const int contiguous_rows = p->src_axis[last] == D - 1 && p->dir[last] == 1;
    const int64_t roff = p->off[last];

    int64_t fbase = 0; // float offset of the current field in raw
    for (int f = 0; f < s->n_fields; f++) {
        const WellField *fd = &s->fields[f];
        const int ncomp = fd->ncomp;
        for (int kk = 0; kk < ncomp; kk++) {
            const int c = fd->channel0 + kk;
            const WellChannel *ch = &s->channels[c];
            int src_k = 0;
            float sign = 1.0f;
            if (fd->order == 1) {
                src_k = p->src_axis[ch->comp[0]];
                sign = (float)p->comp_sign[ch->comp[0]];
            } else if (fd->order == 2) {
                src_k = p->src_axis[ch->comp[0]] * D + p->src_axis[ch->comp[1]];
                sign = (float)(p->comp_sign[ch->comp[0]] * p->comp_sign[ch->comp[1]]);
            }
            for (int l = 0; l < nframes; l++) {
                const float *src = raw + fbase + (int64_t)l * P * ncomp + src_k;
                float *dst = out + (int64_t)l * frame_stride + (int64_t)c * chan_stride;
                if (contiguous_rows && ncomp == 1) {
                    // each output row is two contiguous runs of an input row: one fused pass
                    for (int64_t r = 0; r < rows; r++) {
                        int64_t base = 0, rr = r;
                        for (int j = last - 1; j >= 0; j--) {
                            base += tab[j][rr % p->shape[j]];
                            rr /= p->shape[j];
                        }
                        float *drow = dst + r * nl;
                        preprocess_channel(pre, c, sign, src + base + roff, drow, nl - roff);
                        if (roff) preprocess_channel(pre, c, sign, src + base, drow + (nl - roff), roff);
                    }
                } else {
                    // gather the frame (tiled), then sign + transform in place while it is in cache
                    gather_frame(src, tab, p->shape, D, ncomp, dst);
                    preprocess_channel(pre, c, sign, dst, dst, P);
                }
            }
        }
        fbase += (int64_t)nframes * P * ncomp;
    }
    if (tabbuf != tab_store) free(tabbuf);
}
