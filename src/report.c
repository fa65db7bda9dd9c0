// report.c: the evaluation figures (report.h), drawn with canvas.h and written as PNG.
//
//   frames.png        from frames.h5: per field a block of rows truth / autoencoder / diffusion
//                     (member 0) / surrogate (those present; persistence is left out, as in the
//                     paper's Figure 3, it is the context state repeated) x columns = the selected
//                     lead times, one colour scale per field (the truth's min/max over the shown
//                     frames, shared by every row of the block) with its colorbar.
//   vrmse.png         from stats.csv: mean VRMSE (relative == False, lead time > 0) over
//                     trajectories and fields per lead time, one line per method (paper Figure 6).
//   spread_skill.png  from stats.csv, diffusion rows: mean ensemble spread and mean RMSE of the
//                     ensemble mean per lead time (top), and the spread/skill ratio (bottom).
//
// Choices (not fixed by the paper or the spec):
// * Frame orientation: a frame is stored (H, W) = (x, y) (The Well's axis order). It is shown
//   with x horizontal (left to right) and y vertical pointing up (origin at the bottom-left,
//   matplotlib's origin="lower" on the transposed array), the physical orientation: for
//   Rayleigh-Benard (x 512, y 128, gravity along -y) the hot plate is at the bottom.
// * Colormap: viridis; a field whose truth takes both signs with min(|min|, |max|) >=
//   0.2 max(|min|, |max|) (a velocity, a momentum) gets the diverging blue-white-red map on the
//   symmetric range [-a, a], a = max(|min|, |max|), so white marks 0.
// * Panels: frames smaller than 128 pixels on their short side are enlarged by an integer factor
//   with nearest-neighbour (every data pixel stays a visible square); frames of 128..256 pixels
//   are shown 1:1; larger ones are reduced by area averaging to a 256-pixel short side.
// * vrmse.png has a logarithmic y axis when every plotted mean is > 0 (VRMSE spans from ~0.01
//   for the autoencoder to ~1 for persistence; the axis label says "log scale"), else linear.
// * Spread/skill ratio per row is (spread + 1e-3) / (rmse + 1e-3) (lola-spec.md 5.3, the
//   notebooks' definition), averaged per lead time; the title gives its mean over all rows.
// * A figure that cannot be written (libpng error, full disk) is a warning, not a fatal error:
//   the evaluation's CSV and summary are already on disk when the figures are drawn.
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canvas.h"
#include "common.h"
#include "report.h"

static const Rgb WHITE = {255, 255, 255}, INK = {25, 25, 25}, AXIS = {40, 40, 40}, GRID = {226, 226, 226},
                 GRID_MINOR = {242, 242, 242}, MUTED = {110, 110, 110}, PANEL_EDGE = {200, 200, 200};

#define TS 2 // text scale: 12-pixel advance for digits, 14-pixel cap height

// ---------------------------------------------------------------------------------------------
// stats.csv

#define MAX_METHODS 16
#define MAX_COLS 128

typedef struct {
    int method;
    double lead, vrmse, spread, rmse;
} StatRow;

typedef struct {
    char methods[MAX_METHODS][48];
    int n_methods;
    StatRow *rows; // rows with relative == False and lead time > 0
    size_t n, cap;
    int has_vrmse, has_spread, has_rmse;
    int n_traj, n_fields;  // distinct trajectory / field values among the kept rows (0: no column)
    size_t n_nonfinite;    // kept rows with a non-finite vrmse, spread or rmse
} Stats;

static void stats_free(Stats *st) {
    free(st->rows);
    memset(st, 0, sizeof *st);
}

// Splits a CSV line in place into at most max fields (double-quoted fields with "" escapes are
// unquoted). Returns the number of fields found (max + 1 when there are more).
static int csv_split(char *line, char **tok, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *start = p, *w = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else if (*p == 0) {
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            while (*p && *p != ',') p++; // text after the closing quote is dropped
        } else {
            while (*p && *p != ',') p++;
            w = p;
        }
        char end = *p;
        *w = 0;
        if (n < max) tok[n] = start;
        n++;
        if (end != ',') break;
        p++;
    }
    return n > max ? max + 1 : n;
}

// strtod over the whole field (surrounding blanks allowed); "nan"/"inf" accepted.
static int parse_num(const char *s, double *out) {
    char *end;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return 0;
    *out = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    return end != s && *end == 0;
}

static int parse_bool(const char *s, int *out) {
    while (*s == ' ') s++;
    if (!strcmp(s, "False") || !strcmp(s, "false") || !strcmp(s, "0")) *out = 0;
    else if (!strcmp(s, "True") || !strcmp(s, "true") || !strcmp(s, "1")) *out = 1;
    else return 0;
    return 1;
}

// Index of s in a growing list of distinct strings (hashed to 64-bit to keep memory small).
typedef struct {
    uint64_t *h;
    int n, cap;
} Distinct;

static void distinct_add(Distinct *d, const char *s) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) h = (h ^ *p) * 1099511628211ull;
    for (int i = 0; i < d->n; i++)
        if (d->h[i] == h) return;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->h = (uint64_t *)realloc(d->h, (size_t)d->cap * sizeof *d->h);
        if (!d->h) lola_die("out of memory reading stats");
    }
    d->h[d->n++] = h;
}

