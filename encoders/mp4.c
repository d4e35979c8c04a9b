/* MP4/H.264 output: RGB24 -> yuv420p (swscale, BT.709 limited range, tagged
 * as such) -> libx264 (crf, preset) -> mp4 muxer with +faststart, so the
 * moov atom comes first and a browser starts playing before the file has
 * fully loaded. Every packet carries its one-frame duration, so the last
 * frame lasts as long as the others and a <video loop> wraps without a
 * hitch. Shaped after FFmpeg's doc/examples/encode_video.c and mux.c. */
#include "format.h"

#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "ffutil.h"

typedef struct {
    char *target;
    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *st;
    struct SwsContext *sws;
    AVFrame *frame;
    AVPacket *pkt;
    int64_t next_pts;
    int width, height;
} mp4_ctx;

static const char *const x264_presets[] = { "ultrafast", "superfast", "veryfast", "faster",  "fast", "medium",
                                            "slow",      "slower",    "veryslow", "placebo", NULL };

static int preset_known(const char *preset)
{
    for (int i = 0; x264_presets[i]; i++)
        if (strcmp(preset, x264_presets[i]) == 0)
            return 1;
    return 0;
}

static void mp4_free(void **pctx)
{
    mp4_ctx *m = pctx ? *pctx : NULL;

    if (!m)
        return;
    if (m->oc && m->oc->pb)
        avio_closep(&m->oc->pb);
    avformat_free_context(m->oc);
    avcodec_free_context(&m->enc);
    sws_freeContext(m->sws);
    av_frame_free(&m->frame);
    av_packet_free(&m->pkt);
    av_free(m->target);
    av_freep(pctx);
}

/* RGB24 (full range) to BT.709 limited-range yuv420p, with accurate rounding
 * and full-resolution chroma taken from the input before subsampling. */
static struct SwsContext *rgb_to_yuv(int w, int h)
{
    struct SwsContext *sws;
    const int *rgb_table = sws_getCoefficients(SWS_CS_DEFAULT);
    const int *yuv_table = sws_getCoefficients(SWS_CS_ITU709);

    sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (sws)
        sws_setColorspaceDetails(sws, rgb_table, 1, yuv_table, 0, 0, 1 << 16, 1 << 16);
    return sws;
}

static int mp4_check(const char *target, const sdm_sink_params *p, sdm_error *err)
{
    if (p->width % 2 || p->height % 2)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: H.264 in yuv420p needs an even width and height, got %dx%d",
                             target, p->width, p->height);
    if (!p->preset || !preset_known(p->preset))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: unknown x264 preset '%s' (ultrafast ... medium ... placebo)",
                             target, p->preset ? p->preset : "(null)");
    if (p->crf < 0 || p->crf > 51)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: crf %d is outside 0..51", target, p->crf);
    if (!avcodec_find_encoder_by_name("libx264"))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: this FFmpeg was built without the libx264 encoder", target);
    return 0;
}

/* What x264 is told besides its defaults (NULL: nothing).
 *
 * x264's AVX-512 mbtree_propagate_list (MB-tree, in the lookahead) takes a
 * row of macroblocks 8 at a time with no mask for the last group. Where the
 * row's count (the width in 16-pixel macroblocks) is not a multiple of 8 it
 * also adds the entries past the row's end (up to 7) into the costs: the
 * next row's, and after the last row memory x264 never wrote, so the bytes
 * followed what the heap held before (seen with MALLOC_PERTURB_, and with
 * two engines in one process; x264 up to its 2024 tree). There x264 gets
 * its AVX2 set instead, every feature it would detect but AVX-512 (CPUs
 * with AVX-512 have AVX2, FMA3 and BMI1/2): that code takes only the row,
 * so the same frames give the same file with MB-tree on (without it the
 * files are about twice as large). Elsewhere AVX-512 stays: it encodes
 * 5-10% faster. A CPU with AVX-512 but not the rest (none known) gets
 * MB-tree off instead. */
static const char *x264_params(int width)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if ((width + 15) / 16 % 8 == 0 || !__builtin_cpu_supports("avx512f"))
        return NULL;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
        __builtin_cpu_supports("bmi2"))
        return "asm=AVX2";
    return "mbtree=0";
#else
    (void)width;
    return NULL; /* x264 has AVX-512 code on x86-64 only */
#endif
}

/* The H.264 encoder for p's size and rate, BT.709 limited range, opened,
 * and the stream's parameters from it. */
static int open_encoder(mp4_ctx *m, const AVCodec *codec, const char *target, const sdm_sink_params *p, sdm_error *err)
{
    /* 24 -> 24/1, 29.97 -> 2997/100: the time base is one frame. */
    AVRational rate = av_d2q(p->fps, 1001000);
    const char *params;
    int averr;

    m->enc->width = p->width;
    m->enc->height = p->height;
    m->enc->framerate = rate;
    m->enc->time_base = av_inv_q(rate);
    m->enc->sample_aspect_ratio = (AVRational){ 1, 1 };
    m->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    m->enc->color_range = AVCOL_RANGE_MPEG;
    m->enc->colorspace = AVCOL_SPC_BT709;
    m->enc->color_primaries = AVCOL_PRI_BT709;
    m->enc->color_trc = AVCOL_TRC_BT709;
    if (m->oc->oformat->flags & AVFMT_GLOBALHEADER)
        m->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    av_opt_set(m->enc->priv_data, "preset", p->preset, 0);
    params = x264_params(p->width);
    if (params)
        av_opt_set(m->enc->priv_data, "x264-params", params, 0);
    av_opt_set_double(m->enc->priv_data, "crf", p->crf, 0);

    averr = avcodec_open2(m->enc, codec, NULL);
    if (averr < 0)
        return sdm_ff_error(err, averr, "%s: cannot open the H.264 encoder", target);
    averr = avcodec_parameters_from_context(m->st->codecpar, m->enc);
    if (averr < 0)
        return sdm_ff_error(err, averr, "%s: stream parameters", target);
    m->st->time_base = m->enc->time_base;
    m->st->avg_frame_rate = rate;
    return 0;
}

