// canvas.c: see canvas.h.
#include "canvas.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#ifdef LOLA_HAVE_PNG
#include <png.h>
#include <setjmp.h>
#endif

// ---------------------------------------------------------------------------------------------
// Pixels

Canvas canvas_new(int w, int h, Rgb bg) {
    if (w < 1 || h < 1 || w > 32768 || h > 32768) lola_die("canvas_new: bad size %d x %d (each must be in 1..32768)", w, h);
    Canvas c = {w, h, (uint8_t *)lola_calloc((size_t)w * h, 3)};
    canvas_fill(&c, bg);
    return c;
}

void canvas_free(Canvas *c) {
    free(c->px);
    memset(c, 0, sizeof *c);
}

void canvas_fill(Canvas *c, Rgb col) {
    size_t n = (size_t)c->w * c->h;
    for (size_t i = 0; i < n; i++) {
        c->px[3 * i] = col.r;
        c->px[3 * i + 1] = col.g;
        c->px[3 * i + 2] = col.b;
    }
}

void canvas_set(Canvas *c, int x, int y, Rgb col) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + 3 * ((size_t)y * c->w + x);
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
}

Rgb canvas_get(const Canvas *c, int x, int y) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return (Rgb){0, 0, 0};
    const uint8_t *p = c->px + 3 * ((size_t)y * c->w + x);
    return (Rgb){p[0], p[1], p[2]};
}

static uint8_t mix8(uint8_t a, uint8_t b, double t) { return (uint8_t)lrint(a + (b - a) * t); }

void canvas_blend(Canvas *c, int x, int y, Rgb col, double alpha) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h || !(alpha > 0)) return;
    if (alpha >= 1) {
        canvas_set(c, x, y, col);
        return;
    }
    uint8_t *p = c->px + 3 * ((size_t)y * c->w + x);
    p[0] = mix8(p[0], col.r, alpha);
    p[1] = mix8(p[1], col.g, alpha);
    p[2] = mix8(p[2], col.b, alpha);
}

void canvas_rect(Canvas *c, int x, int y, int w, int h, Rgb col) {
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int x1 = x + w > c->w ? c->w : x + w, y1 = y + h > c->h ? c->h : y + h;
    for (int j = y0; j < y1; j++)
        for (int i = x0; i < x1; i++) canvas_set(c, i, j, col);
}

void canvas_rect_outline(Canvas *c, int x, int y, int w, int h, int thick, Rgb col) {
    if (thick * 2 >= w || thick * 2 >= h) {
        canvas_rect(c, x, y, w, h, col);
        return;
    }
    canvas_rect(c, x, y, w, thick, col);
    canvas_rect(c, x, y + h - thick, w, thick, col);
    canvas_rect(c, x, y + thick, thick, h - 2 * thick, col);
    canvas_rect(c, x + w - thick, y + thick, thick, h - 2 * thick, col);
}

// ---------------------------------------------------------------------------------------------
// Anti-aliased primitives: coverage of a pixel = clamp(radius + 0.5 - distance of its centre, 0, 1)
// (a one-pixel linear ramp across the edge).

void canvas_line(Canvas *c, double x0, double y0, double x1, double y1, double thick, Rgb col) {
    if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1)) return;
    double r = 0.5 * (thick > 0.5 ? thick : 0.5);
    int ix0 = (int)floor(fmin(x0, x1) - r - 1), ix1 = (int)ceil(fmax(x0, x1) + r + 1);
    int iy0 = (int)floor(fmin(y0, y1) - r - 1), iy1 = (int)ceil(fmax(y0, y1) + r + 1);
    if (ix0 < 0) ix0 = 0;
    if (iy0 < 0) iy0 = 0;
    if (ix1 > c->w - 1) ix1 = c->w - 1;
    if (iy1 > c->h - 1) iy1 = c->h - 1;
    double dx = x1 - x0, dy = y1 - y0, L2 = dx * dx + dy * dy;
    for (int j = iy0; j <= iy1; j++)
        for (int i = ix0; i <= ix1; i++) {
            double px = i + 0.5 - x0, py = j + 0.5 - y0;
            double t = L2 > 0 ? (px * dx + py * dy) / L2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = px - t * dx, ey = py - t * dy;
            double cov = r + 0.5 - sqrt(ex * ex + ey * ey);
            if (cov > 0) canvas_blend(c, i, j, col, cov > 1 ? 1 : cov);
        }
}

