// test_report.c: report_figures (src/report.c) and the canvas (src/canvas.c).
//
// Writes a synthetic frames.h5 (through frameset_* of src/frames.c) and hand-made stats.csv files
// into temporary directories, runs report_figures, reads the PNGs back with libpng's simplified
// API and checks what they show: panel sizes, data orientation and colour scale in frames.png,
// each method's line at the row its (known) mean maps to in vrmse.png, the three curves of
// spread_skill.png, and the warnings + skips for a malformed CSV, a missing or corrupt frames.h5.
// LOLA_TEST_KEEP=1 keeps the directories (their paths are printed) to look at the figures.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canvas.h"
#include "common.h"
#include "report.h"
#include "test.h"
#include "well.h"

#ifdef LOLA_HAVE_PNG
#include <png.h>
#endif

static int keep;

static void put_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen_check(p, "w");
    fputs(text, f);
    fclose(f);
}

static int exists_in(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return lola_exists(p);
}

static void cleanup(const char *dir) {
    if (keep) {
        printf("  kept %s\n", dir);
        return;
    }
    static const char *const names[] = {"frames.h5", "frames.png", "vrmse.png", "spread_skill.png", "stats.csv"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        remove(p);
    }
    rmdir(dir);
}

static char *make_dir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/lola_report_XXXXXX");
    if (!mkdtemp(buf)) lola_die("mkdtemp failed");
    return buf;
}

// Runs report_figures(dir) with stderr captured into err (cap bytes). Returns its result.
static int run_capture(const char *dir, char *err, size_t cap) {
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    int n = report_figures(dir);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t got = fread(err, 1, cap - 1, tmp);
    err[got] = 0;
    fclose(tmp);
    fputs(err, stderr); // still visible in the log
    return n;
}

// ---------------------------------------------------------------------------------------------
// Image helpers

static int same(Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

#ifdef LOLA_HAVE_PNG
typedef struct {
    int w, h;
    uint8_t *px;
} Img;

static Rgb px_at(const Img *im, int x, int y) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return (Rgb){0, 0, 0};
    const uint8_t *p = im->px + 3 * ((size_t)y * im->w + x);
    return (Rgb){p[0], p[1], p[2]};
}

static int read_png(const char *dir, const char *name, Img *im) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, p)) return 0;
    img.format = PNG_FORMAT_RGB;
    im->px = (uint8_t *)malloc(PNG_IMAGE_SIZE(img));
    if (!im->px || !png_image_finish_read(&img, NULL, im->px, 0, NULL)) {
        free(im->px);
        return 0;
    }
    im->w = (int)img.width;
    im->h = (int)img.height;
    return 1;
}

static int distinct_colors(const Img *im) {
    // count distinct colours among a sample of pixels (up to 4096 kept)
    static uint32_t seen[4096];
    int n = 0;
    for (int y = 0; y < im->h; y += 3)
        for (int x = 0; x < im->w; x += 3) {
            Rgb p = px_at(im, x, y);
            uint32_t v = (uint32_t)p.r << 16 | (uint32_t)p.g << 8 | p.b;
            int found = 0;
            for (int i = 0; i < n && !found; i++) found = seen[i] == v;
            if (!found && n < 4096) seen[n++] = v;
        }
    return n;
}

// Colormap inversion: index 0..255 of the nearest of 256 LUT samples, or -1 if farther than
// a small tolerance (the pixel is not a colormap colour).
static int cmap_index(Colormap m, Rgb p) {
    int best = -1, bd = 1 << 30;
    for (int i = 0; i < 256; i++) {
        Rgb q = colormap_rgb(m, i / 255.0);
        int d = (p.r - q.r) * (p.r - q.r) + (p.g - q.g) * (p.g - q.g) + (p.b - q.b) * (p.b - q.b);
        if (d < bd) bd = d, best = i;
    }
    return bd <= 12 ? best : -1;
}

static int is_panel_px(Rgb p) {
    if (p.r == 255 && p.g == 255 && p.b == 255) return 0;
    return cmap_index(CMAP_VIRIDIS, p) >= 0 || cmap_index(CMAP_DIVERGING, p) >= 0;
}
#endif

// ---------------------------------------------------------------------------------------------
// Canvas unit checks