// Reads path. Returns 0, or -1 after a log_warn naming the file (and line) and what is wrong:
// no header, a required column missing (method, lead_time, relative), a row with the wrong number
// of fields, a value that does not parse. Unknown columns are ignored.
static int stats_read(const char *path, Stats *st) {
    memset(st, 0, sizeof *st);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        log_warn("report: cannot open '%s'", path);
        return -1;
    }
    char *line = NULL, *tok[MAX_COLS + 1];
    size_t lcap = 0;
    ssize_t len;
    long lineno = 0;
    int ncol = 0, c_method = -1, c_lead = -1, c_rel = -1, c_vrmse = -1, c_spread = -1, c_rmse = -1, c_traj = -1, c_field = -1;
    int rc = 0;
    Distinct trajs = {0}, fields = {0};
    while ((len = getline(&line, &lcap, fp)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        int n = csv_split(line, tok, MAX_COLS);
        if (ncol == 0) { // header
            if (n > MAX_COLS) {
                log_warn("report: '%s' line %ld: header has more than %d columns", path, lineno, MAX_COLS);
                rc = -1;
                break;
            }
            ncol = n;
            for (int i = 0; i < n; i++) {
                const char *h = tok[i];
                while (*h == ' ') h++;
                int *slot = !strcmp(h, "method") ? &c_method : !strcmp(h, "lead_time") ? &c_lead : !strcmp(h, "relative") ? &c_rel
                          : !strcmp(h, "vrmse") ? &c_vrmse : !strcmp(h, "spread") ? &c_spread : !strcmp(h, "rmse") ? &c_rmse
                          : !strcmp(h, "trajectory") ? &c_traj : !strcmp(h, "field") ? &c_field : NULL;
                if (slot && *slot < 0) *slot = i;
            }
            const char *missing = c_method < 0 ? "method" : c_lead < 0 ? "lead_time" : c_rel < 0 ? "relative" : NULL;
            if (missing) {
                log_warn("report: '%s' line %ld: header has no '%s' column", path, lineno, missing);
                rc = -1;
                break;
            }
            st->has_vrmse = c_vrmse >= 0;
            st->has_spread = c_spread >= 0;
            st->has_rmse = c_rmse >= 0;
            continue;
        }
        if (n != ncol) {
            log_warn("report: '%s' line %ld: %s%d fields, the header has %d", path, lineno, n > MAX_COLS ? "more than " : "",
                     n > MAX_COLS ? MAX_COLS : n, ncol);
            rc = -1;
            break;
        }
        int rel;
        double lead, v[3] = {NAN, NAN, NAN};
        const int cols[3] = {c_vrmse, c_spread, c_rmse};
        const char *names[3] = {"vrmse", "spread", "rmse"};
        const char *bad = NULL;
        if (!parse_bool(tok[c_rel], &rel)) bad = "relative";
        else if (!parse_num(tok[c_lead], &lead) || !isfinite(lead)) bad = "lead_time";
        for (int k = 0; k < 3 && !bad; k++)
            if (cols[k] >= 0 && !parse_num(tok[cols[k]], &v[k])) bad = names[k];
        if (bad) {
            int col = !strcmp(bad, "relative") ? c_rel : !strcmp(bad, "lead_time") ? c_lead : cols[!strcmp(bad, "vrmse") ? 0 : !strcmp(bad, "spread") ? 1 : 2];
            log_warn("report: '%s' line %ld: column '%s': cannot parse '%.40s'", path, lineno, bad, tok[col]);
            rc = -1;
            break;
        }
        if (rel || !(lead > 0)) continue; // absolute metrics, lead time > 0 (lola-spec.md 5.3)
        const char *mname = tok[c_method];
        int m = -1;
        for (int i = 0; i < st->n_methods; i++)
            if (!strcmp(st->methods[i], mname)) m = i;
        if (m < 0) {
            if (st->n_methods == MAX_METHODS) continue; // more methods than a legend can hold: ignored
            m = st->n_methods++;
            snprintf(st->methods[m], sizeof st->methods[m], "%s", mname);
        }
        if (st->n == st->cap) {
            st->cap = st->cap ? 2 * st->cap : 1024;
            st->rows = (StatRow *)realloc(st->rows, st->cap * sizeof *st->rows);
            if (!st->rows) lola_die("out of memory reading '%s'", path);
        }
        for (int k = 0; k < 3; k++)
            if (cols[k] >= 0 && !isfinite(v[k])) {
                st->n_nonfinite++;
                break;
            }
        st->rows[st->n++] = (StatRow){m, lead, v[0], v[1], v[2]};
        if (c_traj >= 0) distinct_add(&trajs, tok[c_traj]);
        if (c_field >= 0) distinct_add(&fields, tok[c_field]);
    }
    if (rc == 0 && ncol == 0) {
        log_warn("report: '%s' is empty (no header line)", path);
        rc = -1;
    }
    st->n_traj = trajs.n;
    st->n_fields = fields.n;
    free(trajs.h);
    free(fields.h);
    free(line);
    fclose(fp);
    if (rc != 0) stats_free(st);
    else if (st->n_nonfinite)
        log_warn("report: '%s': %zu rows with a non-finite metric are left out of the means", path, st->n_nonfinite);
    return rc;
}

// Per lead time means of one method's rows (each metric over its finite values; NaN if none).
typedef struct {
    int n;
    double *lead, *vrmse, *spread, *rmse, *ratio;
} Series;

static int cmp_row(const void *a, const void *b) {
    const StatRow *x = (const StatRow *)a, *y = (const StatRow *)b;
    if (x->method != y->method) return x->method < y->method ? -1 : 1;
    return x->lead < y->lead ? -1 : x->lead > y->lead;
}