void canvas_polyline(Canvas *c, const double *x, const double *y, int n, double thick, double dash, double gap, Rgb col) {
    // Dash state carried across segments: `on` (drawing a dash or skipping a gap) and the length
    // left in that state; a state ending within 1e-9 pixel flips to a full dash or gap, so each
    // step makes progress.
    int on = 1;
    double left = dash;
    if (gap <= 0) gap = dash;
    for (int k = 0; k + 1 < n; k++) {
        if (!isfinite(x[k]) || !isfinite(y[k]) || !isfinite(x[k + 1]) || !isfinite(y[k + 1])) continue;
        if (dash <= 0) {
            canvas_line(c, x[k], y[k], x[k + 1], y[k + 1], thick, col);
            continue;
        }
        double dx = x[k + 1] - x[k], dy = y[k + 1] - y[k], L = sqrt(dx * dx + dy * dy);
        double s = 0;
        while (L - s > 1e-9) {
            double step = left < L - s ? left : L - s;
            if (on) canvas_line(c, x[k] + dx * s / L, y[k] + dy * s / L, x[k] + dx * (s + step) / L, y[k] + dy * (s + step) / L, thick, col);
            s += step;
            left -= step;
            if (left <= 1e-9) {
                on = !on;
                left = on ? dash : gap;
            }
        }
    }
}

void canvas_disc(Canvas *c, double cx, double cy, double r, Rgb col) { canvas_line(c, cx, cy, cx, cy, 2 * r, col); }

