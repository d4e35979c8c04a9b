/* GIF output: frames go through libavfilter graphs (palettegen +
 * paletteuse) to PAL8, then the gif encoder and the gif muxer with the
 * NETSCAPE loop extension set to "forever". Shaped after FFmpeg's
 * doc/examples/decode_filter_video.c (graph) and mux.c (muxing).
 *
 * The palettes and the dithering are most of the cost (tens of ms per
 * 512x512 frame), so they run on a pool of workers (workpool.h), each with
 * a filter graph of its own, several frames in flight; the PAL8 frames come
 * back in order and go to the encoder on the GIF's own thread. Every graph
 * maps a frame from that frame (and the stream's palette) alone, so the
 * bytes do not depend on how many workers there are. At most two frames
 * per worker are in flight: then gif_write waits for the oldest, the sink's
 * queue fills, and the render waits (memory stays bounded).
 *
 * A GIF holds at most 256 colours per frame. Two ways to choose them:
 *
 * - palette per stream (default): palettegen=stats_mode=full must see every
 *   frame before it emits the palette, and paletteuse needs the frames
 *   again after it; holding them in memory would grow with the frame count.
 *   So the frames are fed to palettegen as they come (it counts them at
 *   once and keeps only a colour histogram: bounded by the number of
 *   distinct colours, a few MB for typical renders) and spooled raw to a file beside the output
 *   (".NAME.tmp-PID.spool", width*height*3 bytes per frame: 768 KiB per
 *   512x512 frame, removed at the end); finish() then reads them back
 *   through the workers' paletteuse. With one palette the encoder writes
 *   only the changed rectangle and makes unchanged pixels transparent. With
 *   ordered dither (or none) a pixel's index depends on its colour and
 *   position alone, so each worker maps whole frames; error diffusion runs
 *   on one worker with diff_mode=rectangle (only what changed is mapped
 *   again, so the rest keeps its indices and stays transparent).
 *
 * - palette per frame: split[a][b]; [a]palettegen=stats_mode=single[p];
 *   [b][p]paletteuse=new=1. One pass, frames mapped as they come. Each frame
 *   gets the 256 colours that suit it best; cost: 768 bytes of local palette
 *   per frame, and no inter-frame transparency (indices differ between
 *   frames).
 *
 * Measured on a 120-frame 512x512 pingpong morph through three textured
 * scenes, every pixel changing (bench_encoders; size, mean PSNR): stream +
 * bayer 9.7 MB, 32.8 dB; frame + bayer 21.3 MB, 34.8 dB; frame + sierra2_4a
 * 18.3 MB, 41.1 dB; stream + sierra2_4a 13.1 MB, 32.4 dB. Default dither:
 * bayer (ordered). Error diffusion scores higher per frame, but its noise
 * pattern changes every frame, so flat areas crawl when the GIF plays, and
 * with one palette it defeats the transparent unchanged pixels. "none"
 * scores well on PSNR but bands visibly on gradients. */
#include "format.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/avstring.h>
#include <libavutil/opt.h>

#include "ffutil.h"
#include "workpool.h"

/* paletteuse's options for each sdm_gif_dither. */
static const char *const dither_opts[SDM_GIF_DITHER_COUNT] = { "bayer:bayer_scale=2", "sierra2_4a", "floyd_steinberg",
                                                               "none" };

/* One filter graph: [in] (RGB24 frames), optionally [pal] (a palette), [out]. */
typedef struct {
    AVFilterGraph *graph;
    AVFilterContext *src, *pal_src, *sink;
} gif_graph;

/* One frame in flight: its RGB24 copy in, its PAL8 picture out. */
typedef struct {
    int64_t index;
    AVFrame *rgb, *pal8;
    sdm_error err;
} gif_job;

typedef struct {
    char *target;
    int width, height;
    sdm_gif_palette palette;
    sdm_gif_dither dither;
    AVRational rate; /* of the GIF's frames: the render's fps times repeat */
    int repeat; /* GIF frames per frame: a frame longer than a GIF delay holds is
                                   written as several of equal delay, so the GIF lasts as the MP4 */

    /* Each worker quantizes whole frames in a graph of its own; jobs come
     * back in order and are encoded on the GIF's own thread. */
    sdm_workpool *pool;
    gif_graph *graphs; /* one per worker */
    int n_graphs;
    gif_job *jobs; /* the pool's depth; job k%n_jobs is frame k's */
    int n_jobs;
    int64_t submitted;

    gif_graph stats; /* palette per stream: palettegen=stats_mode=full */
    AVFrame *stats_in;
    char *spool_path; /* palette per stream: the frames, raw RGB24 */
    FILE *spool;
    int64_t spooled;

    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *st;
    AVPacket *pkt;
    int64_t encoded; /* frames given to the encoder */
} gif_ctx;