static void series_free(Series *s) {
    free(s->lead);
    memset(s, 0, sizeof *s);
}

// Builds the series of every method (st->rows gets sorted by method, lead time).
static void series_build(Stats *st, Series *out) {
    qsort(st->rows, st->n, sizeof *st->rows, cmp_row);
    size_t i = 0;
    for (int m = 0; m < st->n_methods; m++) {
        Series *s = &out[m];
        memset(s, 0, sizeof *s);
        size_t j = i;
        int groups = 0;
        for (size_t k = i; k < st->n && st->rows[k].method == m; k++, j++)
            if (k == i || st->rows[k].lead != st->rows[k - 1].lead) groups++;
        s->lead = (double *)lola_calloc((size_t)(groups ? groups : 1) * 5, sizeof(double));
        s->vrmse = s->lead + groups;
        s->spread = s->vrmse + groups;
        s->rmse = s->spread + groups;
        s->ratio = s->rmse + groups;
        for (size_t k = i; k < j;) {
            double sum[4] = {0}, cnt[4] = {0}, lead = st->rows[k].lead;
            for (; k < j && st->rows[k].lead == lead; k++) {
                const StatRow *r = &st->rows[k];
                double vals[4] = {r->vrmse, r->spread, r->rmse, (r->spread + 1e-3) / (r->rmse + 1e-3)};
                for (int q = 0; q < 4; q++)
                    if (isfinite(vals[q])) sum[q] += vals[q], cnt[q] += 1;
            }
            int g = s->n++;
            s->lead[g] = lead;
            s->vrmse[g] = cnt[0] ? sum[0] / cnt[0] : NAN;
            s->spread[g] = cnt[1] ? sum[1] / cnt[1] : NAN;
            s->rmse[g] = cnt[2] ? sum[2] / cnt[2] : NAN;
            s->ratio[g] = cnt[3] ? sum[3] / cnt[3] : NAN;
        }
        i = j;
    }
}

// ---------------------------------------------------------------------------------------------
// Line plots

typedef struct {
    int x0, y0, x1, y1; // frame lines at columns x0, x1 and rows y0, y1
    PlotAxis ax, ay;
} Frame;

// Continuous canvas coordinates of a data point: frac 0 is the centre of the frame's bottom row
// y1 (left column x0), frac 1 that of its top row y0 (right column x1).
static double frame_x(const Frame *f, double v) { return f->x0 + 0.5 + plot_axis_frac(&f->ax, v) * (f->x1 - f->x0); }
static double frame_y(const Frame *f, double v) { return f->y1 + 0.5 - plot_axis_frac(&f->ay, v) * (f->y1 - f->y0); }

// Pads a fitted x axis by 3% on both sides so markers at the ends stay off the frame.
static void axis_pad(PlotAxis *a, double frac) {
    double d = frac * (a->hi - a->lo);
    a->lo -= d;
    a->hi += d;
}

// Grid lines (drawn first, under the data).
static void frame_grid(Canvas *c, const Frame *f) {
    double t[64], step;
    int n = plot_axis_minor_ticks(&f->ay, t, 64);
    for (int i = 0; i < n; i++) canvas_rect(c, f->x0, (int)floor(frame_y(f, t[i])), f->x1 - f->x0, 1, GRID_MINOR);
    n = plot_axis_ticks(&f->ay, t, 64, &step);
    for (int i = 0; i < n; i++) canvas_rect(c, f->x0, (int)floor(frame_y(f, t[i])), f->x1 - f->x0, 1, GRID);
    n = plot_axis_ticks(&f->ax, t, 64, &step);
    for (int i = 0; i < n; i++) canvas_rect(c, (int)floor(frame_x(f, t[i])), f->y0, 1, f->y1 - f->y0, GRID);
}

// Frame box, ticks, tick labels (x labels only when xlabels), axis labels (NULL: none).
static void frame_axes(Canvas *c, const Frame *f, int xlabels, const char *xlabel, const char *ylabel) {
    canvas_rect_outline(c, f->x0, f->y0, f->x1 - f->x0 + 1, f->y1 - f->y0 + 1, 1, AXIS);
    double t[64], step;
    char buf[32];
    int n = plot_axis_minor_ticks(&f->ay, t, 64);
    for (int i = 0; i < n; i++) canvas_rect(c, f->x0 - 3, (int)floor(frame_y(f, t[i])), 3, 1, AXIS);
    n = plot_axis_ticks(&f->ay, t, 64, &step);
    int ylab_w = 0;
    for (int i = 0; i < n; i++) {
        int y = (int)floor(frame_y(f, t[i]));
        canvas_rect(c, f->x0 - 6, y, 6, 1, AXIS);
        plot_format_tick(t[i], step, buf, sizeof buf);
        int w = canvas_text(c, f->x0 - 10, y, buf, TS, TEXT_RIGHT | TEXT_MIDDLE, INK);
        ylab_w = w > ylab_w ? w : ylab_w;
    }
    n = plot_axis_ticks(&f->ax, t, 64, &step);
    for (int i = 0; i < n; i++) {
        int x = (int)floor(frame_x(f, t[i]));
        canvas_rect(c, x, f->y1 + 1, 1, 6, AXIS);
        if (xlabels) {
            plot_format_tick(t[i], step, buf, sizeof buf);
            canvas_text(c, x, f->y1 + 12, buf, TS, TEXT_CENTER, INK);
        }
    }
    if (xlabel) canvas_text(c, (f->x0 + f->x1) / 2, f->y1 + 40, xlabel, TS, TEXT_CENTER, INK);
    if (ylabel) canvas_text_vertical(c, f->x0 - 10 - ylab_w - 14 - FONT_CAP_H * TS / 2, (f->y0 + f->y1) / 2, ylabel, TS, TEXT_CENTER | TEXT_MIDDLE, INK);
}