static void test_canvas(void) {
    CHECK(text_width("", 2) == 0, "text_width of an empty string is 0");
    CHECK(text_width("0", 1) == 5 && text_width("00", 1) == 11 && text_width("00", 2) == 22, "digits advance 6 cells (5 ink + 1)");
    CHECK(text_width("i", 1) < text_width("m", 1), "proportional advance: i narrower than m");
    Rgb v0 = colormap_rgb(CMAP_VIRIDIS, 0), v1 = colormap_rgb(CMAP_VIRIDIS, 1), vm = colormap_rgb(CMAP_VIRIDIS, -3);
    CHECK(same(v0, (Rgb){68, 1, 84}) && same(v1, (Rgb){253, 231, 37}) && same(vm, v0), "viridis end points, t clamped");
    Rgb d5 = colormap_rgb(CMAP_DIVERGING, 0.5);
    CHECK(d5.r > 240 && d5.g > 240 && d5.b > 240, "diverging map is white at 0.5");
    CHECK(same(colormap_rgb(CMAP_VIRIDIS, NAN), CMAP_NAN_COLOR), "NaN gets the NaN colour");
    int mono = 1;
    for (int i = 1; i < 256; i++) {
        // viridis gets lighter monotonically (perceptual order): check luma
        Rgb a = colormap_rgb(CMAP_VIRIDIS, (i - 1) / 255.0), b = colormap_rgb(CMAP_VIRIDIS, i / 255.0);
        mono &= 0.299 * b.r + 0.587 * b.g + 0.114 * b.b >= 0.299 * a.r + 0.587 * a.g + 0.114 * a.b - 0.6;
    }
    CHECK(mono, "viridis luma is non-decreasing");

    PlotAxis a;
    plot_axis_fit(&a, 4, 100, 0);
    CHECK(a.lo == 0 && a.hi == 100 && !a.log, "linear fit of [4, 100] is [0, 100] (got [%g, %g])", a.lo, a.hi);
    double t[16], step;
    int n = plot_axis_ticks(&a, t, 16, &step);
    CHECK(n == 6 && step == 20 && t[0] == 0 && t[5] == 100, "ticks 0, 20, ..., 100 (got %d, step %g)", n, step);
    plot_axis_fit(&a, 0.01, 1.0, 1);
    CHECK(a.log && fabs(log10(a.lo) + 2.1) < 1e-9 && fabs(log10(a.hi) - 0.1) < 1e-9, "log fit pads 5%% of 2 decades (0.1 dex)");
    n = plot_axis_ticks(&a, t, 16, &step);
    CHECK(n == 3 && fabs(t[0] - 0.01) < 1e-12 && fabs(t[2] - 1) < 1e-12, "log ticks at decades 0.01, 0.1, 1");
    CHECK(fabs(plot_axis_frac(&a, 0.1) - 0.5) < 1e-9 && isnan(plot_axis_frac(&a, -1)), "log frac of 0.1 is 0.5; <= 0 is NaN");
    char buf[32];
    plot_format_tick(0.25, 0.05, buf, sizeof buf);
    CHECK(!strcmp(buf, "0.25"), "tick label 0.25 (got %s)", buf);
    plot_format_tick(1e-5, 0, buf, sizeof buf);
    CHECK(!strcmp(buf, "1e-5"), "tick label 1e-5 (got %s)", buf);
    plot_format_tick(-2e-17, 0.5, buf, sizeof buf);
    CHECK(!strcmp(buf, "0"), "tick label of a rounding residue is 0 (got %s)", buf);

    // Lines: a horizontal 2.5-px line at y = 10.5 covers row 10 exactly with the colour.
    Canvas c = canvas_new(40, 20, (Rgb){255, 255, 255});
    canvas_line(&c, 5, 10.5, 35, 10.5, 2.5, (Rgb){200, 0, 0});
    Rgb on = canvas_get(&c, 20, 10), off = canvas_get(&c, 20, 14);
    CHECK(same(on, (Rgb){200, 0, 0}) && same(off, (Rgb){255, 255, 255}), "line pixel exact on its row, background 3 rows away");
    // Dashed: some pixels along the line are background.
    canvas_fill(&c, (Rgb){255, 255, 255});
    double xs[2] = {2, 38}, ys[2] = {5.5, 5.5};
    canvas_polyline(&c, xs, ys, 2, 2, 6, 4, (Rgb){0, 0, 200});
    int ink = 0, gaps = 0;
    for (int x = 4; x < 36; x++) {
        if (same(canvas_get(&c, x, 5), (Rgb){0, 0, 200})) ink++;
        else gaps++;
    }
    CHECK(ink > 10 && gaps > 5, "dashed line has dashes and gaps (ink %d, gap %d)", ink, gaps);
    // Text draws ink inside its box.
    canvas_fill(&c, (Rgb){255, 255, 255});
    canvas_text(&c, 1, 1, "H", 1, TEXT_LEFT, (Rgb){0, 0, 0});
    CHECK(same(canvas_get(&c, 1, 1), (Rgb){0, 0, 0}) && same(canvas_get(&c, 2, 1), (Rgb){255, 255, 255}) &&
              same(canvas_get(&c, 3, 4), (Rgb){0, 0, 0}),
          "glyph H: left stem, open top, crossbar");
    // Blit: nearest enlargement x3 of a 2x1 image keeps blocks.
    Canvas s = canvas_new(2, 1, (Rgb){0, 0, 0});
    canvas_set(&s, 1, 0, (Rgb){255, 0, 0});
    canvas_fill(&c, (Rgb){255, 255, 255});
    canvas_blit(&c, 0, 0, 6, 3, &s, SCALE_NEAREST);
    CHECK(same(canvas_get(&c, 2, 2), (Rgb){0, 0, 0}) && same(canvas_get(&c, 3, 0), (Rgb){255, 0, 0}), "nearest blit x3");
    canvas_blit(&c, 0, 5, 1, 1, &s, SCALE_AREA);
    CHECK(canvas_get(&c, 0, 5).r == 128, "area blit averages (got %d)", canvas_get(&c, 0, 5).r);
    canvas_free(&s);
    canvas_free(&c);
}