static void free_graph(gif_graph *q)
{
    avfilter_graph_free(&q->graph);
    q->src = q->pal_src = q->sink = NULL;
}

static void gif_free(void **pctx)
{
    gif_ctx *g = pctx ? *pctx : NULL;

    if (!g)
        return;
    sdm_workpool_free(&g->pool); /* first: its workers use the graphs and jobs */
    for (int i = 0; g->graphs && i < g->n_graphs; i++)
        free_graph(&g->graphs[i]);
    for (int i = 0; g->jobs && i < g->n_jobs; i++) {
        av_frame_free(&g->jobs[i].rgb);
        av_frame_free(&g->jobs[i].pal8);
    }
    av_free(g->graphs);
    av_free(g->jobs);
    free_graph(&g->stats);
    av_frame_free(&g->stats_in);
    if (g->spool)
        fclose(g->spool);
    if (g->spool_path)
        unlink(g->spool_path);
    if (g->oc && g->oc->pb)
        avio_closep(&g->oc->pb);
    avformat_free_context(g->oc);
    avcodec_free_context(&g->enc);
    av_packet_free(&g->pkt);
    av_free(g->spool_path);
    av_free(g->target);
    av_freep(pctx);
}

static int make_source(const gif_ctx *g, gif_graph *q, AVFilterContext **src, const char *name, int w, int h,
                       int pix_fmt, sdm_error *err)
{
    char args[256];
    int ret;

    snprintf(args, sizeof args, "video_size=%dx%d:pix_fmt=%d:time_base=%d/%d:pixel_aspect=1/1", w, h, pix_fmt,
             g->rate.den, g->rate.num);
    ret = avfilter_graph_create_filter(src, avfilter_get_by_name("buffer"), name, args, NULL, q->graph);
    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: cannot create the filter graph's source", g->target);
    return 0;
}

/* Builds q from desc, whose inputs are labelled [in] (the frames) and, when
 * palette is not NULL, [pal] (a palette frame, given to it and ended here),
 * and whose output is [out]. pal8 != 0 makes the output PAL8. */
static int build_graph(const gif_ctx *g, gif_graph *q, const char *desc, const AVFrame *palette, int pal8,
                       sdm_error *err)
{
    static const enum AVPixelFormat pal8_only[] = { AV_PIX_FMT_PAL8, AV_PIX_FMT_NONE };
    AVFilterInOut *outputs = NULL, *inputs = NULL, *pal_out = NULL;
    int ret = -1, averr;

    free_graph(q);
    q->graph = avfilter_graph_alloc();
    outputs = avfilter_inout_alloc();
    inputs = avfilter_inout_alloc();
    if (palette)
        pal_out = avfilter_inout_alloc();
    if (!q->graph || !outputs || !inputs || (palette && !pal_out)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    /* palettegen and paletteuse are single-threaded; the workers are the parallelism. */
    q->graph->nb_threads = 1;
    if (make_source(g, q, &q->src, "in", g->width, g->height, AV_PIX_FMT_RGB24, err) < 0)
        goto end;
    if (palette && make_source(g, q, &q->pal_src, "pal", palette->width, palette->height, palette->format, err) < 0)
        goto end;
    averr = avfilter_graph_create_filter(&q->sink, avfilter_get_by_name("buffersink"), "out", NULL, NULL, q->graph);
    if (averr >= 0 && pal8)
        averr = av_opt_set_int_list(q->sink, "pix_fmts", pal8_only, AV_PIX_FMT_NONE, AV_OPT_SEARCH_CHILDREN);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: cannot create the filter graph's sink", g->target);
        goto end;
    }

    outputs->name = av_strdup("in");
    outputs->filter_ctx = q->src;
    outputs->pad_idx = 0;
    outputs->next = pal_out;
    if (pal_out) {
        pal_out->name = av_strdup("pal");
        pal_out->filter_ctx = q->pal_src;
        pal_out->pad_idx = 0;
        pal_out->next = NULL;
    }
    pal_out = NULL; /* owned by outputs now */
    inputs->name = av_strdup("out");
    inputs->filter_ctx = q->sink;
    inputs->pad_idx = 0;
    inputs->next = NULL;

    averr = avfilter_graph_parse_ptr(q->graph, desc, &inputs, &outputs, NULL);
    if (averr >= 0)
        averr = avfilter_graph_config(q->graph, NULL);
    if (averr >= 0 && palette) {
        /* the palette is the graph's for good: every frame after is mapped with it */
        averr = av_buffersrc_add_frame_flags(q->pal_src, (AVFrame *)palette, AV_BUFFERSRC_FLAG_KEEP_REF);
        if (averr >= 0)
            averr = av_buffersrc_add_frame_flags(q->pal_src, NULL, 0);
    }
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: cannot set up the GIF filter graph '%s'", g->target, desc);
        goto end;
    }
    ret = 0;
