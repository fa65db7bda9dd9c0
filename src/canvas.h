// canvas.h: a small RGB raster canvas for the evaluation figures (report.c), written as PNG via
// libpng. Fills, anti-aliased thick (optionally dashed) lines, discs, a built-in 5x9 bitmap font
// (ASCII 32..126, drawn at integer scales, horizontal or rotated), colormaps from control points,
// image blits with nearest / bilinear / area scaling, and plot-axis helpers (nice ranges, ticks).
//
// (Named canvas.h, not png.h: with -Isrc first on the include path a src/png.h would shadow
// libpng's <png.h>, which buildinfo.c and canvas.c include.)
//
// Coordinates: pixel (x, y) has x to the right and y downwards, (0, 0) the top-left pixel; the
// pixel's centre is at (x + 0.5, y + 0.5) for the anti-aliased primitives. Drawing is clipped to
// the canvas. Colours are 8-bit sRGB.
#ifndef LOLA_CANVAS_H
#define LOLA_CANVAS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t r, g, b;
} Rgb;

typedef struct {
    int w, h;
    uint8_t *px; // h rows of w RGB triples, top row first
} Canvas;

// New canvas filled with bg. Dies when w or h is not in 1..32768.
Canvas canvas_new(int w, int h, Rgb bg);
void canvas_free(Canvas *c);
void canvas_fill(Canvas *c, Rgb col);
// One pixel (ignored outside the canvas); canvas_get returns black outside.
void canvas_set(Canvas *c, int x, int y, Rgb col);
Rgb canvas_get(const Canvas *c, int x, int y);
// Mixes col into pixel (x, y) with weight alpha in [0, 1].
void canvas_blend(Canvas *c, int x, int y, Rgb col, double alpha);
// Filled rectangle [x, x+w) x [y, y+h).
void canvas_rect(Canvas *c, int x, int y, int w, int h, Rgb col);
// Rectangle outline of the given thickness drawn inside [x, x+w) x [y, y+h).
void canvas_rect_outline(Canvas *c, int x, int y, int w, int h, int thick, Rgb col);

// Anti-aliased segment of width `thick` pixels with round caps (a capsule) from (x0, y0) to
// (x1, y1) in continuous coordinates. Pixels whose centre lies within thick/2 - 0.5 of the
// segment get exactly col.
void canvas_line(Canvas *c, double x0, double y0, double x1, double y1, double thick, Rgb col);
// Polyline through n points; dash > 0 draws dashes of length dash separated by gaps of length
// gap (measured along the line). A point with a non-finite coordinate breaks the line.
void canvas_polyline(Canvas *c, const double *x, const double *y, int n, double thick, double dash, double gap, Rgb col);
// Anti-aliased filled disc of radius r centred at (cx, cy).
void canvas_disc(Canvas *c, double cx, double cy, double r, Rgb col);

// Text in the built-in font: glyphs are 5 x 9 cells (cap height 7, descender 2) drawn with
// scale x scale pixels per cell; proportional advance (digits fixed at 6 cells), 1 cell spacing.
// Characters outside ASCII 32..126 are drawn as '?'.
enum {
    TEXT_LEFT = 0, TEXT_CENTER = 1, TEXT_RIGHT = 2,  // horizontal anchor
    TEXT_TOP = 0, TEXT_MIDDLE = 4, TEXT_BOTTOM = 8,  // vertical anchor (of the cap height)
    TEXT_BOLD = 16,                                  // doubled one pixel to the right
};
#define FONT_CELL_W 5
#define FONT_CELL_H 9
#define FONT_CAP_H 7
// Width in pixels of s drawn at scale (no trailing spacing).
int text_width(const char *s, int scale);
// Draws s anchored at (x, y) per flags (TEXT_* ORed); returns the width drawn.
int canvas_text(Canvas *c, int x, int y, const char *s, int scale, int flags, Rgb col);
// Same, rotated 90 degrees counter-clockwise (reads bottom to top). The anchor flags refer to the
// rotated text box as seen on the canvas: TEXT_CENTER | TEXT_MIDDLE centres it on (x, y).
void canvas_text_vertical(Canvas *c, int x, int y, const char *s, int scale, int flags, Rgb col);

// Colormaps, piecewise linear in sRGB between control points: CMAP_VIRIDIS (11 points of
// matplotlib's viridis, perceptually ordered, dark blue -> yellow) and CMAP_DIVERGING (11 points
// of ColorBrewer RdBu reversed: dark blue -> white at 0.5 -> dark red). t is clamped to [0, 1];
// a non-finite t gives CMAP_NAN_COLOR.
typedef enum { CMAP_VIRIDIS = 0, CMAP_DIVERGING = 1 } Colormap;
#define CMAP_NAN_COLOR ((Rgb){190, 190, 190})
Rgb colormap_rgb(Colormap m, double t);

// Scales src into the rectangle [x, x+w) x [y, y+h) of dst. SCALE_NEAREST picks the source pixel
// under each destination pixel centre (crisp enlargement), SCALE_BILINEAR interpolates the four
// nearest source pixels, SCALE_AREA averages the source pixels covered (for reduction).
enum { SCALE_NEAREST = 0, SCALE_BILINEAR = 1, SCALE_AREA = 2 };
void canvas_blit(Canvas *dst, int x, int y, int w, int h, const Canvas *src, int mode);

// 1 when this build can write PNG files (libpng found at build time: LOLA_HAVE_PNG).
int canvas_png_supported(void);
// Writes c as an 8-bit RGB PNG to path (via path.tmp + rename). Returns 0, or -1 after a
// log_warn naming the file and the reason (cannot open, libpng error, built without libpng).
int canvas_write_png(const Canvas *c, const char *path);

// Plot axes: a data range [lo, hi], linear or base-10 logarithmic.
typedef struct {
    double lo, hi;
    int log;
} PlotAxis;
// Fits an axis to data in [vmin, vmax]. Linear: lo/hi rounded outwards to a multiple of a
// 1-2-5 tick step (about 5 ticks), with a unit span around a single value. Log (vmin > 0 needed,
// else a linear fit): 5% of the log-span added on both sides (at least 0.1 decade), not snapped.
void plot_axis_fit(PlotAxis *a, double vmin, double vmax, int log);
// Position of v on the axis: 0 at lo, 1 at hi (in log10 for a log axis; NaN for v <= 0 there).
double plot_axis_frac(const PlotAxis *a, double v);
// Major tick values inside [lo, hi] (linear: multiples of the 1-2-5 step; log: decades, or 1-2-5
// multiples when fewer than three decades lie inside). Returns the count (<= max); *step gets the
// linear step (or 0 for log) for plot_format_tick.
int plot_axis_ticks(const PlotAxis *a, double *ticks, int max, double *step);
// Minor ticks of a log axis: 2..9 x 10^k inside [lo, hi]. Returns the count (<= max).
int plot_axis_minor_ticks(const PlotAxis *a, double *ticks, int max);
// Compact label for a tick value: enough decimals for `step` (0: %g style), "0" for |v| tiny
// against step, exponent form for very large or small magnitudes.
void plot_format_tick(double v, double step, char *buf, size_t n);
// The 1-2-5 "nice" step of about span / n.
double plot_nice_step(double span, int n);

#endif