typedef struct {
    Rgb col;
    double dash; // 0: solid
    int square;  // marker: square instead of disc
} LineStyle;

static void draw_series(Canvas *c, const Frame *f, const double *x, const double *y, int n, LineStyle ls) {
    double *px = LOLA_NEW(double, 2 * (size_t)(n ? n : 1)), *py = px + n;
    for (int i = 0; i < n; i++) {
        double fy = plot_axis_frac(&f->ay, y[i]);
        px[i] = frame_x(f, x[i]);
        py[i] = isfinite(fy) ? frame_y(f, y[i]) : NAN; // NaN (or <= 0 on a log axis) breaks the line
    }
    canvas_polyline(c, px, py, n, 2.5, ls.dash, ls.dash * 0.7, ls.col);
    for (int i = 0; i < n; i++) {
        if (!isfinite(py[i])) continue;
        if (ls.square) canvas_rect(c, (int)floor(px[i]) - 3, (int)floor(py[i]) - 3, 7, 7, ls.col);
        else canvas_disc(c, px[i], py[i], 3.5, ls.col);
    }
    free(px);
}

// Legend entry k at the right of the frame.
static void legend_entry(Canvas *c, const Frame *f, int k, const char *label, LineStyle ls) {
    double y = f->y0 + 14 + 28 * k + 0.5, x = f->x1 + 22;
    double xs[2] = {x, x + 34}, ys[2] = {y, y};
    canvas_polyline(c, xs, ys, 2, 2.5, ls.dash, ls.dash * 0.7, ls.col);
    if (ls.square) canvas_rect(c, (int)x + 17 - 3, (int)y - 3, 7, 7, ls.col);
    else canvas_disc(c, x + 17, y, 3.5, ls.col);
    canvas_text(c, (int)x + 44, (int)y, label, TS, TEXT_LEFT | TEXT_MIDDLE, INK);
}

