// train.c: see train.h.
#include "train.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "common.h"
#include "dist.h"
#include "gradsync.h"
#include "metrics_log.h"
#include "nn.h"

static volatile sig_atomic_t stop_flag = 0;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

void train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int train_stop_requested(void) { return stop_flag != 0; }

static double mean_over_ranks(double v) {
    dist_allreduce_sum_double(&v, 1);
    return v / (double)dist_size();
}

typedef struct {
    double sum, sumsq;
    int64_t n;
} RunningStat;

static void stat_add(RunningStat *s, double v) {
    s->sum += v;
    s->sumsq += v * v;
    s->n++;
}
static double stat_mean(const RunningStat *s) { return s->n ? s->sum / (double)s->n : NAN; }
// Unbiased standard deviation (torch.std default), 0 for a single value.
static double stat_std(const RunningStat *s) {
    if (s->n < 2) return 0.0;
    double m = stat_mean(s);
    double var = (s->sumsq - (double)s->n * m * m) / (double)(s->n - 1);
    return var > 0 ? sqrt(var) : 0.0;
}

static void save(const TrainTask *task, const TrainConfig *cfg, const Optim *opt, const char *path,
                 int64_t step, int64_t samples, double best_valid, float *h_params, float *h_m, float *h_v) {
    size_t n = task->table->total;
    nn_to_host(h_params, task->params, n);
    optim_moments_to_host(opt, h_m, h_v);
    int slots = optim_moment_slots(opt);
    CheckpointExtra extra;
    optim_extra_state(opt, &extra);
    if (dist_rank() == 0) {
        CheckpointMeta meta;
        memset(&meta, 0, sizeof meta);
        snprintf(meta.kind, sizeof meta.kind, "%s", task->kind);
        meta.step = step;
        meta.samples = samples;
        meta.epoch = samples / cfg->epoch_size;
        meta.best_valid = best_valid;
        meta.seed = cfg->seed;
        meta.optim_t = opt->t;
        snprintf(meta.optimizer, sizeof meta.optimizer, "%s", optim_kind_name(opt->cfg.kind));
        checkpoint_save_ex(path, &meta, task->table, h_params, (slots & 1) ? h_m : NULL, (slots & 2) ? h_v : NULL, &extra,
                           cfg->config_yaml);
    }
    dist_barrier();
}