// ---------------------------------------------------------------------------------------------
// Font: 5 x 9 cells per glyph, ASCII 32..126, rows top to bottom ('#' = ink). Rows 0..6 hold
// capitals and digits (baseline under row 6), rows 7..8 the descenders; a glyph given with 7
// rows has empty descender rows. Drawn for this project.
static const char *const font_glyphs[95] = {
    /* sp  */ "....." "....." "....." "....." "....." "....." ".....",
    /* !   */ "..#.." "..#.." "..#.." "..#.." "..#.." "....." "..#..",
    /* "   */ ".#.#." ".#.#." "....." "....." "....." "....." ".....",
    /* #   */ ".#.#." ".#.#." "#####" ".#.#." "#####" ".#.#." ".#.#.",
    /* $   */ "..#.." ".####" "#.#.." ".###." "..#.#" "####." "..#..",
    /* %   */ "##..." "##..#" "...#." "..#.." ".#..." "#..##" "...##",
    /* &   */ ".##.." "#..#." "#.#.." ".#..." "#.#.#" "#..#." ".##.#",
    /* '   */ "..#.." "..#.." ".#..." "....." "....." "....." ".....",
    /* (   */ "...#." "..#.." ".#..." ".#..." ".#..." "..#.." "...#.",
    /* )   */ ".#..." "..#.." "...#." "...#." "...#." "..#.." ".#...",
    /* *   */ "....." "..#.." "#.#.#" ".###." "#.#.#" "..#.." ".....",
    /* +   */ "....." "..#.." "..#.." "#####" "..#.." "..#.." ".....",
    /* ,   */ "....." "....." "....." "....." "....." "....." "..#.." "..#.." ".#...",
    /* -   */ "....." "....." "....." "#####" "....." "....." ".....",
    /* .   */ "....." "....." "....." "....." "....." "....." "..#..",
    /* /   */ "....#" "...#." "...#." "..#.." ".#..." ".#..." "#....",
    /* 0   */ ".###." "#...#" "#..##" "#.#.#" "##..#" "#...#" ".###.",
    /* 1   */ "..#.." ".##.." "..#.." "..#.." "..#.." "..#.." ".###.",
    /* 2   */ ".###." "#...#" "....#" "...#." "..#.." ".#..." "#####",
    /* 3   */ "#####" "...#." "..#.." "...#." "....#" "#...#" ".###.",
    /* 4   */ "...#." "..##." ".#.#." "#..#." "#####" "...#." "...#.",
    /* 5   */ "#####" "#...." "####." "....#" "....#" "#...#" ".###.",
    /* 6   */ "..##." ".#..." "#...." "####." "#...#" "#...#" ".###.",
    /* 7   */ "#####" "....#" "...#." "..#.." ".#..." ".#..." ".#...",
    /* 8   */ ".###." "#...#" "#...#" ".###." "#...#" "#...#" ".###.",
    /* 9   */ ".###." "#...#" "#...#" ".####" "....#" "...#." ".##..",
    /* :   */ "....." "....." "..#.." "....." "....." "..#.." ".....",
    /* ;   */ "....." "....." "..#.." "....." "....." "..#.." "..#.." ".#..." ".....",
    /* <   */ "...#." "..#.." ".#..." "#...." ".#..." "..#.." "...#.",
    /* =   */ "....." "....." "#####" "....." "#####" "....." ".....",
    /* >   */ ".#..." "..#.." "...#." "....#" "...#." "..#.." ".#...",
    /* ?   */ ".###." "#...#" "....#" "...#." "..#.." "....." "..#..",
    /* @   */ ".###." "#...#" "....#" ".##.#" "#.#.#" "#.#.#" ".###.",
    /* A   */ ".###." "#...#" "#...#" "#####" "#...#" "#...#" "#...#",
    /* B   */ "####." "#...#" "#...#" "####." "#...#" "#...#" "####.",
    /* C   */ ".###." "#...#" "#...." "#...." "#...." "#...#" ".###.",
    /* D   */ "###.." "#..#." "#...#" "#...#" "#...#" "#..#." "###..",
    /* E   */ "#####" "#...." "#...." "####." "#...." "#...." "#####",
    /* F   */ "#####" "#...." "#...." "####." "#...." "#...." "#....",
    /* G   */ ".###." "#...#" "#...." "#.###" "#...#" "#...#" ".####",
    /* H   */ "#...#" "#...#" "#...#" "#####" "#...#" "#...#" "#...#",
    /* I   */ ".###." "..#.." "..#.." "..#.." "..#.." "..#.." ".###.",
    /* J   */ "..###" "...#." "...#." "...#." "...#." "#..#." ".##..",
    /* K   */ "#...#" "#..#." "#.#.." "##..." "#.#.." "#..#." "#...#",
    /* L   */ "#...." "#...." "#...." "#...." "#...." "#...." "#####",
    /* M   */ "#...#" "##.##" "#.#.#" "#.#.#" "#...#" "#...#" "#...#",
    /* N   */ "#...#" "#...#" "##..#" "#.#.#" "#..##" "#...#" "#...#",
    /* O   */ ".###." "#...#" "#...#" "#...#" "#...#" "#...#" ".###.",
    /* P   */ "####." "#...#" "#...#" "####." "#...." "#...." "#....",
    /* Q   */ ".###." "#...#" "#...#" "#...#" "#.#.#" "#..#." ".##.#",
    /* R   */ "####." "#...#" "#...#" "####." "#.#.." "#..#." "#...#",
    /* S   */ ".####" "#...." "#...." ".###." "....#" "....#" "####.",
    /* T   */ "#####" "..#.." "..#.." "..#.." "..#.." "..#.." "..#..",
    /* U   */ "#...#" "#...#" "#...#" "#...#" "#...#" "#...#" ".###.",
    /* V   */ "#...#" "#...#" "#...#" "#...#" "#...#" ".#.#." "..#..",
    /* W   */ "#...#" "#...#" "#...#" "#.#.#" "#.#.#" "#.#.#" ".#.#.",
    /* X   */ "#...#" "#...#" ".#.#." "..#.." ".#.#." "#...#" "#...#",
    /* Y   */ "#...#" "#...#" ".#.#." "..#.." "..#.." "..#.." "..#..",
    /* Z   */ "#####" "....#" "...#." "..#.." ".#..." "#...." "#####",
    /* [   */ ".###." ".#..." ".#..." ".#..." ".#..." ".#..." ".###.",
    /* bs  */ "#...." ".#..." ".#..." "..#.." "...#." "...#." "....#",
    /* ]   */ ".###." "...#." "...#." "...#." "...#." "...#." ".###.",
    /* ^   */ "..#.." ".#.#." "#...#" "....." "....." "....." ".....",
    /* _   */ "....." "....." "....." "....." "....." "....." "....." "#####" ".....",
    /* `   */ ".#..." "..#.." "....." "....." "....." "....." ".....",
    /* a   */ "....." "....." ".###." "....#" ".####" "#...#" ".####",
    /* b   */ "#...." "#...." "####." "#...#" "#...#" "#...#" "####.",
    /* c   */ "....." "....." ".###." "#...." "#...." "#...#" ".###.",
    /* d   */ "....#" "....#" ".####" "#...#" "#...#" "#...#" ".####",
    /* e   */ "....." "....." ".###." "#...#" "#####" "#...." ".###.",
    /* f   */ "..##." ".#..#" ".#..." "###.." ".#..." ".#..." ".#...",
    /* g   */ "....." "....." ".####" "#...#" "#...#" "#...#" ".####" "....#" ".###.",
    /* h   */ "#...." "#...." "#.##." "##..#" "#...#" "#...#" "#...#",
    /* i   */ "..#.." "....." ".##.." "..#.." "..#.." "..#.." ".###.",
    /* j   */ "...#." "....." "..##." "...#." "...#." "...#." "...#." "#..#." ".##..",
    /* k   */ "#...." "#...." "#..#." "#.#.." "##..." "#.#.." "#..#.",
    /* l   */ ".##.." "..#.." "..#.." "..#.." "..#.." "..#.." ".###.",
    /* m   */ "....." "....." "##.#." "#.#.#" "#.#.#" "#.#.#" "#.#.#",
    /* n   */ "....." "....." "#.##." "##..#" "#...#" "#...#" "#...#",
    /* o   */ "....." "....." ".###." "#...#" "#...#" "#...#" ".###.",
    /* p   */ "....." "....." "####." "#...#" "#...#" "#...#" "####." "#...." "#....",
    /* q   */ "....." "....." ".####" "#...#" "#...#" "#...#" ".####" "....#" "....#",
    /* r   */ "....." "....." "#.##." "##..#" "#...." "#...." "#....",
    /* s   */ "....." "....." ".####" "#...." ".###." "....#" "####.",
    /* t   */ ".#..." ".#..." "###.." ".#..." ".#..." ".#..#" "..##.",
    /* u   */ "....." "....." "#...#" "#...#" "#...#" "#..##" ".##.#",
    /* v   */ "....." "....." "#...#" "#...#" "#...#" ".#.#." "..#..",
    /* w   */ "....." "....." "#...#" "#...#" "#.#.#" "#.#.#" ".#.#.",
    /* x   */ "....." "....." "#...#" ".#.#." "..#.." ".#.#." "#...#",
    /* y   */ "....." "....." "#...#" "#...#" "#...#" "#...#" ".####" "....#" ".###.",
    /* z   */ "....." "....." "#####" "...#." "..#.." ".#..." "#####",
    /* {   */ "...#." "..#.." "..#.." ".#..." "..#.." "..#.." "...#.",
    /* |   */ "..#.." "..#.." "..#.." "..#.." "..#.." "..#.." "..#..",
    /* }   */ ".#..." "..#.." "..#.." "...#." "..#.." "..#.." ".#...",
    /* ~   */ "....." "....." ".#..." "#.#.#" "...#." "....." ".....",
};