// Method colours (matplotlib's tab10 hues): autoencoder green, persistence grey (dashed),
// diffusion blue, surrogate orange; other method names get the remaining hues in order.
static LineStyle method_style(const char *name, int *next_extra) {
    static const Rgb extra[4] = {{148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {188, 189, 34}};
    if (!strcmp(name, "autoencoder")) return (LineStyle){{44, 160, 44}, 0, 1};
    if (!strcmp(name, "persistence")) return (LineStyle){{127, 127, 127}, 9, 0};
    if (!strcmp(name, "diffusion")) return (LineStyle){{31, 119, 180}, 0, 0};
    if (!strcmp(name, "surrogate")) return (LineStyle){{255, 127, 14}, 0, 1};
    return (LineStyle){extra[(*next_extra)++ % 4], 0, 0};
}

static int save(Canvas *c, const char *path) {
    int rc = canvas_write_png(c, path);
    canvas_free(c);
    if (rc != 0) return 0;
    log_info("report: wrote %s", path);
    return 1;
}

// Common text for titles: "mean over N trajectories x F fields".
static void over_text(const Stats *st, char *buf, size_t n) {
    char a[48] = "", b[48] = "";
    if (st->n_traj) snprintf(a, sizeof a, "%d trajector%s", st->n_traj, st->n_traj == 1 ? "y" : "ies");
    if (st->n_fields) snprintf(b, sizeof b, "%d field%s", st->n_fields, st->n_fields == 1 ? "" : "s");
    if (a[0] && b[0]) snprintf(buf, n, "mean over %s x %s", a, b);
    else if (a[0] || b[0]) snprintf(buf, n, "mean over %s", a[0] ? a : b);
    else snprintf(buf, n, "mean over all rows");
}

static int fig_vrmse(Stats *st, const Series *ser, const char *csv, const char *path) {
    if (!st->has_vrmse) {
        log_warn("report: '%s' has no 'vrmse' column; skipping %s", csv, path);
        return 0;
    }
    // canonical order first, then any other method in order of appearance
    static const char *const order[4] = {"autoencoder", "persistence", "diffusion", "surrogate"};
    int idx[MAX_METHODS], n = 0;
    for (int k = 0; k < 4; k++)
        for (int m = 0; m < st->n_methods; m++)
            if (!strcmp(st->methods[m], order[k])) idx[n++] = m;
    for (int m = 0; m < st->n_methods; m++) {
        int known = 0;
        for (int k = 0; k < 4; k++) known |= !strcmp(st->methods[m], order[k]);
        if (!known) idx[n++] = m;
    }
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY, ypos = INFINITY;
    int any = 0;
    for (int k = 0; k < n; k++) {
        const Series *s = &ser[idx[k]];
        for (int i = 0; i < s->n; i++) {
            if (!isfinite(s->vrmse[i])) continue;
            any = 1;
            xmin = fmin(xmin, s->lead[i]), xmax = fmax(xmax, s->lead[i]);
            ymin = fmin(ymin, s->vrmse[i]), ymax = fmax(ymax, s->vrmse[i]);
            if (s->vrmse[i] > 0) ypos = fmin(ypos, s->vrmse[i]);
        }
    }
    if (!any) {
        log_warn("report: '%s' has no finite absolute VRMSE at a lead time > 0; skipping %s", csv, path);
        return 0;
    }
    int log = ymin > 0;
    Canvas c = canvas_new(960, 600, WHITE);
    Frame f = {.x0 = 100, .y0 = 56, .x1 = 960 - 210, .y1 = 600 - 76};
    plot_axis_fit(&f.ax, xmin, xmax, 0);
    axis_pad(&f.ax, 0.03);
    plot_axis_fit(&f.ay, log ? ypos : fmin(ymin, 0), ymax, log);
    if (!log) axis_pad(&f.ay, 0.03);
    frame_grid(&c, &f);
    int extra = 0;
    for (int k = 0; k < n; k++) {
        const Series *s = &ser[idx[k]];
        LineStyle ls = method_style(st->methods[idx[k]], &extra);
        draw_series(&c, &f, s->lead, s->vrmse, s->n, ls);
    }
    frame_axes(&c, &f, 1, "lead time (simulation steps)", log ? "VRMSE (log scale)" : "VRMSE");
    extra = 0;
    for (int k = 0; k < n; k++) legend_entry(&c, &f, k, st->methods[idx[k]], method_style(st->methods[idx[k]], &extra));
    char over[128], title[256];
    over_text(st, over, sizeof over);
    snprintf(title, sizeof title, "VRMSE vs lead time (vs ground truth, %s)", over);
    canvas_text(&c, (f.x0 + f.x1) / 2, 20, title, TS, TEXT_CENTER | TEXT_BOLD, INK);
    return save(&c, path);
}

static int fig_spread_skill(Stats *st, const Series *ser, const char *csv, const char *path) {
    int m = -1;
    for (int i = 0; i < st->n_methods; i++)
        if (!strcmp(st->methods[i], "diffusion")) m = i;
    if (m < 0) {
        log_warn("report: '%s' has no diffusion rows; skipping %s", csv, path);
        return 0;
    }
    if (!st->has_spread || !st->has_rmse) {
        log_warn("report: '%s' has no '%s' column; skipping %s", csv, st->has_spread ? "rmse" : "spread", path);
        return 0;
    }
    const Series *s = &ser[m];
    double xmin = INFINITY, xmax = -INFINITY, ymax = 0, rmax = 1, rsum = 0, rcnt = 0;
    for (int i = 0; i < s->n; i++) {
        xmin = fmin(xmin, s->lead[i]), xmax = fmax(xmax, s->lead[i]);
        if (isfinite(s->spread[i])) ymax = fmax(ymax, s->spread[i]);
        if (isfinite(s->rmse[i])) ymax = fmax(ymax, s->rmse[i]);
        if (isfinite(s->ratio[i])) rmax = fmax(rmax, s->ratio[i]);
    }
    for (size_t k = 0; k < st->n; k++) {
        const StatRow *r = &st->rows[k];
        double q = (r->spread + 1e-3) / (r->rmse + 1e-3);
        if (r->method == m && isfinite(q)) rsum += q, rcnt += 1;
    }
    if (!isfinite(xmin) || rcnt == 0) {
        log_warn("report: '%s': no finite diffusion spread/rmse at a lead time > 0; skipping %s", csv, path);
        return 0;
    }
    Canvas c = canvas_new(960, 720, WHITE);
    Frame top = {.x0 = 100, .y0 = 72, .x1 = 960 - 210, .y1 = 430}, bot = {.x0 = 100, .y0 = 466, .x1 = 960 - 210, .y1 = 720 - 76};
    plot_axis_fit(&top.ax, xmin, xmax, 0);
    axis_pad(&top.ax, 0.03);
    bot.ax = top.ax;
    plot_axis_fit(&top.ay, 0, ymax > 0 ? ymax * 1.04 : 1, 0);
    plot_axis_fit(&bot.ay, 0, rmax * 1.04, 0);
    frame_grid(&c, &top);
    frame_grid(&c, &bot);
    const LineStyle skill = {{31, 119, 180}, 0, 0}, spread = {{255, 127, 14}, 0, 1}, ratio = {{148, 103, 189}, 0, 0},
                    one = {MUTED, 8, 0};
    double xs[2] = {frame_x(&bot, bot.ax.lo), frame_x(&bot, bot.ax.hi)}, ys[2] = {frame_y(&bot, 1), frame_y(&bot, 1)};
    canvas_polyline(&c, xs, ys, 2, 1.5, one.dash, 6, one.col);
    draw_series(&c, &top, s->lead, s->rmse, s->n, skill);
    draw_series(&c, &top, s->lead, s->spread, s->n, spread);
    draw_series(&c, &bot, s->lead, s->ratio, s->n, ratio);
    frame_axes(&c, &top, 0, NULL, "RMSE, spread (physical)");
    frame_axes(&c, &bot, 1, "lead time (simulation steps)", "spread/skill");
    legend_entry(&c, &top, 0, "RMSE of mean", skill);
    legend_entry(&c, &top, 1, "spread", spread);
    legend_entry(&c, &bot, 0, "ratio", ratio);
    legend_entry(&c, &bot, 1, "1 (ideal)", one);
    char over[128], title[256];
    over_text(st, over, sizeof over);
    snprintf(title, sizeof title, "Diffusion ensemble: spread vs skill (%s)", over);
    canvas_text(&c, (top.x0 + top.x1) / 2, 14, title, TS, TEXT_CENTER | TEXT_BOLD, INK);
    snprintf(title, sizeof title, "mean spread/skill ratio %.3f (ideal 1; < 1: over-confident ensemble)", rsum / rcnt);
    canvas_text(&c, (top.x0 + top.x1) / 2, 40, title, TS, TEXT_CENTER, MUTED);
    return save(&c, path);
}

// ---------------------------------------------------------------------------------------------
// frames.h5

#define MAX_SEL_READ 16
#define MAX_FIELDS 64

static const char *const source_names[FRAME_SOURCES] = {"autoencoder", "persistence", "diffusion", "surrogate", "truth"};

typedef struct {
    int n_sel, C, H, W;
    float *data[FRAME_SOURCES];
    int64_t lead[MAX_SEL_READ];
    int have_lead;
    char fields[MAX_FIELDS][48];
    int64_t trajectory;
    int have_traj;
} Frames;

static void frames_free(Frames *fr) {
    for (int i = 0; i < FRAME_SOURCES; i++) free(fr->data[i]);
    memset(fr, 0, sizeof *fr);
}

// Reads one dataset (n_sel, C, H, W) float into fr->data[src]. 0 ok / absent, -1 warned.
static int frames_read_source(hid_t f, const char *path, int src, Frames *fr) {
    const char *name = source_names[src];
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return 0;
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        log_warn("report: '%s': cannot open dataset '%s'", path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t d[8] = {0};
    int rc = 0;
    if (rank != 4) {
        log_warn("report: '%s': dataset '%s' has rank %d, expected 4 (n_sel, C, H, W)", path, name, rank);
        rc = -1;
    } else {
        H5Sget_simple_extent_dims(sp, d, NULL);
        if (src == FRAME_TRUTH) {
            if (d[0] < 1 || d[0] > MAX_SEL_READ || d[1] < 1 || d[1] > MAX_FIELDS || d[2] < 1 || d[3] < 1 || d[2] > 8192 || d[3] > 8192) {
                log_warn("report: '%s': dataset 'truth' has shape (%llu, %llu, %llu, %llu): want 1..%d frames, 1..%d fields, "
                         "1..8192 pixels per side", path, (unsigned long long)d[0], (unsigned long long)d[1],
                         (unsigned long long)d[2], (unsigned long long)d[3], MAX_SEL_READ, MAX_FIELDS);
                rc = -1;
            } else {
                fr->n_sel = (int)d[0], fr->C = (int)d[1], fr->H = (int)d[2], fr->W = (int)d[3];
            }
        } else if (d[0] != (hsize_t)fr->n_sel || d[1] != (hsize_t)fr->C || d[2] != (hsize_t)fr->H || d[3] != (hsize_t)fr->W) {
            log_warn("report: '%s': dataset '%s' has shape (%llu, %llu, %llu, %llu), 'truth' has (%d, %d, %d, %d)", path, name,
                     (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2], (unsigned long long)d[3],
                     fr->n_sel, fr->C, fr->H, fr->W);
            rc = -1;
        }
    }
    if (rc == 0) {
        size_t n = (size_t)fr->n_sel * fr->C * fr->H * fr->W;
        fr->data[src] = LOLA_NEW(float, n);
        if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, fr->data[src]) < 0) {
            log_warn("report: '%s': cannot read dataset '%s' as float", path, name);
            rc = -1;
        }
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

// The "fields" attribute: variable- or fixed-length strings, one per channel. Missing or
// malformed: names "field 0", ... (with a warning when malformed).
static void frames_read_fields(hid_t f, const char *path, Frames *fr) {
    for (int c = 0; c < fr->C; c++) snprintf(fr->fields[c], sizeof fr->fields[c], "field %d", c);
    if (H5Aexists(f, "fields") <= 0) return;
    hid_t a = H5Aopen(f, "fields", H5P_DEFAULT), t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    if (H5Tget_class(t) != H5T_STRING || n != fr->C) {
        log_warn("report: '%s': attribute 'fields' is not %d strings; fields are numbered instead", path, fr->C);
    } else if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char **v = LOLA_NEW(char *, (size_t)n);
        if (H5Aread(a, mt, v) >= 0) {
            for (int c = 0; c < fr->C; c++)
                if (v[c]) snprintf(fr->fields[c], sizeof fr->fields[c], "%s", v[c]);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v);
        }
        free(v);
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(t);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz);
        char *buf = (char *)lola_calloc((size_t)n * sz + 1, 1);
        if (H5Aread(a, mt, buf) >= 0)
            for (int c = 0; c < fr->C; c++) {
                size_t L = strnlen(buf + (size_t)c * sz, sz);
                snprintf(fr->fields[c], sizeof fr->fields[c], "%.*s", (int)L, buf + (size_t)c * sz);
            }
        free(buf);
        H5Tclose(mt);
    }
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
}