// ---------------------------------------------------------------------------------------------
// frames.h5 -> frames.png

enum { FH = 64, FW = 48 }; // frame (H = x, W = y); 48 < 128 -> enlarged 3x: panels 192 x 144

static double truth0(int x, int y) { return 1.0 + (double)x / (FH - 1) + 0.5 * (double)y / (FW - 1); }
static double truth1(int x, int y) { return ((double)x - 0.5 * (FH - 1)) / (0.5 * (FH - 1)); } // signed, in [-1, 1]

static void write_frames(const char *dir) {
    static WellSplit s; // large; only the channel names are used
    snprintf(s.channels[0].name, sizeof s.channels[0].name, "density");
    snprintf(s.channels[1].name, sizeof s.channels[1].name, "velocity_x");
    FrameSet fs;
    frameset_init(&fs, 2, FH, FW, 10, 1, 4);
    float *v = LOLA_NEW(float, 2 * FH * FW), *d = LOLA_NEW(float, 2 * FH * FW), *p = LOLA_NEW(float, 2 * FH * FW);
    for (int x = 0; x < FH; x++)
        for (int y = 0; y < FW; y++) {
            v[x * FW + y] = (float)truth0(x, y);
            v[FH * FW + x * FW + y] = (float)truth1(x, y);
            d[x * FW + y] = 100.0f;                            // above the truth's max: clamps to the top colour
            d[FH * FW + x * FW + y] = (float)-truth1(x, y);    // mirrored
            p[x * FW + y] = p[FH * FW + x * FW + y] = 0.0f;    // persistence: must not be shown
        }
    for (int t = 0; t < 10; t++) {
        frameset_offer(&fs, FRAME_TRUTH, t, v);
        frameset_offer(&fs, FRAME_AE, t, v);
        frameset_offer(&fs, FRAME_DM, t, d);
        frameset_offer(&fs, FRAME_PERSIST, t, p);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/frames.h5", dir);
    frameset_write(&fs, &s, 7, path);
    frameset_free(&fs);
    free(v);
    free(d);
    free(p);
}

#ifdef LOLA_HAVE_PNG
static void check_frames_png(const char *dir) {
    Img im;
    int ok = read_png(dir, "frames.png", &im);
    CHECK(ok, "frames.png reads back with libpng");
    if (!ok) return;
    const int pw = 3 * FH, ph = 3 * FW; // 64 x 48 frame shown x-horizontal, enlarged 3x
    CHECK(im.w >= 4 * pw && im.h >= 2 * 3 * ph, "frames.png %d x %d holds 4 columns x (2 fields x 3 rows) of %dx%d panels", im.w, im.h, pw, ph);
    CHECK(distinct_colors(&im) > 100, "frames.png is not blank (%d colours)", distinct_colors(&im));
    // First panel: the top-most row with a run of >= 100 panel pixels, its left-most run.
    int px0 = -1, py0 = -1, run = 0;
    for (int y = 0; y < im.h && py0 < 0; y++) {
        run = 0;
        for (int x = 0; x <= im.w; x++) {
            if (x < im.w && is_panel_px(px_at(&im, x, y))) run++;
            else {
                if (run >= 100) {
                    px0 = x - run, py0 = y;
                    break;
                }
                run = 0;
            }
        }
    }
    CHECK(px0 >= 0 && run == pw, "first panel found at (%d, %d), width %d == %d (integer 3x enlargement)", px0, py0, run, pw);
    if (px0 < 0) goto done;
    int h = 0;
    while (is_panel_px(px_at(&im, px0 + pw / 2, py0 + h))) h++;
    CHECK(h == ph, "first panel height %d == %d", h, ph);
    // truth, field 0: index increases left -> right (x horizontal) and bottom -> top (y up)
    int ymid = py0 + ph / 2, mono = 1, prev = -1, first = -1, last = -1, changes = 0;
    for (int x = px0; x < px0 + pw; x++) {
        int k = cmap_index(CMAP_VIRIDIS, px_at(&im, x, ymid));
        if (k < 0 || (prev >= 0 && k < prev)) mono = 0;
        if (prev >= 0 && k != prev) changes++;
        if (first < 0) first = k;
        prev = last = k;
    }
    CHECK(mono, "viridis index is non-decreasing across the panel (field grows with x)");
    // value range of the shown truth: [1, 2.5]; middle row y = 23.5/47 -> values 1.25 .. 2.25
    CHECK(first >= 0 && fabs(first / 255.0 - (truth0(0, 24) - 1) / 1.5) < 0.03 && fabs(last / 255.0 - (truth0(FH - 1, 24) - 1) / 1.5) < 0.03,
          "colour scale is the truth's [min, max]: left %.3f right %.3f of the map", first / 255.0, last / 255.0);
    CHECK(changes >= FH - 2 && changes <= FH, "nearest enlargement: %d colour steps across 64 data columns", changes);
    int kb = cmap_index(CMAP_VIRIDIS, px_at(&im, px0 + pw / 2, py0 + ph - 1)), kt = cmap_index(CMAP_VIRIDIS, px_at(&im, px0 + pw / 2, py0));
    CHECK(kb >= 0 && kt > kb + 30, "y points up: top of panel %d > bottom %d", kt, kb);
    // Panels below at the same column: truth, autoencoder, diffusion per field; persistence absent.
    int tops[16], nt = 0, xc = px0 + pw / 2;
    for (int y = 1; y < im.h; y++)
        if (is_panel_px(px_at(&im, xc, y)) && !is_panel_px(px_at(&im, xc, y - 1)) && nt < 16) tops[nt++] = y;
    CHECK(nt == 6, "6 panel rows (2 fields x truth/autoencoder/diffusion; no persistence row): %d", nt);
    if (nt == 6) {
        int eq = 1;
        for (int y = 0; y < ph; y++)
            for (int x = 0; x < pw; x++) eq &= same(px_at(&im, px0 + x, tops[0] + y), px_at(&im, px0 + x, tops[1] + y));
        CHECK(eq, "autoencoder row (= truth data) has the truth's pixels: one colour scale per field");
        int top = 1;
        for (int y = 0; y < ph; y++)
            for (int x = 0; x < pw; x++) top &= same(px_at(&im, px0 + x, tops[2] + y), colormap_rgb(CMAP_VIRIDIS, 1));
        CHECK(top, "diffusion row (100, above the truth's max) is the top colour everywhere");
        // field 1 is signed: diverging map, blue (low) left, white middle, red right; diffusion mirrored
        int y1 = tops[3] + ph / 2;
        int kl = cmap_index(CMAP_DIVERGING, px_at(&im, px0 + 1, y1)), kr = cmap_index(CMAP_DIVERGING, px_at(&im, px0 + pw - 2, y1));
        int km = cmap_index(CMAP_DIVERGING, px_at(&im, px0 + pw / 2, y1));
        CHECK(kl >= 0 && kl < 10 && kr > 245 && abs(km - 128) < 8, "signed field: diverging map low/mid/high = %d/%d/%d", kl, km, kr);
        int y3 = tops[5] + ph / 2;
        int dl = cmap_index(CMAP_DIVERGING, px_at(&im, px0 + 1, y3)), dr = cmap_index(CMAP_DIVERGING, px_at(&im, px0 + pw - 2, y3));
        CHECK(dl > 245 && dr >= 0 && dr < 10, "mirrored diffusion field shows reversed colours (%d, %d)", dl, dr);
    }
done:
    free(im.px);
}
#endif

// ---------------------------------------------------------------------------------------------
// stats.csv -> vrmse.png, spread_skill.png

static const char *const methods[4] = {"autoencoder", "persistence", "diffusion", "surrogate"};
static const double vr[4] = {0.02, 1.0, 0.1, 0.3};

// Columns in a different order than stage_eval writes them, plus an unknown one; 2 trajectories
// x 2 fields per (method, lead) whose mean is vr[m]; relative rows and lead 0 rows carry values
// that would move the curves if they were not left out.
static char *make_csv(int with_vrmse) {
    size_t cap = 1 << 20, n = 0;
    char *s = (char *)lola_calloc(cap, 1);
    n += snprintf(s + n, cap - n, "lead_time,method,extra,%srelative,trajectory,field,spread,rmse\n", with_vrmse ? "vrmse," : "");
    for (int m = 0; m < 4; m++)
        for (int lead = 0; lead <= 40; lead += 4)
            for (int rel = 0; rel < 2; rel++)
                for (int tr = 0; tr < 2; tr++)
                    for (int f = 0; f < 2; f++) {
                        double dev = (tr ? 1 : -1) * (f ? 0.3 : 0.1);
                        double v = (rel || lead == 0) ? 50.0 : vr[m] * (1 + dev);
                        double spread = 0.05 + 0.002 * lead + (tr ? 0.01 : -0.01), rmse = 0.06 + 0.004 * lead;
                        n += snprintf(s + n, cap - n, "%d,%s,xyz,", lead, methods[m]);
                        if (with_vrmse) n += snprintf(s + n, cap - n, "%.17g,", v);
                        n += snprintf(s + n, cap - n, "%s,%d,%s,%.17g,%.17g\r\n", rel ? "True" : "False", 10 + tr, f ? "rho" : "p", spread, rmse);
                    }
    return s;
}

#ifdef LOLA_HAVE_PNG
// report.c's colours (the figure's legend): autoencoder green, persistence grey, diffusion blue,
// surrogate orange.
static const Rgb mcol[4] = {{44, 160, 44}, {127, 127, 127}, {31, 119, 180}, {255, 127, 14}};

// The plot frame: rows/columns of the axis-coloured box (long runs of (40, 40, 40)).
static int find_frame(const Img *im, int *x0, int *y0, int *x1, int *y1) {
    const Rgb axis = {40, 40, 40};
    *x0 = *y0 = *x1 = *y1 = -1;
    for (int y = 0; y < im->h; y++) {
        int run = 0, best = 0;
        for (int x = 0; x < im->w; x++) run = same(px_at(im, x, y), axis) ? run + 1 : 0, best = run > best ? run : best;
        if (best > im->w / 2) {
            if (*y0 < 0) *y0 = y;
            *y1 = y;
        }
    }
    for (int x = 0; x < im->w; x++) {
        int run = 0, best = 0;
        for (int y = 0; y < im->h; y++) run = same(px_at(im, x, y), axis) ? run + 1 : 0, best = run > best ? run : best;
        if (best > im->h / 3) {
            if (*x0 < 0) *x0 = x;
            *x1 = x;
        }
    }
    return *x0 >= 0 && *y0 >= 0 && *x1 > *x0 + 100 && *y1 > *y0 + 100;
}

// Exact colour col within +-1 pixel of (x, y)?
static int color_near(const Img *im, double x, double y, Rgb col) {
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++)
            if (same(px_at(im, (int)floor(x) + dx, (int)floor(y) + dy), col)) return 1;
    return 0;
}

