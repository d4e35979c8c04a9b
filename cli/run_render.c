#include "run_render.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "devices.h"

static volatile sig_atomic_t stop_requested;
static struct sigaction old_actions[3];
static int catching; /* how deep sdm_run_catch_signals calls nest */
static const int signals[] = { SIGINT, SIGTERM, SIGHUP };

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int sdm_run_device(const char *cmd, const char *device, sdm_device *out)
{
    if (!device) {
        out->type = sdm_cuda_device_count() > 0 ? SDM_DEVICE_CUDA : SDM_DEVICE_CPU;
        out->index = 0;
        return SDM_EXIT_OK;
    }
    if (sdm_device_from_str(device, out)) {
        fprintf(stderr, "sdmorph %s: --device must be cpu, cuda or cuda:N, not '%s'\n", cmd, device);
        return SDM_EXIT_USAGE;
    }
    if (out->type == SDM_DEVICE_CUDA && out->index >= sdm_cuda_device_count()) {
        fprintf(stderr, "sdmorph %s: %s is not available (%d CUDA devices%s)\n", cmd, device, sdm_cuda_device_count(),
                sdm_cuda_device_count() ? "" : "; this libtorch has no CUDA or no GPU is visible");
        return SDM_EXIT_RUNTIME;
    }
    return SDM_EXIT_OK;
}

/* a closed terminal (SIGHUP) ends a render as Ctrl-C does: the frames done
 * are kept in a .partial file, the temporary files removed */
void sdm_run_catch_signals(void)
{
    struct sigaction sa;

    if (catching++)
        return;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(signals[i], &sa, &old_actions[i]);
}

void sdm_run_release_signals(void)
{
    if (catching <= 0 || --catching)
        return;
    for (int i = 0; i < 3; i++)
        sigaction(signals[i], &old_actions[i], NULL);
}

volatile sig_atomic_t *sdm_run_stop_flag(void)
{
    return &stop_requested;
}

void sdm_run_print_report(const sdm_render_stats *stats, int quiet)
{
    fprintf(stderr,
            "sdmorph: %d frames (%d rendered) at %dx%d in %.1f s (+%.1f s loading, of it %.1f s warm-up), "
            "%.4f s per rendered frame, batch %d\n",
            stats->frames_shown, stats->frames_rendered, stats->width, stats->height, stats->seconds,
            stats->load_seconds, stats->warmup_seconds, stats->seconds_per_render, stats->batch);
    fprintf(stderr,
            "sdmorph: loop %.2f s: launching %.2f, waiting for the device %.2f, frames out %.2f (outputs' queue "
            "full %.2f, pace %.2f); outputs finished %.2f s after it\n",
            stats->seconds, stats->launch_seconds, stats->device_wait_seconds, stats->frames_out_seconds,
            stats->outputs_blocked_seconds, stats->pace_seconds, stats->finish_seconds);
    if (stats->sample_batches)
        fprintf(stderr,
                "sdmorph: device time (--timings): sampling %.2f s (%d batch%s, %d steps: %.1f ms a step), "
                "decoding %.2f s (%d frames: %.1f ms a frame)\n",
                stats->sample_seconds, stats->sample_batches, stats->sample_batches == 1 ? "" : "es",
                stats->sample_steps, stats->sample_steps ? 1e3 * stats->sample_seconds / stats->sample_steps : 0.0,
                stats->decode_seconds, stats->decoded_frames,
                stats->decoded_frames ? 1e3 * stats->decode_seconds / stats->decoded_frames : 0.0);
    if (stats->loading.unet > 0) {
        const sdm_engine_loading *l = &stats->loading;
        double parts =
            l->runtime + l->text + l->unet + l->vae + l->check + l->aoti_unet + l->aoti_vae + stats->warmup_seconds;
        fprintf(stderr,
                "sdmorph: loading (--timings): libtorch %.2f s, text encoders %.2f s, UNet %.2f s, VAE decoder "
                "%.2f s, first calls %.2f s, AOTInductor UNet %.2f s and VAE decoder %.2f s (each loaded and "
                "checked), warm-up %.2f s, the rest (the recipe's checks, outputs, conditioning) %.2f s\n",
                l->runtime, l->text, l->unet, l->vae, l->check, l->aoti_unet, l->aoti_vae, stats->warmup_seconds,
                stats->load_seconds > parts ? stats->load_seconds - parts : 0.0);
    }
    if (stats->device_used_bytes)
        fprintf(stderr, "sdmorph: device memory (--timings): %.2f GiB in use at most, of %.2f GiB\n",
                stats->device_used_bytes / 1073741824.0, stats->device_total_bytes / 1073741824.0);
    if (stats->probe_renders)
        fprintf(stderr, "sdmorph: retime probe: %d frames at %d steps in %.2f s, %.0f%% of the render's %.2f s\n",
                stats->probe_renders, stats->probe_steps, stats->probe_seconds,
                stats->seconds > 0 ? 100 * stats->probe_seconds / stats->seconds : 0.0, stats->seconds);
    if (stats->pace.frames && !quiet)
        sdm_pace_print(&stats->pace, stderr);
}

int sdm_run_render_stats(const sdm_recipe *r, sdm_render_params *p, const sdm_device *devs, int n_devs,
                         sdm_render_stats *stats, sdm_error *err)
{
    int d;

    memset(stats, 0, sizeof *stats);
    p->stop = &stop_requested;
    sdm_run_catch_signals();
    d = n_devs > 1 ? sdm_render_devices(r, p, devs, n_devs, stats, err) : sdm_render(r, p, stats, err);
    sdm_run_release_signals();
    return d;
}

int sdm_run_render(const sdm_recipe *r, sdm_render_params *p, const sdm_device *devs, int n_devs, int quiet)
{
    sdm_render_stats stats;
    sdm_error err = { 0 };
    int d, rc = SDM_EXIT_OK;

    p->progress = quiet ? SDM_PROGRESS_NONE : isatty(STDERR_FILENO) ? SDM_PROGRESS_TERMINAL : SDM_PROGRESS_LOG;
    d = sdm_run_render_stats(r, p, devs, n_devs, &stats, &err);
    if (d < 0) {
        fprintf(stderr, "sdmorph: %s\n", err.msg);
        rc = err.code ? err.code : SDM_EXIT_RUNTIME;
    } else if (d == 1) {
        if (stats.frames_shown)
            fprintf(stderr, "sdmorph: interrupted: kept the %d frames done in a .partial file beside each output\n",
                    stats.frames_shown);
        else
            fprintf(stderr, "sdmorph: interrupted before the first frame: nothing written\n");
        rc = 130;
    } else {
        sdm_run_print_report(&stats, quiet);
    }
    return rc;
}