int train_run(TrainTask *task, const TrainConfig *cfg, TrainResult *result) {
    const int R = dist_size(), rank = dist_rank();
    const size_t n = task->table->total;
    if (cfg->batch_size <= 0 || cfg->accumulation <= 0 || cfg->batch_size % (cfg->accumulation * R) != 0)
        lola_die_hint("choose train.batch_size divisible by train.accumulation x number of ranks",
                      "%s: batch_size %d cannot be split into %d micro-batches over %d ranks",
                      task->kind, cfg->batch_size, cfg->accumulation, R);
    if (cfg->epoch_size < cfg->batch_size)
        lola_die("%s: epoch_size %lld is smaller than batch_size %d", task->kind, (long long)cfg->epoch_size, cfg->batch_size);
    if (cfg->valid_size > 0 && (cfg->valid_batch <= 0 || cfg->valid_batch % R != 0))
        lola_die_hint("choose valid.batch_size divisible by the number of ranks",
                      "%s: validation batch %d cannot be split over %d ranks", task->kind, cfg->valid_batch, R);
    const int local_micro = cfg->batch_size / cfg->accumulation / R;
    const int64_t steps_per_epoch = cfg->epoch_size / cfg->batch_size;
    const int64_t total_steps = steps_per_epoch * cfg->epochs;

    if (rank == 0) lola_mkdirs(cfg->dir);
    dist_barrier();
    char state_path[4096], best_path[4096];
    snprintf(state_path, sizeof state_path, "%s/state.h5", cfg->dir);
    snprintf(best_path, sizeof best_path, "%s/best.h5", cfg->dir);

    Optim opt;
    optim_init_table(&opt, &cfg->optim, task->table);
    float *h_params = LOLA_NEW(float, n), *h_m = LOLA_NEW(float, n), *h_v = LOLA_NEW(float, n);
    // Gradient mean over ranks, bucketed and overlapped with the last micro-batch's backward.
    GradSync *gsync = gradsync_create(task->grads, n, cfg->grad_bucket, cfg->grad_timeout);

    // Resume.
    int64_t step = 0, samples = 0;
    double best_valid = INFINITY;
    if (lola_exists(state_path)) {
        CheckpointMeta meta;
        char err[1024];
        int has_optim = 0;
        const char *oname = optim_kind_name(opt.cfg.kind);
        if (checkpoint_read_meta(state_path, &meta) == 0 && meta.optimizer[0] && strcmp(meta.optimizer, oname) != 0)
            lola_die_hint("resume with the checkpoint's optimizer, or move the file away to start from scratch",
                          "%s was written by optimizer '%s', the config asks for '%s'", state_path, meta.optimizer, oname);
        int slots = optim_moment_slots(&opt);
        if (checkpoint_load(state_path, task->kind, task->table, h_params, (slots & 1) ? h_m : NULL, (slots & 2) ? h_v : NULL,
                            &meta, &has_optim, err, sizeof err) != 0)
            lola_die_hint("move the file away to start from scratch, or point the run directory elsewhere", "%s", err);
        CheckpointExtra extra;
        optim_extra_state(&opt, &extra);
        if (has_optim && checkpoint_load_extra(state_path, &extra, err, sizeof err) != 0)
            lola_die_hint("move the file away to start from scratch, or point the run directory elsewhere", "%s", err);
        if (meta.seed != cfg->seed)
            log_warn("%s: resuming with seed %llu from a checkpoint made with seed %llu", state_path,
                     (unsigned long long)cfg->seed, (unsigned long long)meta.seed);
        nn_to_backend(task->params, h_params, n);
        if (has_optim) optim_moments_from_host(&opt, h_m, h_v);
        opt.t = meta.optim_t;
        step = meta.step;
        samples = meta.samples;
        best_valid = meta.best_valid;
        log_info("%s: resumed from %s at step %lld (epoch %lld, %lld samples)", task->kind, state_path,
                 (long long)step, (long long)(samples / cfg->epoch_size), (long long)samples);
    }

    MetricsLog mlog;
    metrics_log_open(&mlog, cfg->dir);
    // Which backend (device, precision) and how many ranks, at the start of every run (log and metrics).
    log_info("%s: backend %s, %d rank%s", task->kind, nn_backend_name(), R, R == 1 ? "" : "s");
    metrics_log(&mlog, M_STR("event", "start"), M_STR("stage", task->kind), M_STR("backend", nn_backend_name()),
                M_INT("ranks", R), M_INT("step", step));
    TrainResult res;
    memset(&res, 0, sizeof res);
    res.best_valid = best_valid;
    int64_t steps_this_run = 0;
    int stopped = 0;
    double t_run = lola_time();

    for (int64_t epoch = samples / cfg->epoch_size; epoch < cfg->epochs && !stopped; epoch++) {
        const float lr = (float)(cfg->optim.lr * lr_factor(cfg->optim.sched, (int)epoch, cfg->optim.epochs, cfg->optim.warmup));
        RunningStat sl = {0}, sg = {0};
        int skipped = 0;
        double t_epoch = lola_time();
        int64_t samples_at_start = samples;
        for (int64_t k = (samples - epoch * cfg->epoch_size) / cfg->batch_size; k < steps_per_epoch; k++) {
            if (dist_any(train_stop_requested() ||
                         (cfg->stop_after_steps > 0 && steps_this_run >= cfg->stop_after_steps))) {
                stopped = 1;
                break;
            }
            nn_zero(task->grads, n);
            double loss = 0.0;
            for (int a = 0; a < cfg->accumulation; a++) {
                int64_t start = samples + (int64_t)a * local_micro * R + (int64_t)rank * local_micro;
                if (task->prefetch) {
                    int64_t next = start + (int64_t)local_micro * R;
                    task->prefetch(task->ctx, next, local_micro, 0);
                }
                if (a == cfg->accumulation - 1) gradsync_arm(gsync); // only the last backward's grads are final
                loss += task->train_batch(task->ctx, start, local_micro, step, 1.0f / (float)cfg->accumulation);
            }
            gradsync_finish(gsync);
            loss = mean_over_ranks(loss / cfg->accumulation);
            double norm = 0.0;
            int took = optim_step(&opt, task->params, task->grads, lr, &norm);
            if (!took) {
                skipped++;
                res.skipped_steps++;
                log_info("%s: step %lld skipped: gradient norm is %g (non-finite)", task->kind, (long long)step, norm);
            }
            stat_add(&sl, loss);
            if (isfinite(norm)) stat_add(&sg, norm);
            step++;
            steps_this_run++;
            samples += cfg->batch_size;
            res.last_train_loss = loss;
            // One short record per optimizer step (the per-step loss curve; also what the resume
            // and rank-count tests compare). loss is the mean over ranks, norm before clipping.
            metrics_log(&mlog, M_STR("event", "step"), M_STR("stage", task->kind), M_INT("step", step),
                        M_NUM("loss", loss), M_NUM("grad_norm", norm), M_NUM("lr", lr));
            if (cfg->log_every > 0 && (step % cfg->log_every == 0)) {
                double el = lola_time() - t_epoch;
                Progress pr = {task->kind, step, total_steps, epoch + 1, cfg->epochs, loss, NAN, norm, lr,
                               (double)(samples - samples_at_start) / (el > 0 ? el : 1e-9), NAN};
                pr.eta_s = (double)(total_steps - step) * cfg->batch_size / pr.samples_per_s;
                char line[512];
                log_info("%s", progress_format(line, sizeof line, &pr));
            }
        }
        double train_time = lola_time() - t_epoch;
        if (stopped) break;

        // Validation.
        RunningStat sv = {0};
        if (cfg->valid_size > 0 && task->valid_batch) {
            int64_t vsteps = cfg->valid_size / cfg->valid_batch;
            int vlocal = cfg->valid_batch / R;
            for (int64_t k = 0; k < vsteps; k++) {
                int64_t start = epoch * vsteps * cfg->valid_batch + k * cfg->valid_batch + (int64_t)rank * vlocal;
                double v = mean_over_ranks(task->valid_batch(task->ctx, start, vlocal));
                stat_add(&sv, v);
            }
        }
        double vmean = stat_mean(&sv);
        res.last_valid_loss = vmean;
        int improved = sv.n > 0 && vmean < best_valid;
        if (improved) best_valid = vmean;
        res.best_valid = best_valid;

        double sps = (double)(samples - samples_at_start) / (train_time > 0 ? train_time : 1e-9);
        char eta[32];
        format_duration(eta, sizeof eta, (double)(total_steps - step) * cfg->batch_size / sps);
        char vtext[64] = "valid -"; // no validation this epoch (valid.epoch_size 0)
        if (sv.n > 0) snprintf(vtext, sizeof vtext, "valid %.6f ± %.6f%s", vmean, stat_std(&sv), improved ? " *" : "");
        log_info("%s epoch %lld/%d | train loss %.6f ± %.6f | %s | grad norm %.4f ± %.4f | lr %.3g | %.1f samples/s | ETA %s",
                 task->kind, (long long)epoch + 1, cfg->epochs, stat_mean(&sl), stat_std(&sl), vtext, stat_mean(&sg),
                 stat_std(&sg), lr, sps, eta);
        metrics_log(&mlog, M_STR("event", "epoch"), M_STR("stage", task->kind), M_INT("epoch", epoch + 1), M_INT("step", step),
                    M_INT("samples", samples), M_NUM("train_loss_mean", stat_mean(&sl)), M_NUM("train_loss_std", stat_std(&sl)),
                    M_NUM("valid_loss_mean", vmean), M_NUM("valid_loss_std", stat_std(&sv)),
                    M_NUM("grad_norm_mean", stat_mean(&sg)), M_NUM("grad_norm_std", stat_std(&sg)), M_NUM("learning_rate", lr),
                    M_NUM("samples_per_s", sps), M_INT("skipped_steps", skipped), M_INT("ranks", R));
        int every = cfg->checkpoint_every > 0 ? cfg->checkpoint_every : 1;
        if ((epoch + 1) % every == 0 || epoch + 1 == cfg->epochs)
            save(task, cfg, &opt, state_path, step, samples, best_valid, h_params, h_m, h_v);
        if (improved) save(task, cfg, &opt, best_path, step, samples, best_valid, h_params, h_m, h_v);
    }
    if (stopped) {
        save(task, cfg, &opt, state_path, step, samples, best_valid, h_params, h_m, h_v);
        log_info("%s: stop requested: checkpoint written at step %lld (%s); exiting with code %d to ask for a requeue",
                 task->kind, (long long)step, state_path, LOLA_EXIT_REQUEUE);
    } else {
        log_info("%s: training complete: %lld steps in %.1f s this run", task->kind, (long long)step, lola_time() - t_run);
    }
    res.step = step;
    res.samples = samples;
    res.epoch = samples / cfg->epoch_size;
    res.stopped_by_signal = stopped;
    if (result) *result = res;
    metrics_log_close(&mlog);
    gradsync_destroy(gsync);
    free(h_params);
    free(h_m);
    free(h_v);
    optim_free(&opt);
    return stopped ? LOLA_EXIT_REQUEUE : 0;
}