// Reads an int64 attribute of `want` elements (want 1: scalar or 1-element). 1 when read.
static int read_i64_attr(hid_t f, const char *name, int64_t *out, int want) {
    if (H5Aexists(f, name) <= 0) return 0;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), sp = H5Aget_space(a);
    int ok = H5Sget_simple_extent_npoints(sp) == want && H5Aread(a, H5T_NATIVE_INT64, out) >= 0;
    H5Sclose(sp);
    H5Aclose(a);
    return ok;
}

// Reads path (layout: report.h). Returns 0, or -1 after a log_warn naming the file.
static int frames_read(const char *path, Frames *fr) {
    memset(fr, 0, sizeof *fr);
    H5E_auto2_t old_fn;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        log_warn("report: cannot open '%s' as HDF5", path);
        rc = -1;
    } else if (H5Lexists(f, "truth", H5P_DEFAULT) <= 0) {
        log_warn("report: '%s' has no 'truth' dataset", path);
        rc = -1;
    } else {
        rc = frames_read_source(f, path, FRAME_TRUTH, fr);
        for (int s = 0; s < FRAME_TRUTH && rc == 0; s++) rc = frames_read_source(f, path, s, fr);
        if (rc == 0) {
            fr->have_lead = read_i64_attr(f, "lead_times", fr->lead, fr->n_sel);
            if (!fr->have_lead) log_warn("report: '%s': no attribute 'lead_times' of %d values; columns are numbered", path, fr->n_sel);
            fr->have_traj = read_i64_attr(f, "trajectory", &fr->trajectory, 1);
            frames_read_fields(f, path, fr);
        }
    }
    if (f >= 0) H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    if (rc != 0) frames_free(fr);
    return rc;
}