end:
    avfilter_inout_free(&inputs);
    avfilter_inout_free(&outputs);
    avfilter_inout_free(&pal_out);
    return ret;
}

static int open_muxer(gif_ctx *g, const char *tmp_path, sdm_error *err)
{
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_GIF);
    AVDictionary *opts = NULL;
    int ret = -1, averr;

    if (!codec) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: this FFmpeg was built without the gif encoder", g->target);
        goto end;
    }
    averr = avformat_alloc_output_context2(&g->oc, NULL, "gif", tmp_path);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: no gif muxer", g->target);
        goto end;
    }
    g->st = avformat_new_stream(g->oc, NULL);
    g->enc = avcodec_alloc_context3(codec);
    if (!g->st || !g->enc) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    g->enc->width = g->width;
    g->enc->height = g->height;
    g->enc->pix_fmt = AV_PIX_FMT_PAL8;
    g->enc->time_base = av_inv_q(g->rate);
    g->enc->framerate = g->rate;
    g->enc->sample_aspect_ratio = (AVRational){ 1, 1 };
    averr = avcodec_open2(g->enc, codec, NULL);
    if (averr >= 0)
        averr = avcodec_parameters_from_context(g->st->codecpar, g->enc);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: cannot open the GIF encoder", g->target);
        goto end;
    }
    g->st->time_base = g->enc->time_base;
    averr = avio_open(&g->oc->pb, tmp_path, AVIO_FLAG_WRITE);
    if (averr < 0) {
        sdm_ff_error(err, averr, "cannot create %s (temporary file %s)", g->target, tmp_path);
        goto end;
    }
    av_dict_set(&opts, "loop", "0", 0); /* NETSCAPE2.0 loop count 0: forever */
    averr = avformat_write_header(g->oc, &opts);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: cannot write the header", g->target);
        goto end;
    }
    ret = 0;
end:
    av_dict_free(&opts);
    return ret;
}

/* palettegen's input: an area-averaged copy of about 128x128 pixels or
 * more. Median cut sorts the distinct colours for every one of its 255
 * splits, so at full size it dominated the cost: at 512x512 a frame took
 * 192 ms of CPU, with a copy 4x smaller each way 67 ms, and the GIF's
 * PSNR was the same (32.9 / 33.0 dB): 16K samples are plenty for 256
 * colours. Fewer distinct colours also keep the histogram small. */
static void stats_scale(const gif_ctx *g, char *buf, size_t size)
{
    int f = (int)sqrt((double)g->width * g->height / (128 * 128));

    if (f > 8)
        f = 8;
    if (f < 2) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf, size, "scale=%d:%d:flags=area,", g->width / f > 0 ? g->width / f : 1,
             g->height / f > 0 ? g->height / f : 1);
}

/* A GIF frame's delay is 1..65535 hundredths of a second, and browsers play
 * delays under 2/100 s as 1/10 s (faster GIFs crawl): at most 50 fps. A
 * frame longer than 655.35 s is written as several (gif_open). */
static int gif_check(const char *target, const sdm_sink_params *p, sdm_error *err)
{
    if (p->fps > 50)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%s: GIF frame delays are in 1/100 s and browsers slow down "
                             "anything faster than 50 fps; got %g fps",
                             target, p->fps);
    if (!avcodec_find_encoder(AV_CODEC_ID_GIF))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: this FFmpeg was built without the gif encoder", target);
    return 0;
}