static int font_ink(const char *g, int r, int col) {
    size_t i = (size_t)r * FONT_CELL_W + col;
    return i < strlen(g) && g[i] == '#';
}

static const char *font_glyph(unsigned char ch) { return font_glyphs[(ch >= 32 && ch <= 126 ? ch : '?') - 32]; }

// Ink columns [*c0, *c1] of a glyph (digits and space fixed; others trimmed to their ink).
static void glyph_span(unsigned char ch, int *c0, int *c1) {
    if (ch == ' ') {
        *c0 = 0;
        *c1 = 2;
        return;
    }
    if (ch >= '0' && ch <= '9') {
        *c0 = 0;
        *c1 = FONT_CELL_W - 1;
        return;
    }
    const char *g = font_glyph(ch);
    int lo = FONT_CELL_W, hi = -1;
    for (int r = 0; r < FONT_CELL_H; r++)
        for (int col = 0; col < FONT_CELL_W; col++)
            if (font_ink(g, r, col)) {
                lo = col < lo ? col : lo;
                hi = col > hi ? col : hi;
            }
    if (hi < 0) lo = 0, hi = 2;
    *c0 = lo;
    *c1 = hi;
}

int text_width(const char *s, int scale) {
    int w = 0, n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++) {
        int c0, c1;
        glyph_span(*p, &c0, &c1);
        w += c1 - c0 + 2;
    }
    return n ? (w - 1) * scale : 0;
}

// Draws the text with cell (col, row) of each glyph mapped by `put` (horizontal or rotated).
typedef void (*CellPut)(Canvas *c, int ox, int oy, int u, int v, int scale, Rgb col);