// Panel size in pixels for a frame shown fw wide and fh high (see the choices at the top), with
// at most max_h pixels of panels stacked in `rows` rows.
static void panel_size(int fw, int fh, int rows, int max_h, int *pw, int *ph) {
    int mn = fw < fh ? fw : fh, mx = fw > fh ? fw : fh;
    double s = mn < 128 ? ceil(128.0 / mn) : mn > 256 ? 256.0 / mn : 1;
    if (mx * s > 768) s = 768.0 / mx;
    if (rows * fh * s > max_h) s = (double)max_h / (rows * fh);
    *pw = (int)lround(fw * s);
    *ph = (int)lround(fh * s);
    if (*pw < 1) *pw = 1;
    if (*ph < 1) *ph = 1;
}

// Colour limits of field c: the truth's finite min/max over the shown frames; diverging map
// on [-a, a] for a signed field (see the top of the file).
static void field_scale(const Frames *fr, int c, double *lo, double *hi, Colormap *cm) {
    size_t P = (size_t)fr->H * fr->W;
    double mn = INFINITY, mx = -INFINITY;
    for (int k = 0; k < fr->n_sel; k++) {
        const float *v = fr->data[FRAME_TRUTH] + ((size_t)k * fr->C + c) * P;
        for (size_t i = 0; i < P; i++)
            if (isfinite(v[i])) mn = fmin(mn, v[i]), mx = fmax(mx, v[i]);
    }
    if (!(mn <= mx)) mn = 0, mx = 1;
    *cm = CMAP_VIRIDIS;
    double amn = fabs(mn), amx = fabs(mx), a = fmax(amn, amx);
    if (mn < 0 && mx > 0 && fmin(amn, amx) >= 0.2 * a) {
        *cm = CMAP_DIVERGING;
        mn = -a, mx = a;
    }
    if (mx - mn <= 1e-12 * fmax(fabs(mn), fabs(mx)) || mx - mn < 1e-30) {
        double d = mn != 0 ? 0.5 * fabs(mn) : 0.5;
        mn -= d, mx += d;
    }
    *lo = mn, *hi = mx;
}

// Draws frame v (H = x, W = y) into the panel at (x, y) of size pw x ph: x to the right, y up.
static void draw_panel(Canvas *c, int x, int y, int pw, int ph, const Frames *fr, const float *v, double lo, double hi, Colormap cm) {
    Canvas img = canvas_new(fr->H, fr->W, WHITE); // image columns = x index, rows = y index flipped
    for (int i = 0; i < fr->H; i++)
        for (int j = 0; j < fr->W; j++) {
            float val = v[(size_t)i * fr->W + (fr->W - 1 - j)];
            canvas_set(&img, i, j, colormap_rgb(cm, isfinite(val) ? (val - lo) / (hi - lo) : NAN));
        }
    canvas_rect_outline(c, x - 1, y - 1, pw + 2, ph + 2, 1, PANEL_EDGE);
    canvas_blit(c, x, y, pw, ph, &img, pw >= fr->H && ph >= fr->W ? SCALE_NEAREST : SCALE_AREA);
    canvas_free(&img);
}

static void draw_colorbar(Canvas *c, int x, int y, int w, int h, double lo, double hi, Colormap cm) {
    for (int j = 0; j < h; j++) canvas_rect(c, x, y + j, w, 1, colormap_rgb(cm, (h - 1 - j + 0.5) / h));
    canvas_rect_outline(c, x, y, w, h, 1, AXIS);
    PlotAxis a = {lo, hi, 0};
    double t[64], step;
    char buf[32];
    int n = plot_axis_ticks(&a, t, 64, &step);
    for (int i = 0; i < n; i++) {
        int ty = y + h - 1 - (int)lround(plot_axis_frac(&a, t[i]) * (h - 1));
        canvas_rect(c, x + w, ty, 5, 1, AXIS);
        plot_format_tick(t[i], step, buf, sizeof buf);
        canvas_text(c, x + w + 9, ty, buf, TS, TEXT_LEFT | TEXT_MIDDLE, INK);
    }
}