/* A worker's job: one RGB24 frame through the worker's graph to PAL8. Each
 * graph gives a frame's picture as soon as it has the frame (palettegen's
 * single mode and paletteuse keep nothing of earlier frames that changes a
 * later one: the same bytes whichever worker, or how many, ran it). */
static int quantize(void *ctx, int worker, void *job)
{
    gif_ctx *g = ctx;
    gif_graph *q = &g->graphs[worker];
    gif_job *j = job;
    int ret;

    j->rgb->pts = j->index;
    ret = av_buffersrc_add_frame_flags(q->src, j->rgb, AV_BUFFERSRC_FLAG_KEEP_REF);
    if (ret >= 0)
        ret = av_buffersink_get_frame(q->sink, j->pal8);
    if (ret == AVERROR(EAGAIN))
        return sdm_error_set(&j->err, SDM_EXIT_RUNTIME, "%s: the GIF filter graph held frame %lld back", g->target,
                             (long long)j->index);
    if (ret < 0)
        return sdm_ff_error(&j->err, ret, "%s: GIF filter graph failed", g->target);
    return 0;
}

static int alloc_rgb(AVFrame **f, int w, int h)
{
    *f = av_frame_alloc();
    if (!*f)
        return -1;
    (*f)->format = AV_PIX_FMT_RGB24;
    (*f)->width = w;
    (*f)->height = h;
    return av_frame_get_buffer(*f, 0) < 0 ? -1 : 0;
}

/* The workers, their graphs (the per-frame palette's, else built for the
 * second pass) and their jobs. Error diffusion with one palette for the
 * stream maps only what changed since the previous frame (diff_mode), so
 * each frame depends on the one before: one worker then. */
static int open_workers(gif_ctx *g, const sdm_sink_params *p, const char *per_frame_desc, sdm_error *err)
{
    int serial =
        g->palette == SDM_GIF_PALETTE_STREAM && g->dither != SDM_GIF_DITHER_BAYER && g->dither != SDM_GIF_DITHER_NONE;

    g->n_graphs = serial ? 1 : sdm_workpool_threads(p->threads);
    g->n_jobs = 2 * g->n_graphs;
    g->graphs = av_calloc((size_t)g->n_graphs, sizeof *g->graphs);
    g->jobs = av_calloc((size_t)g->n_jobs, sizeof *g->jobs);
    if (!g->graphs || !g->jobs)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int i = 0; i < g->n_jobs; i++)
        if (alloc_rgb(&g->jobs[i].rgb, g->width, g->height) < 0 || !(g->jobs[i].pal8 = av_frame_alloc()))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int i = 0; per_frame_desc && i < g->n_graphs; i++)
        if (build_graph(g, &g->graphs[i], per_frame_desc, NULL, 1, err) < 0)
            return -1;
    return sdm_workpool_open(g->n_graphs, g->n_jobs, quantize, g, &g->pool, err);
}

static int open_spool(gif_ctx *g, const char *tmp_path, sdm_error *err)
{
    g->spool_path = av_asprintf("%s.spool", tmp_path);
    if (!g->spool_path)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    g->spool = fopen(g->spool_path, "w+b");
    if (!g->spool)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot create %s (frame spool %s): %s", g->target, g->spool_path,
                             strerror(errno));
    return 0;
}

/* Called after gif_check() passed. */
static int gif_open(void **out, const char *tmp_path, const char *target, const sdm_sink_params *p, sdm_error *err)
{
    gif_ctx *g = NULL;
    char desc[256], shrink[64];
    int ret = -1;

    g = av_mallocz(sizeof *g);
    if (!g || !(g->target = av_strdup(target)) || !(g->pkt = av_packet_alloc())) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    g->width = p->width;
    g->height = p->height;
    g->palette = p->gif_palette;
    g->dither = p->gif_dither;
    g->repeat = (int)ceil(100.0 / p->fps / 65535);
    g->repeat = g->repeat < 1 ? 1 : g->repeat;
    g->rate = av_d2q(p->fps * g->repeat, 1001000);

    stats_scale(g, shrink, sizeof shrink);
    if (g->palette == SDM_GIF_PALETTE_FRAME) {
        snprintf(desc, sizeof desc,
                 "[in]split[a][b];[a]%spalettegen=stats_mode=single:reserve_transparent=0[p];"
                 "[b][p]paletteuse=new=1:dither=%s[out]",
                 shrink, dither_opts[g->dither]);
        if (open_workers(g, p, desc, err) < 0)
            goto end;
    } else {
        snprintf(desc, sizeof desc, "[in]%spalettegen=stats_mode=full[out]", shrink);
        if (alloc_rgb(&g->stats_in, g->width, g->height) < 0) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
            goto end;
        }
        if (build_graph(g, &g->stats, desc, NULL, 0, err) < 0 || open_workers(g, p, NULL, err) < 0 ||
            open_spool(g, tmp_path, err) < 0)
            goto end;
    }
    if (open_muxer(g, tmp_path, err) < 0)
        goto end;
    *out = g;
    g = NULL;
    ret = 0;