static void check_vrmse_png(const char *dir) {
    Img im;
    int ok = read_png(dir, "vrmse.png", &im);
    CHECK(ok && im.w == 960 && im.h == 600, "vrmse.png reads back, 960 x 600");
    if (!ok) return;
    CHECK(distinct_colors(&im) > 8, "vrmse.png is not blank (%d colours)", distinct_colors(&im));
    int x0, y0, x1, y1;
    ok = find_frame(&im, &x0, &y0, &x1, &y1);
    CHECK(ok, "plot frame found: columns %d..%d, rows %d..%d", x0, x1, y0, y1);
    if (!ok) goto done;
    // report.c's axes: x fitted to the lead times [4, 40] then padded 3%; y log (all > 0),
    // fitted to [0.02, 1].
    PlotAxis ax, ay;
    plot_axis_fit(&ax, 4, 40, 0);
    double pad = 0.03 * (ax.hi - ax.lo);
    ax.lo -= pad, ax.hi += pad;
    plot_axis_fit(&ay, 0.02, 1.0, 1);
    for (int m = 0; m < 4; m++) {
        double y = y1 + 0.5 - plot_axis_frac(&ay, vr[m]) * (y1 - y0);
        int hits = 0, between = 0;
        for (int lead = 4; lead <= 40; lead += 4) {
            double x = x0 + 0.5 + plot_axis_frac(&ax, lead) * (x1 - x0);
            hits += color_near(&im, x, y, mcol[m]);
            if (lead < 40) between += color_near(&im, x0 + 0.5 + plot_axis_frac(&ax, lead + 2) * (x1 - x0), y, mcol[m]);
        }
        CHECK(hits == 10, "%s: marker colour at all 10 lead times on the row of its mean %.2f (y %.1f): %d", methods[m], vr[m], y, hits);
        if (m != 1) CHECK(between == 9, "%s: solid line between the markers: %d of 9", methods[m], between);
        // nothing of this colour on rows far from the line inside the plot (e.g. a lead-0 or relative point)
        int stray = 0;
        for (int yy = y0 + 2; yy < y1 - 1; yy++) {
            if (fabs(yy + 0.5 - y) < 6) continue;
            for (int xx = x0 + 2; xx < x1 - 1; xx++) stray += same(px_at(&im, xx, yy), mcol[m]);
        }
        CHECK(stray == 0, "%s: no pixels of its colour away from its line inside the frame (%d)", methods[m], stray);
    }
done:
    free(im.px);
}