static void put_h(Canvas *c, int ox, int oy, int u, int v, int scale, Rgb col) {
    canvas_rect(c, ox + u * scale, oy + v * scale, scale, scale, col);
}

// Rotated 90 degrees counter-clockwise: text advance goes up, glyph rows go right.
static void put_v(Canvas *c, int ox, int oy, int u, int v, int scale, Rgb col) {
    canvas_rect(c, ox + v * scale, oy - (u + 1) * scale, scale, scale, col);
}

static void draw_text(Canvas *c, int ox, int oy, const char *s, int scale, int bold, Rgb col, CellPut put) {
    int u = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int c0, c1;
        glyph_span(*p, &c0, &c1);
        const char *g = font_glyph(*p);
        for (int r = 0; r < FONT_CELL_H; r++)
            for (int k = c0; k <= c1; k++)
                if (font_ink(g, r, k)) {
                    put(c, ox, oy, u + k - c0, r, scale, col);
                    if (bold) {
                        // one device pixel thicker along the advance direction
                        if (put == put_h) canvas_rect(c, ox + (u + k - c0) * scale + 1, oy + r * scale, scale, scale, col);
                        else canvas_rect(c, ox + r * scale, oy - (u + k - c0 + 1) * scale - 1, scale, scale, col);
                    }
                }
        u += c1 - c0 + 2;
    }
}

int canvas_text(Canvas *c, int x, int y, const char *s, int scale, int flags, Rgb col) {
    int w = text_width(s, scale) + ((flags & TEXT_BOLD) ? 1 : 0), h = FONT_CAP_H * scale;
    if (flags & TEXT_CENTER) x -= w / 2;
    else if (flags & TEXT_RIGHT) x -= w;
    if (flags & TEXT_MIDDLE) y -= h / 2;
    else if (flags & TEXT_BOTTOM) y -= h;
    draw_text(c, x, y, s, scale, flags & TEXT_BOLD, col, put_h);
    return w;
}

void canvas_text_vertical(Canvas *c, int x, int y, const char *s, int scale, int flags, Rgb col) {
    // On the canvas the rotated box is FONT_CAP_H*scale wide (glyph rows) and text_width tall.
    int len = text_width(s, scale) + ((flags & TEXT_BOLD) ? 1 : 0), th = FONT_CAP_H * scale;
    int left = x, bottom = y + len; // the box's left edge, and its bottom edge where the text starts
    if (flags & TEXT_CENTER) left = x - th / 2;
    else if (flags & TEXT_RIGHT) left = x - th;
    if (flags & TEXT_MIDDLE) bottom = y + len / 2;
    else if (flags & TEXT_BOTTOM) bottom = y;
    draw_text(c, left, bottom, s, scale, flags & TEXT_BOLD, col, put_v);
}

// ---------------------------------------------------------------------------------------------
// Colormaps

// matplotlib viridis at t = 0, 0.1, ..., 1.
static const Rgb cmap_viridis[11] = {{68, 1, 84},    {72, 36, 117},  {65, 68, 135},  {53, 95, 141},
                                     {42, 120, 142}, {33, 145, 140}, {34, 168, 132}, {68, 191, 112},
                                     {122, 209, 81}, {189, 223, 38}, {253, 231, 37}};
// ColorBrewer RdBu (11 classes), reversed: blue (low) -> near-white (0.5) -> red (high).
static const Rgb cmap_rdbu_r[11] = {{5, 48, 97},     {33, 102, 172}, {67, 147, 195}, {146, 197, 222},
                                    {209, 229, 240}, {247, 247, 247}, {253, 219, 199}, {244, 165, 130},
                                    {214, 96, 77},   {178, 24, 43},  {103, 0, 31}};

Rgb colormap_rgb(Colormap m, double t) {
    if (!isfinite(t)) return CMAP_NAN_COLOR;
    const Rgb *p = m == CMAP_DIVERGING ? cmap_rdbu_r : cmap_viridis;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double f = t * 10;
    int i = (int)f;
    if (i >= 10) return p[10];
    f -= i;
    return (Rgb){mix8(p[i].r, p[i + 1].r, f), mix8(p[i].g, p[i + 1].g, f), mix8(p[i].b, p[i + 1].b, f)};
}

// ---------------------------------------------------------------------------------------------
// Blit