static int fig_frames(const char *h5, const char *path) {
    Frames fr;
    if (frames_read(h5, &fr) != 0) {
        log_warn("report: skipping %s", path);
        return 0;
    }
    static const int order[4] = {FRAME_TRUTH, FRAME_AE, FRAME_DM, FRAME_NS};
    static const char *const labels[4] = {"truth", "autoencoder", "diffusion", "surrogate"};
    int rows[4], nr = 0;
    for (int k = 0; k < 4; k++)
        if (fr.data[order[k]]) rows[nr++] = k;
    const int M = 20, gap = 6, block_gap = 26, head_h = 30, cb_gap = 14, cb_w = 18;
    int pw, ph;
    panel_size(fr.H, fr.W, nr * fr.C, 12000, &pw, &ph);
    // widest row label and colorbar label
    int lw = 0, cbl = 0;
    for (int k = 0; k < nr; k++) lw = text_width(labels[rows[k]], TS) > lw ? text_width(labels[rows[k]], TS) : lw;
    for (int c = 0; c < fr.C; c++) lw = text_width(fr.fields[c], TS) + 1 > lw ? text_width(fr.fields[c], TS) + 1 : lw;
    double *lo = LOLA_NEW(double, 2 * (size_t)fr.C), *hi = lo + fr.C;
    Colormap *cm = LOLA_NEW(Colormap, fr.C);
    for (int c = 0; c < fr.C; c++) {
        field_scale(&fr, c, &lo[c], &hi[c], &cm[c]);
        PlotAxis a = {lo[c], hi[c], 0};
        double t[64], step;
        char buf[32];
        int n = plot_axis_ticks(&a, t, 64, &step);
        for (int i = 0; i < n; i++) {
            plot_format_tick(t[i], step, buf, sizeof buf);
            cbl = text_width(buf, TS) > cbl ? text_width(buf, TS) : cbl;
        }
    }
    int x_panels = M + lw + 16, block_h = head_h + nr * ph + (nr - 1) * gap;
    int x_cb = x_panels + fr.n_sel * pw + (fr.n_sel - 1) * gap + cb_gap;
    int width = x_cb + cb_w + 9 + cbl + M, title_h = 52;
    int height = title_h + fr.C * block_h + (fr.C - 1) * block_gap + M;
    char title[200];
    if (fr.have_traj) snprintf(title, sizeof title, "trajectory %lld: truth and emulators (member 0)", (long long)fr.trajectory);
    else snprintf(title, sizeof title, "truth and emulators (member 0)");
    if (width < text_width(title, TS) + 2 * M) width = text_width(title, TS) + 2 * M;
    Canvas cv = canvas_new(width, height, WHITE);
    canvas_text(&cv, M, 16, title, TS, TEXT_LEFT | TEXT_BOLD, INK);
    size_t P = (size_t)fr.H * fr.W;
    for (int c = 0; c < fr.C; c++) {
        int by = title_h + c * (block_h + block_gap), py0 = by + head_h;
        canvas_text(&cv, M, by + 4, fr.fields[c], TS, TEXT_LEFT | TEXT_BOLD, INK);
        for (int k = 0; k < fr.n_sel; k++) {
            char h[48];
            if (fr.have_lead) snprintf(h, sizeof h, "lead %lld", (long long)fr.lead[k]);
            else snprintf(h, sizeof h, "frame %d", k);
            canvas_text(&cv, x_panels + k * (pw + gap) + pw / 2, by + 4, h, TS, TEXT_CENTER, INK);
        }
        for (int r = 0; r < nr; r++) {
            int y = py0 + r * (ph + gap);
            canvas_text(&cv, x_panels - 12, y + ph / 2, labels[rows[r]], TS, TEXT_RIGHT | TEXT_MIDDLE, INK);
            const float *src = fr.data[order[rows[r]]];
            for (int k = 0; k < fr.n_sel; k++)
                draw_panel(&cv, x_panels + k * (pw + gap), y, pw, ph, &fr, src + ((size_t)k * fr.C + c) * P, lo[c], hi[c], cm[c]);
        }
        draw_colorbar(&cv, x_cb, py0, cb_w, nr * ph + (nr - 1) * gap, lo[c], hi[c], cm[c]);
    }
    free(lo);
    free(cm);
    frames_free(&fr);
    return save(&cv, path);
}

// ---------------------------------------------------------------------------------------------

int report_figures(const char *eval_dir) {
    if (!canvas_png_supported()) {
        log_warn("report: this build has no libpng: no figures in %s (install libpng and rebuild; see 'make config')", eval_dir);
        return 0;
    }
    size_t L = strlen(eval_dir) + 32;
    char *h5 = (char *)lola_calloc(L, 1), *csv = (char *)lola_calloc(L, 1), *png = (char *)lola_calloc(L, 1);
    int written = 0;
    snprintf(h5, L, "%s/frames.h5", eval_dir);
    snprintf(png, L, "%s/frames.png", eval_dir);
    if (lola_exists(h5)) written += fig_frames(h5, png);
    else log_warn("report: %s not found; skipping %s", h5, png);
    snprintf(csv, L, "%s/stats.csv", eval_dir);
    Stats st;
    if (!lola_exists(csv)) {
        log_warn("report: %s not found; skipping vrmse.png and spread_skill.png", csv);
    } else if (stats_read(csv, &st) != 0) {
        log_warn("report: skipping vrmse.png and spread_skill.png");
    } else {
        Series ser[MAX_METHODS];
        series_build(&st, ser);
        snprintf(png, L, "%s/vrmse.png", eval_dir);
        written += fig_vrmse(&st, ser, csv, png);
        snprintf(png, L, "%s/spread_skill.png", eval_dir);
        written += fig_spread_skill(&st, ser, csv, png);
        for (int m = 0; m < st.n_methods; m++) series_free(&ser[m]);
        stats_free(&st);
    }
    free(h5);
    free(csv);
    free(png);
    return written;
}