static int count_color(const Img *im, Rgb c) {
    int n = 0;
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) n += same(px_at(im, x, y), c);
    return n;
}

static void check_spread_png(const char *dir) {
    Img im;
    int ok = read_png(dir, "spread_skill.png", &im);
    CHECK(ok && im.w == 960 && im.h == 720, "spread_skill.png reads back, 960 x 720");
    if (!ok) return;
    int skill = count_color(&im, (Rgb){31, 119, 180}), spread = count_color(&im, (Rgb){255, 127, 14}), ratio = count_color(&im, (Rgb){148, 103, 189});
    CHECK(skill > 300 && spread > 300 && ratio > 300, "spread_skill.png shows rmse, spread and ratio curves (%d, %d, %d px)", skill, spread, ratio);
    // the rmse curve grows with the lead time: its left-most pixel is lower (larger row) than its right-most
    int lx = im.w, ly = 0, rx = -1, ry = 0;
    for (int y = 0; y < im.h * 6 / 10; y++)
        for (int x = 0; x < im.w * 3 / 4; x++)
            if (same(px_at(&im, x, y), (Rgb){31, 119, 180})) {
                if (x < lx) lx = x, ly = y;
                if (x > rx) rx = x, ry = y;
            }
    CHECK(rx > lx + 300 && ly > ry + 100, "rmse line rises from (%d, %d) to (%d, %d)", lx, ly, rx, ry);
    free(im.px);
}
#endif

