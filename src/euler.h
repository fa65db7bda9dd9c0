// euler.h: a 2-D compressible Euler finite-volume solver, used to generate The Well's
// euler_multi_quadrants datasets (reference: /work/shared/reference/the-well-format.md §4.1).
//
// Equations (The Well README notation): U = (rho, rho*u, rho*v, E), E = p/(gamma-1) + rho(u²+v²)/2,
// U_t + F(U)_x + G(U)_y = 0 on a rectangle of nx × ny cells of size dx × dy, cell centres
// x_i = (i+½)dx, y_j = (j+½)dy.
// Scheme (our design; Clawpack's exact options are unknown, §4.1):
//   * unsplit finite volume; MUSCL reconstruction of the primitive variables (rho, u, v, p) with a
//     minmod or MC slope limiter (first order at a face whose reconstructed rho or p is not positive);
//   * HLLC Riemann solver (Toro, "Riemann Solvers and Numerical Methods for Fluid Dynamics", §10.4,
//     Davis wave-speed estimates) with an HLL fallback when the star state is degenerate;
//   * SSP-RK2 (Shu-Osher / Heun) in time, dt = CFL * min(dx/max(|u|+c), dy/max(|v|+c));
//   * open (zero-gradient extrapolation, Clawpack "extrap") or periodic boundaries, 2 ghost cells;
//   * positivity floors on rho and p after every stage; float64 throughout; OpenMP over x rows.
// Memory layout: every cell array is [x][y] with y fastest (The Well's field order), with 2 ghost
// cells on every side: index ((i+2)*(ny+4) + (j+2))*4 + k for interior cell (i, j), component k.
// Results do not depend on the number of OpenMP threads (no floating-point reductions except max).
// Loops run multi-threaded only on grids of at least euler_set_omp_min_cells() cells (default 16384 =
// 128²); smaller grids run on one thread (callers parallelise over trajectories instead).
#ifndef LOLA_EULER_H
#define LOLA_EULER_H

#include <stddef.h>
#include <stdint.h>
#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { EULER_BC_OPEN = 0, EULER_BC_PERIODIC = 1 } EulerBC;
typedef enum { EULER_LIMITER_MINMOD = 0, EULER_LIMITER_MC = 1 } EulerLimiter;
typedef enum { EULER_FLUX_HLLC = 0, EULER_FLUX_HLL = 1 } EulerFlux;

#define EULER_NG 2 // ghost cells per side

typedef struct {
    int nx, ny;           // interior cells along x (slow index) and y (fast index)
    double dx, dy;        // cell sizes
    double gamma;         // ratio of specific heats (> 1)
    EulerBC bc;           // same kind on all four sides
    EulerLimiter limiter; // slope limiter for MUSCL
    EulerFlux flux;       // HLLC (default) or plain HLL
    double cfl;           // Courant number, default 0.4
    double rho_floor;     // positivity floors, default 1e-6
    double p_floor;
} EulerConfig;

// Defaults: nx = ny = n on the unit square, given gamma, open BCs, minmod, HLLC, CFL 0.4, floors 1e-6.
EulerConfig euler_config_default(int n, double gamma);

typedef struct {
    EulerConfig cfg;
    int sx, sy;       // padded sizes nx+4, ny+4
    double *U;        // conservative state, [sx][sy][4]
    double *U0;       // RK stage copy
    double *W;        // primitives (rho, u, v, p) incl. ghosts
    double *Fx;       // x-face fluxes, [(nx+1)][ny][4], face i sits at x = i*dx
    double *Fy;       // y-face fluxes, [nx][(ny+1)][4]
    double t;         // current time
    int64_t steps;    // RK steps taken
    int64_t n_floor;  // number of cell updates where a floor was applied
    int64_t n_hll;    // number of face fluxes where HLLC fell back to HLL
} EulerSolver;

// Allocates and zeroes a solver; dies on invalid config (sizes < 1, gamma <= 1, cfl not in (0,1]).
void euler_init(EulerSolver *s, const EulerConfig *cfg);
// Process-wide threshold (cells) below which the solver's loops are not split over OpenMP threads.
void euler_set_omp_min_cells(int64_t cells);
void euler_free(EulerSolver *s);

// Pointer to the 4 conservative values of interior cell (i, j), 0 <= i < nx, 0 <= j < ny.
static inline double *euler_cell(EulerSolver *s, int i, int j) {
    return s->U + ((size_t)(i + EULER_NG) * (size_t)s->sy + (size_t)(j + EULER_NG)) * 4;
}
// Sets interior cell (i, j) from primitives (rho, u, v, p).
void euler_set_prim(EulerSolver *s, int i, int j, double rho, double u, double v, double p);