/* The temporary file created and the header written (moov first: +faststart). */
static int write_header(mp4_ctx *m, const char *tmp_path, const char *target, const sdm_sink_params *p, sdm_error *err)
{
    AVDictionary *opts = NULL;
    int averr;

    if (p->comment)
        av_dict_set(&m->oc->metadata, "comment", p->comment, 0);
    averr = avio_open(&m->oc->pb, tmp_path, AVIO_FLAG_WRITE);
    if (averr < 0)
        return sdm_ff_error(err, averr, "cannot create %s (temporary file %s)", target, tmp_path);
    av_dict_set(&opts, "movflags", "+faststart", 0);
    averr = avformat_write_header(m->oc, &opts);
    av_dict_free(&opts);
    if (averr < 0)
        return sdm_ff_error(err, averr, "%s: cannot write the header", target);
    return 0;
}

/* The yuv420p frame each RGB frame is converted into, tagged as the encoder is. */
static int frame_buffer(mp4_ctx *m, const char *target, sdm_error *err)
{
    int averr;

    m->frame->format = AV_PIX_FMT_YUV420P;
    m->frame->width = m->width;
    m->frame->height = m->height;
    m->frame->color_range = m->enc->color_range;
    m->frame->colorspace = m->enc->colorspace;
    m->frame->color_primaries = m->enc->color_primaries;
    m->frame->color_trc = m->enc->color_trc;
    averr = av_frame_get_buffer(m->frame, 0);
    if (averr < 0)
        return sdm_ff_error(err, averr, "%s: frame buffer", target);
    return 0;
}

/* Called after mp4_check() passed. */
static int mp4_open(void **out, const char *tmp_path, const char *target, const sdm_sink_params *p, sdm_error *err)
{
    mp4_ctx *m = NULL;
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    int ret = -1, averr;

    m = av_mallocz(sizeof *m);
    if (!m || !(m->target = av_strdup(target))) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    m->width = p->width;
    m->height = p->height;

    averr = avformat_alloc_output_context2(&m->oc, NULL, "mp4", tmp_path);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: no mp4 muxer", target);
        goto end;
    }
    m->st = avformat_new_stream(m->oc, NULL);
    m->enc = avcodec_alloc_context3(codec);
    m->frame = av_frame_alloc();
    m->pkt = av_packet_alloc();
    m->sws = rgb_to_yuv(p->width, p->height);
    if (!m->st || !m->enc || !m->frame || !m->pkt || !m->sws) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory setting up the encoder", target);
        goto end;
    }
    if (open_encoder(m, codec, target, p, err) || write_header(m, tmp_path, target, p, err) ||
        frame_buffer(m, target, err))
        goto end;
    *out = m;
    m = NULL;
    ret = 0;
end:
    mp4_free((void **)&m);
    return ret;
}

/* Sends one frame (NULL: flush) and writes every packet that comes out. */
static int encode(mp4_ctx *m, const AVFrame *frame, sdm_error *err)
{
    int ret = avcodec_send_frame(m->enc, frame);

    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: H.264 encoding failed", m->target);
    for (;;) {
        ret = avcodec_receive_packet(m->enc, m->pkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret < 0)
            return sdm_ff_error(err, ret, "%s: H.264 encoding failed", m->target);
        /* One frame per packet at a constant rate: the muxer then gives the
         * last sample a full frame's duration instead of guessing. */
        if (m->pkt->duration <= 0)
            m->pkt->duration = 1;
        av_packet_rescale_ts(m->pkt, m->enc->time_base, m->st->time_base);
        m->pkt->stream_index = m->st->index;
        ret = av_interleaved_write_frame(m->oc, m->pkt);
        if (ret < 0)
            return sdm_ff_error(err, ret, "%s: write failed", m->target);
    }
}

static int mp4_write(void *ctx, const uint8_t *rgb, sdm_error *err)
{
    mp4_ctx *m = ctx;
    const uint8_t *src[4] = { rgb, NULL, NULL, NULL };
    int src_linesize[4] = { 3 * m->width, 0, 0, 0 };
    int ret;

    /* The encoder may still hold a reference to the last frame's buffer. */
    ret = av_frame_make_writable(m->frame);
    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: frame buffer", m->target);
    sws_scale(m->sws, src, src_linesize, 0, m->height, m->frame->data, m->frame->linesize);
    m->frame->pts = m->next_pts++;
    return encode(m, m->frame, err);
}

static int mp4_finish(void *ctx, sdm_error *err)
{
    mp4_ctx *m = ctx;
    int ret;

    if (encode(m, NULL, err) < 0)
        return -1;
    /* With +faststart the trailer moves the moov atom before mdat. */
    ret = av_write_trailer(m->oc);
    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: write failed", m->target);
    ret = avio_closep(&m->oc->pb);
    if (ret < 0)
        return sdm_ff_error(err, ret, "%s: write failed", m->target);
    return 0;
}

const sdm_format sdm_format_mp4 = {
    .name = "mp4",
    .check = mp4_check,
    .open = mp4_open,
    .write = mp4_write,
    .finish = mp4_finish,
    .free = mp4_free,
};