end:
    gif_free((void **)&g);
    return ret;
}

/* Sends one PAL8 frame (NULL: flush) to the encoder and writes its packets. */
static int encode(gif_ctx *g, const AVFrame *frame, sdm_error *err)
{
    int ret = avcodec_send_frame(g->enc, frame);

    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: GIF encoding failed", g->target);
    for (;;) {
        ret = avcodec_receive_packet(g->enc, g->pkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret < 0)
            return sdm_ff_error(err, ret, "%s: GIF encoding failed", g->target);
        if (g->pkt->duration <= 0)
            g->pkt->duration = 1;
        av_packet_rescale_ts(g->pkt, g->enc->time_base, g->st->time_base);
        g->pkt->stream_index = g->st->index;
        ret = av_interleaved_write_frame(g->oc, g->pkt);
        if (ret < 0)
            return sdm_ff_error(err, ret, "%s: write failed", g->target);
    }
}

/* A finished job (rc: its result) to the encoder. */
static int encode_job(gif_ctx *g, gif_job *j, int rc, sdm_error *err)
{
    int ret;

    if (rc < 0) {
        ret = sdm_error_set(err, j->err.code, "%s", j->err.msg);
    } else {
        j->pal8->pict_type = AV_PICTURE_TYPE_NONE;
        ret = 0;
        for (int r = 0; r < g->repeat && ret >= 0; r++) {
            j->pal8->pts = g->encoded++;
            ret = encode(g, j->pal8, err);
        }
    }
    av_frame_unref(j->pal8);
    return ret;
}

/* Encodes the jobs that have finished, oldest first; with `all`, waits for
 * every job in flight, else stops at the first one still running. */
static int collect(gif_ctx *g, int all, sdm_error *err)
{
    gif_job *j;
    int rc;

    while ((j = all ? sdm_workpool_take(g->pool, &rc) : sdm_workpool_poll(g->pool, &rc)))
        if (encode_job(g, j, rc, err) < 0)
            return -1;
    return 0;
}

/* The job for the next frame, once the pool has room for it: while every
 * job is in flight, waits for the oldest and encodes it (the back-pressure
 * that keeps memory bounded). */
static gif_job *next_job(gif_ctx *g, sdm_error *err)
{
    gif_job *j = &g->jobs[g->submitted % g->n_jobs], *old;
    int rc, ret;

    if (sdm_workpool_in_flight(g->pool) == g->n_jobs) {
        old = sdm_workpool_take(g->pool, &rc);
        if (encode_job(g, old, rc, err) < 0)
            return NULL;
    }
    /* A graph may still hold this job's last frame: get a buffer of our own. */
    ret = av_frame_make_writable(j->rgb);
    if (ret < 0) {
        sdm_ff_error(err, ret, "%s: frame buffer", g->target);
        return NULL;
    }
    j->index = g->submitted;
    return j;
}

static int submit(gif_ctx *g, gif_job *j, sdm_error *err)
{
    if (sdm_workpool_submit(g->pool, j) < 0)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: the GIF worker pool is full", g->target);
    g->submitted++;
    return collect(g, 0, err);
}

/* Palette per stream, first pass: the frame to palettegen (which only
 * counts colours until the end) and to the spool. */