void canvas_blit(Canvas *dst, int x, int y, int w, int h, const Canvas *src, int mode) {
    if (w <= 0 || h <= 0 || src->w <= 0 || src->h <= 0) return;
    double sx = (double)src->w / w, sy = (double)src->h / h; // source pixels per destination pixel
    for (int j = 0; j < h; j++) {
        if (y + j < 0 || y + j >= dst->h) continue;
        for (int i = 0; i < w; i++) {
            if (x + i < 0 || x + i >= dst->w) continue;
            double acc[3] = {0, 0, 0};
            if (mode == SCALE_NEAREST) {
                int u = (int)((i + 0.5) * sx), v = (int)((j + 0.5) * sy);
                Rgb p = canvas_get(src, u < src->w ? u : src->w - 1, v < src->h ? v : src->h - 1);
                canvas_set(dst, x + i, y + j, p);
                continue;
            } else if (mode == SCALE_BILINEAR) {
                double u = (i + 0.5) * sx - 0.5, v = (j + 0.5) * sy - 0.5;
                u = u < 0 ? 0 : u > src->w - 1 ? src->w - 1 : u;
                v = v < 0 ? 0 : v > src->h - 1 ? src->h - 1 : v;
                int u0 = (int)u, v0 = (int)v;
                int u1 = u0 + 1 < src->w ? u0 + 1 : u0, v1 = v0 + 1 < src->h ? v0 + 1 : v0;
                double fu = u - u0, fv = v - v0;
                const int us[4] = {u0, u1, u0, u1}, vs[4] = {v0, v0, v1, v1};
                const double ws[4] = {(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv};
                for (int q = 0; q < 4; q++) {
                    Rgb p = canvas_get(src, us[q], vs[q]);
                    acc[0] += ws[q] * p.r;
                    acc[1] += ws[q] * p.g;
                    acc[2] += ws[q] * p.b;
                }
            } else { // SCALE_AREA: overlap-weighted mean of the covered source pixels
                double u0 = i * sx, u1 = (i + 1) * sx, v0 = j * sy, v1 = (j + 1) * sy, wsum = 0;
                for (int v = (int)v0; v < v1 && v < src->h; v++) {
                    double wv = fmin(v + 1, v1) - fmax(v, v0);
                    for (int u = (int)u0; u < u1 && u < src->w; u++) {
                        double wgt = wv * (fmin(u + 1, u1) - fmax(u, u0));
                        if (wgt <= 0) continue;
                        Rgb p = canvas_get(src, u, v);
                        acc[0] += wgt * p.r;
                        acc[1] += wgt * p.g;
                        acc[2] += wgt * p.b;
                        wsum += wgt;
                    }
                }
                if (wsum > 0)
                    for (int q = 0; q < 3; q++) acc[q] /= wsum;
            }
            canvas_set(dst, x + i, y + j, (Rgb){(uint8_t)lrint(acc[0]), (uint8_t)lrint(acc[1]), (uint8_t)lrint(acc[2])});
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PNG

#ifdef LOLA_HAVE_PNG
typedef struct {
    jmp_buf jb;
    char msg[256];
} PngErr;

static void png_err_fn(png_structp png, png_const_charp msg) {
    PngErr *e = (PngErr *)png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

int canvas_png_supported(void) { return 1; }

int canvas_write_png(const Canvas *c, const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        log_warn("cannot write PNG '%s': cannot open '%s': %s", path, tmp, strerror(errno));
        return -1;
    }
    static PngErr err; // static: must survive longjmp (volatile semantics not needed then)
    err.msg[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        remove(tmp);
        log_warn("cannot write PNG '%s': libpng could not allocate its structures", path);
        return -1;
    }
    if (setjmp(err.jb)) {
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        remove(tmp);
        log_warn("cannot write PNG '%s': libpng: %s", path, err.msg);
        return -1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++) png_write_row(png, (png_const_bytep)(c->px + (size_t)y * c->w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    int bad = ferror(fp);
    if (fclose(fp) != 0 || bad) {
        remove(tmp);
        log_warn("cannot write PNG '%s': write error on '%s': %s", path, tmp, strerror(errno));
        return -1;
    }
    if (rename(tmp, path) != 0) {
        log_warn("cannot write PNG '%s': cannot rename '%s': %s", path, tmp, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}
#else
int canvas_png_supported(void) { return 0; }

int canvas_write_png(const Canvas *c, const char *path) {
    (void)c;
    log_warn("cannot write PNG '%s': this build has no libpng (install libpng and rebuild; see 'make config')", path);
    return -1;
}
#endif

// ---------------------------------------------------------------------------------------------
// Plot axes

double plot_nice_step(double span, int n) {
    if (!(span > 0) || !isfinite(span)) return 1;
    double raw = span / (n > 0 ? n : 1), mag = pow(10, floor(log10(raw))), f = raw / mag;
    double nice = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    return nice * mag;
}

void plot_axis_fit(PlotAxis *a, double vmin, double vmax, int log) {
    if (!isfinite(vmin) || !isfinite(vmax)) vmin = 0, vmax = 1;
    if (vmin > vmax) {
        double t = vmin;
        vmin = vmax;
        vmax = t;
    }
    if (log && vmin > 0) {
        double l0 = log10(vmin), l1 = log10(vmax), pad = 0.05 * (l1 - l0);
        if (pad < 0.1) pad = 0.1;
        a->log = 1;
        a->lo = pow(10, l0 - pad);
        a->hi = pow(10, l1 + pad);
        return;
    }
    a->log = 0;
    if (vmax - vmin <= 1e-12 * fmax(fabs(vmin), fabs(vmax))) {
        double d = vmin != 0 ? 0.5 * fabs(vmin) : 0.5;
        vmin -= d;
        vmax += d;
    }
    double step = plot_nice_step(vmax - vmin, 5);
    a->lo = floor(vmin / step + 1e-9) * step;
    a->hi = ceil(vmax / step - 1e-9) * step;
}

double plot_axis_frac(const PlotAxis *a, double v) {
    if (a->log) {
        if (!(v > 0)) return NAN;
        return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    }
    return (v - a->lo) / (a->hi - a->lo);
}

int plot_axis_ticks(const PlotAxis *a, double *ticks, int max, double *step) {
    int n = 0;
    if (a->log) {
        *step = 0;
        int k0 = (int)ceil(log10(a->lo) - 1e-9), k1 = (int)floor(log10(a->hi) + 1e-9);
        if (k1 - k0 >= 2) {
            int every = (k1 - k0) / 6 + 1; // at most ~7 labelled decades
            for (int k = k0; k <= k1 && n < max; k++)
                if ((k - k0) % every == 0) ticks[n++] = pow(10, k);
            return n;
        }
        static const double mults[3] = {1, 2, 5};
        for (int k = k0 - 1; k <= k1 + 1; k++)
            for (int m = 0; m < 3 && n < max; m++) {
                double v = mults[m] * pow(10, k);
                if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9)) ticks[n++] = v;
            }
        return n;
    }
    double s = plot_nice_step(a->hi - a->lo, 5);
    *step = s;
    for (double k = ceil(a->lo / s - 1e-9); k * s <= a->hi + 1e-9 * s && n < max; k += 1) ticks[n++] = k * s;
    return n;
}

int plot_axis_minor_ticks(const PlotAxis *a, double *ticks, int max) {
    int n = 0;
    if (!a->log) return 0;
    for (int k = (int)floor(log10(a->lo)); k <= (int)ceil(log10(a->hi)); k++)
        for (int m = 2; m <= 9 && n < max; m++) {
            double v = m * pow(10, k);
            if (v > a->lo && v < a->hi) ticks[n++] = v;
        }
    return n;
}

void plot_format_tick(double v, double step, char *buf, size_t n) {
    double av = fabs(v);
    if (step > 0 && av < 1e-9 * step) {
        snprintf(buf, n, "0");
        return;
    }
    if (av >= 1e5 || (av > 0 && av < 1e-3)) {
        // exponent form, mantissa trimmed: 1e-05 -> "1e-5", 2.5e+06 -> "2.5e6"
        char m[32];
        int e = (int)floor(log10(av) + 1e-9);
        snprintf(m, sizeof m, "%.2f", v / pow(10, e));
        char *dot = strchr(m, '.');
        if (dot) {
            char *end = m + strlen(m) - 1;
            while (end > dot && *end == '0') *end-- = 0;
            if (end == dot) *end = 0;
        }
        snprintf(buf, n, "%se%d", m, e);
        return;
    }
    int dec = 0;
    if (step > 0) {
        dec = (int)ceil(-log10(step) - 1e-9);
        dec = dec < 0 ? 0 : dec > 6 ? 6 : dec;
        snprintf(buf, n, "%.*f", dec, v);
    } else {
        snprintf(buf, n, "%g", v);
    }
}