int main(void) {
    keep = getenv("LOLA_TEST_KEEP") != NULL;
    test_canvas();
    char d1[64], err[16384];

    // Everything present.
    make_dir(d1, sizeof d1);
    write_frames(d1);
    char *csv = make_csv(1);
    put_file(d1, "stats.csv", csv);
    int n = run_capture(d1, err, sizeof err);
#ifdef LOLA_HAVE_PNG
    CHECK(n == 3 && exists_in(d1, "frames.png") && exists_in(d1, "vrmse.png") && exists_in(d1, "spread_skill.png"),
          "report_figures writes 3 figures (returned %d)", n);
    CHECK(!exists_in(d1, "frames.png.tmp") && !exists_in(d1, "vrmse.png.tmp"), "no temporary files left");
    check_frames_png(d1);
    check_vrmse_png(d1);
    check_spread_png(d1);
    char d2[64], d3[64], d4[64];

    // No frames.h5: only that figure is skipped.
    make_dir(d2, sizeof d2);
    put_file(d2, "stats.csv", csv);
    n = run_capture(d2, err, sizeof err);
    CHECK(n == 2 && !exists_in(d2, "frames.png") && exists_in(d2, "vrmse.png") && exists_in(d2, "spread_skill.png"),
          "missing frames.h5: 2 figures (returned %d)", n);
    CHECK(strstr(err, "frames.h5 not found") != NULL, "missing frames.h5 is warned about");
    // A corrupt frames.h5 (not HDF5) is a warning too.
    put_file(d2, "frames.h5", "this is not an HDF5 file\n");
    n = run_capture(d2, err, sizeof err);
    CHECK(n == 2 && !exists_in(d2, "frames.png") && strstr(err, "cannot open") && strstr(err, "frames.h5"),
          "corrupt frames.h5: warned, 2 figures (returned %d)", n);

    // stats.csv without a vrmse column: vrmse.png skipped with a warning naming the file;
    // spread_skill.png still drawn (it needs spread and rmse only).
    free(csv);
    make_dir(d3, sizeof d3);
    csv = make_csv(0);
    put_file(d3, "stats.csv", csv);
    n = run_capture(d3, err, sizeof err);
    CHECK(n == 1 && !exists_in(d3, "vrmse.png") && exists_in(d3, "spread_skill.png"), "no vrmse column: vrmse.png skipped (returned %d)", n);
    CHECK(strstr(err, "no 'vrmse' column") && strstr(err, "stats.csv"), "warning names the file and the missing column");

    // Malformed rows: wrong field count, a non-number; the warning names the file and line.
    make_dir(d4, sizeof d4);
    put_file(d4, "stats.csv", "method,trajectory,field,lead_time,relative,spread,rmse,vrmse\n"
                              "diffusion,0,rho,4,False,0.1,0.2,0.3\n"
                              "diffusion,0,rho,8,False,0.1\n");
    n = run_capture(d4, err, sizeof err);
    CHECK(n == 0 && !exists_in(d4, "vrmse.png") && !exists_in(d4, "spread_skill.png"), "short row: CSV figures skipped (returned %d)", n);
    CHECK(strstr(err, "stats.csv' line 3") && strstr(err, "6 fields, the header has 8"), "short row warning names file and line 3");
    put_file(d4, "stats.csv", "method,trajectory,field,lead_time,relative,spread,rmse,vrmse\n"
                              "diffusion,0,rho,4,False,0.1,0.2,0.3\n"
                              "diffusion,0,rho,8,False,0.1,0.2,abc\n");
    n = run_capture(d4, err, sizeof err);
    CHECK(n == 0 && strstr(err, "line 3: column 'vrmse': cannot parse 'abc'"), "non-numeric vrmse: warned with line and column");
    put_file(d4, "stats.csv", "");
    n = run_capture(d4, err, sizeof err);
    CHECK(n == 0 && strstr(err, "is empty"), "empty stats.csv: warned");
    put_file(d4, "stats.csv", "method,trajectory,field,relative,vrmse\nautoencoder,0,rho,False,0.1\n");
    n = run_capture(d4, err, sizeof err);
    CHECK(n == 0 && strstr(err, "no 'lead_time' column"), "missing lead_time column: warned");
    // Only surrogate rows: vrmse.png drawn, spread_skill.png skipped (no diffusion).
    put_file(d4, "stats.csv", "method,lead_time,relative,vrmse,spread,rmse\nsurrogate,4,False,0.1,0,0.2\nsurrogate,8,False,nan,0,0.3\n"
                              "surrogate,12,False,0.3,0,0.4\n");
    n = run_capture(d4, err, sizeof err);
    CHECK(n == 1 && exists_in(d4, "vrmse.png") && !exists_in(d4, "spread_skill.png") && strstr(err, "no diffusion rows") &&
              strstr(err, "1 rows with a non-finite metric"),
          "no diffusion rows: spread_skill skipped; the NaN row is reported (returned %d)", n);
    cleanup(d2);
    cleanup(d3);
    cleanup(d4);
#else
    (void)exists_in;
    CHECK(n == 0 && strstr(err, "no libpng"), "without libpng: no figures, a warning (returned %d)", n);
#endif
    free(csv);
    cleanup(d1);
    return test_summary();
}