static int gather(gif_ctx *g, const uint8_t *rgb, sdm_error *err)
{
    size_t n = (size_t)g->width * g->height * 3;
    int ret = av_frame_make_writable(g->stats_in);

    if (ret >= 0) {
        av_image_copy_plane(g->stats_in->data[0], g->stats_in->linesize[0], rgb, 3 * g->width, 3 * g->width, g->height);
        g->stats_in->pts = g->spooled;
        /* PUSH: counted now. Without it the graph only queues the frame
         * until the palette is asked for at the end: every frame of the
         * render held in memory, and all the counting after the loop. */
        ret = av_buffersrc_add_frame_flags(g->stats.src, g->stats_in,
                                           AV_BUFFERSRC_FLAG_KEEP_REF | AV_BUFFERSRC_FLAG_PUSH);
    }
    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: GIF filter graph failed", g->target);
    if (fwrite(rgb, 1, n, g->spool) != n)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: write failed (frame spool %s): %s", g->target, g->spool_path,
                             strerror(errno));
    g->spooled++;
    return 0;
}

static int gif_write(void *ctx, const uint8_t *rgb, sdm_error *err)
{
    gif_ctx *g = ctx;
    gif_job *j;

    if (g->palette == SDM_GIF_PALETTE_STREAM)
        return gather(g, rgb, err);
    j = next_job(g, err);
    if (!j)
        return -1;
    av_image_copy_plane(j->rgb->data[0], j->rgb->linesize[0], rgb, 3 * g->width, 3 * g->width, g->height);
    return submit(g, j, err);
}

/* The next spooled frame into f. */
static int read_frame(gif_ctx *g, AVFrame *f)
{
    size_t row = (size_t)g->width * 3;

    for (int y = 0; y < g->height; y++)
        if (fread(f->data[0] + (size_t)y * f->linesize[0], 1, row, g->spool) != row)
            return -1;
    return 0;
}

/* Palette per stream, at the end: take the palette, give it to every
 * worker's paletteuse, then send the spooled frames through them. */
static int second_pass(gif_ctx *g, sdm_error *err)
{
    AVFrame *palette = av_frame_alloc();
    char desc[256];
    int ret = -1, averr;

    if (!palette) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (fflush(g->spool) != 0 || ferror(g->spool)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: write failed (frame spool %s): %s", g->target, g->spool_path,
                      strerror(errno));
        goto end;
    }
    averr = av_buffersrc_add_frame_flags(g->stats.src, NULL, 0);
    if (averr >= 0)
        averr = av_buffersink_get_frame(g->stats.sink, palette);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: palettegen gave no palette", g->target);
        goto end;
    }
    palette->pts = 0;
    snprintf(desc, sizeof desc, "[in][pal]paletteuse=dither=%s%s[out]", dither_opts[g->dither],
             g->n_graphs == 1 ? ":diff_mode=rectangle" : "");
    for (int i = 0; i < g->n_graphs; i++)
        if (build_graph(g, &g->graphs[i], desc, palette, 1, err) < 0)
            goto end;
    rewind(g->spool);
    for (int64_t k = 0; k < g->spooled; k++) {
        gif_job *j = next_job(g, err);
        if (!j)
            goto end;
        if (read_frame(g, j->rgb) < 0) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: cannot read back frame %lld from %s", g->target, (long long)k,
                          g->spool_path);
            goto end;
        }
        if (submit(g, j, err) < 0)
            goto end;
    }
    ret = 0;
end:
    av_frame_free(&palette);
    return ret;
}

static int gif_finish(void *ctx, sdm_error *err)
{
    gif_ctx *g = ctx;
    int ret;

    if (g->palette == SDM_GIF_PALETTE_STREAM && second_pass(g, err) < 0)
        return -1;
    if (collect(g, 1, err) < 0 || encode(g, NULL, err) < 0)
        return -1;
    /* The muxer gives the last frame the previous frame's delay; at rates
     * that are not a whole number of 1/100 s the delays alternate (24 fps:
     * 4,4,4,4,4,5 ...), so set the last one to what keeps the loop's total
     * duration exact. */
    if (g->encoded > 0) {
        AVRational cs = { 1, 100 }, tb = g->enc->time_base;
        int64_t last = av_rescale_q(g->encoded, tb, cs) - av_rescale_q(g->encoded - 1, tb, cs);
        av_opt_set_int(g->oc->priv_data, "final_delay", last > 0 ? last : 1, 0);
    }
    ret = av_write_trailer(g->oc);
    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: write failed", g->target);
    ret = avio_closep(&g->oc->pb);
    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: write failed", g->target);
    return 0;
}

const sdm_format sdm_format_gif = {
    .name = "gif",
    .check = gif_check,
    .open = gif_open,
    .write = gif_write,
    .finish = gif_finish,
    .free = gif_free,
};