// Largest stable step at the current state: cfl * min over cells of min(dx/(|u|+c), dy/(|v|+c)).
// Dies (naming the time) if the state holds a non-finite value.
double euler_cfl_dt(EulerSolver *s);
// One SSP-RK2 step of size dt (no CFL check).
void euler_step(EulerSolver *s, double dt);
// Steps with CFL-adaptive dt until s->t == t_end exactly (the last step is shortened). Returns the
// number of steps taken. Dies if dt collapses (< 1e-12 * t_end) or a non-finite value appears.
int64_t euler_advance_to(EulerSolver *s, double t_end);
// Domain totals of (mass, x-momentum, y-momentum, energy) = sum U * dx * dy (interior cells).
void euler_totals(const EulerSolver *s, double tot[4]);
// Minimum density and pressure over the interior.
void euler_min_rho_p(const EulerSolver *s, double *rho_min, double *p_min);

// ------------------------------------------------------------------------------------------------
// The Well's gas table (the-well-format.md §1.1): gamma values and gas names for the file names.
#define EULER_N_GAMMAS 10
extern const double euler_gamma_values[EULER_N_GAMMAS];
extern const char *const euler_gamma_strings[EULER_N_GAMMAS]; // as in file names: "1.13", "1.3", ...
extern const char *const euler_gas_names[EULER_N_GAMMAS];     // "C3H8_16", ...
// Index of gamma in the table (|diff| < 1e-9), or -1.
int euler_gamma_index(double gamma);

// ------------------------------------------------------------------------------------------------
// Random multi-quadrant Riemann initial conditions (§4.1; the exact official sampler is unknown).
// With probability p_quadrants: classic 4 quadrants with a split point uniform in [0.2, 0.8]²;
// otherwise an nbx × nby block grid with nbx, nby uniform in {2, 3, 4} and sorted random cuts
// (uniform in [0.1, 0.9], at least 0.1 apart). States: per trajectory a level c_rho log-uniform in
// [rho_lo, rho_hi] (c_p in [p_lo, p_hi]); per block rho = c_rho * exp(rho_spread * (2U - 1)), p likewise
// with p_spread, u and v uniform in [-u_max, u_max]. The trajectory-level factor carries most of the
// dataset's variance while the within-trajectory contrast sets the wave strength (calibrated against
// The Well's stats.yaml, see tools/well-euler.c).
typedef struct {
    double p_quadrants;
    double rho_lo, rho_hi, rho_spread;
    double p_lo, p_hi, p_spread;
    double u_max;
} EulerICParams;
EulerICParams euler_ic_default(void);

// A sampled initial condition on the unit square: cuts in x (nbx-1 values) and y, states per block.
typedef struct {
    int nbx, nby;
    double xcut[3], ycut[3];
    double prim[4][4][4]; // [bx][by][rho,u,v,p]
} EulerIC;
void euler_ic_sample(Rng *rng, const EulerICParams *prm, EulerIC *ic);
// Sets every cell of the solver from the IC, evaluated at cell centres (domain [0, nx dx] × [0, ny dy]).
void euler_ic_apply(EulerSolver *s, const EulerIC *ic);

// ------------------------------------------------------------------------------------------------
// One Well trajectory: internal grid M = n * factor on [0,1]², frames at t_k = k t_max/(frames-1),
// each frame downsampled the mini-well way (Gaussian σ = (f-1)/2, nearest-edge, then stride f;
// the-well-format.md §6) when factor > 1, and stored as float32 in The Well's order:
// energy/density/pressure (frames, n, n), momentum (frames, n, n, 2).
typedef struct {
    int n;            // output resolution
    int factor;       // internal resolution = n * factor (>= 1)
    int frames;       // number of stored frames (>= 1); frame 0 is the initial condition
    double t_max;     // time of the last frame
    double gamma;
    EulerBC bc;
    EulerLimiter limiter;
    double cfl;
    EulerICParams ic;
} EulerTrajSpec;

typedef struct {
    int64_t steps;   // total RK steps
    int64_t n_floor; // floor activations
    int64_t n_hll;   // HLL fallbacks
    double seconds;  // wall time
} EulerTrajInfo;

// Runs one trajectory from an IC drawn from rng_child(seed, tag)'s stream. Output buffers must hold
// frames*n*n floats (momentum: frames*n*n*2). Deterministic: identical bytes for identical inputs.
void euler_run_trajectory(const EulerTrajSpec *sp, uint64_t seed, uint64_t tag, float *energy, float *density,
                          float *pressure, float *momentum, EulerTrajInfo *info);

// Mini-well downsampling of one m × m field (y fastest) by factor f (m % f == 0): separable Gaussian
// filter σ = (f-1)/2, truncated at radius int(4σ + 0.5) as scipy.ndimage.gaussian_filter does,
// mode "nearest" (edge value repeated), first along x then along y, then out[i][j] = filt[f i][f j].
// tmp must hold m*m doubles (only (m/f)*m are used). f == 1 copies.
void euler_downsample(const double *in, int m, int f, double *out, double *tmp);

// Trajectory tag for rng_child: unique per (bc, gamma index, trajectory index in its gamma file).
static inline uint64_t euler_traj_tag(int bc, int gamma_index, int64_t traj) {
    return ((uint64_t)(bc & 0xff) << 56) | ((uint64_t)(gamma_index & 0xff) << 48) | ((uint64_t)traj & 0xffffffffffffULL);
}

#ifdef __cplusplus
}
#endif
#endif
