/* Reads a file back: demux + decode (FFmpeg's doc/examples/demux_decode.c
 * shape), every frame converted to RGB24 with the matrix the stream is
 * tagged with, and two container checks done on the bytes themselves. */
#include "probe.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/intreadwrite.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "ffutil.h"

/* Order of the top-level MP4 boxes: 1 moov first, 0 mdat first, -1 neither. */
static int mp4_moov_first(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t h[16];
    int64_t pos = 0;
    int ret = -1;

    if (!f)
        return -1;
    while (fread(h, 1, 8, f) == 8) {
        uint64_t size = AV_RB32(h);
        if (memcmp(h + 4, "moov", 4) == 0) {
            ret = 1;
            break;
        }
        if (memcmp(h + 4, "mdat", 4) == 0) {
            ret = 0;
            break;
        }
        if (size == 1) {
            if (fread(h + 8, 1, 8, f) != 8)
                break;
            size = AV_RB64(h + 8);
        }
        if (size < 8 || size > INT64_MAX - (uint64_t)pos)
            break;
        pos += (int64_t)size;
        if (fseeko(f, pos, SEEK_SET) < 0)
            break;
    }
    fclose(f);
    return ret;
}

static int skip_sub_blocks(FILE *f)
{
    for (;;) {
        int n = fgetc(f);
        if (n == EOF)
            return -1;
        if (n == 0)
            return 0;
        if (fseek(f, n, SEEK_CUR) < 0)
            return -1;
    }
}

/* The NETSCAPE2.0 loop count before the first image: 0 = forever, -1 = none. */
static int gif_loop_count(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t b[256];
    int ret = -1;

    if (!f)
        return -1;
    if (fread(b, 1, 13, f) != 13 || memcmp(b, "GIF8", 4) != 0)
        goto end;
    if ((b[10] & 0x80) && fseek(f, 3L << ((b[10] & 7) + 1), SEEK_CUR) < 0)
        goto end;
    for (;;) {
        int c = fgetc(f), label, n;
        if (c != 0x21)
            break; /* an image, the trailer or garbage: no loop extension before it */
        label = fgetc(f);
        if (label == 0xff) {
            n = fgetc(f);
            if (n == EOF || fread(b, 1, n, f) != (size_t)n)
                break;
            if (n == 11 && memcmp(b, "NETSCAPE2.0", 11) == 0) {
                n = fgetc(f);
                if (n == 3 && fread(b, 1, 3, f) == 3 && b[0] == 1) {
                    ret = AV_RL16(b + 1);
                    break;
                }
                if (n == EOF)
                    break;
                if (n > 0 && fseek(f, n, SEEK_CUR) < 0)
                    break;
                if (n == 0)
                    continue;
            }
        }
        if (label == EOF || skip_sub_blocks(f) < 0)
            break;
    }
end:
    fclose(f);
    return ret;
}

static int count_colors(const uint8_t *rgb, int n_pixels, uint8_t *seen)
{
    int colors = 0;

    memset(seen, 0, 1 << 21);
    for (int i = 0; i < n_pixels; i++) {
        uint32_t c = (uint32_t)rgb[3 * i] << 16 | rgb[3 * i + 1] << 8 | rgb[3 * i + 2];
        if (!(seen[c >> 3] & (1 << (c & 7)))) {
            seen[c >> 3] |= 1 << (c & 7);
            colors++;
        }
    }
    return colors;
}

typedef struct {
    struct SwsContext *sws;
    uint8_t *rgb;
    uint8_t *seen;
    sdm_probe_frame_fn on_frame;
    void *user;
    sdm_probe_info *info;
} frame_sink;

static int take_frame(frame_sink *fs, const AVFrame *frame, sdm_error *err)
{
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(frame->format);
    uint8_t *dst[4] = { fs->rgb, NULL, NULL, NULL };
    int dst_linesize[4] = { 3 * frame->width, 0, 0, 0 };
    sdm_probe_info *info = fs->info;

    if (frame->width != info->width || frame->height != info->height)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "frame %d is %dx%d, the stream %dx%d", info->frames, frame->width,
                             frame->height, info->width, info->height);
    if (info->frames == 0) {
        /* PNG keeps its text chunks with the frame, not the container. */
        AVDictionaryEntry *comment = av_dict_get(frame->metadata, "comment", NULL, 0);
        if (comment && !info->comment[0])
            snprintf(info->comment, sizeof info->comment, "%s", comment->value);
        snprintf(info->pix_fmt, sizeof info->pix_fmt, "%s", desc ? desc->name : "?");
        snprintf(info->color_space, sizeof info->color_space, "%s", av_color_space_name(frame->colorspace));
    }
    fs->sws =
        sws_getCachedContext(fs->sws, frame->width, frame->height, frame->format, frame->width, frame->height,
                             AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!fs->sws)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot convert %s to RGB", desc ? desc->name : "?");
    if (desc && !(desc->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL))) {
        int cs = frame->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_DEFAULT;
        sws_setColorspaceDetails(fs->sws, sws_getCoefficients(cs), frame->color_range == AVCOL_RANGE_JPEG,
                                 sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    }
    sws_scale(fs->sws, (const uint8_t *const *)frame->data, frame->linesize, 0, frame->height, dst, dst_linesize);
    if (fs->seen) {
        int c = count_colors(fs->rgb, frame->width * frame->height, fs->seen);
        if (c > info->max_colors)
            info->max_colors = c;
    }
    if (fs->on_frame && fs->on_frame(fs->user, info->frames, fs->rgb, frame->width, frame->height))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "stopped at frame %d", info->frames);
    info->frames++;
    return 0;
}

/* Sends one packet (NULL: flush) and takes every frame that comes out. */
static int decode(AVCodecContext *dec, const AVPacket *pkt, AVFrame *frame, frame_sink *fs, sdm_error *err)
{
    int ret = avcodec_send_packet(dec, pkt);

    if (ret < 0)
        return sdm_ff_error(err, ret, "decoding failed");
    for (;;) {
        ret = avcodec_receive_frame(dec, frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret < 0)
            return sdm_ff_error(err, ret, "decoding failed");
        ret = take_frame(fs, frame, err);
        av_frame_unref(frame);
        if (ret < 0)
            return -1;
    }
}

/* The file's best video stream (*idx) and its decoder, opened. */
static int open_video(const char *path, AVFormatContext **fmt, AVCodecContext **dec, int *idx, sdm_error *err)
{
    const AVCodec *codec = NULL;
    int averr = avformat_open_input(fmt, path, NULL, NULL);

    if (averr < 0)
        return sdm_ff_error(err, averr, "cannot open %s", path);
    averr = avformat_find_stream_info(*fmt, NULL);
    if (averr < 0)
        return sdm_ff_error(err, averr, "%s: cannot read stream information", path);
    *idx = av_find_best_stream(*fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (*idx < 0)
        return sdm_ff_error(err, *idx, "%s: no video stream that can be decoded", path);
    *dec = avcodec_alloc_context3(codec);
    if (!*dec)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    averr = avcodec_parameters_to_context(*dec, (*fmt)->streams[*idx]->codecpar);
    if (averr >= 0)
        averr = avcodec_open2(*dec, codec, NULL);
    if (averr < 0)
        return sdm_ff_error(err, averr, "%s: cannot open the %s decoder", path, codec->name);
    return 0;
}

/* Decodes every packet of stream idx into fs; span gets the first pts and
 * the end of the last packet (INT64_MAX, INT64_MIN where none had a pts). */
static int decode_all(AVFormatContext *fmt, AVCodecContext *dec, int idx, frame_sink *fs, int64_t span[2],
                      const char *path, sdm_error *err)
{
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    int averr, ret = -1;

    span[0] = INT64_MAX;
    span[1] = INT64_MIN;
    if (!pkt || !frame) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    while ((averr = av_read_frame(fmt, pkt)) != AVERROR_EOF) {
        if (averr < 0) {
            sdm_ff_error(err, averr, "%s: read failed", path);
            goto end;
        }
        if (pkt->stream_index == idx && pkt->pts != AV_NOPTS_VALUE) {
            if (pkt->pts < span[0])
                span[0] = pkt->pts;
            if (pkt->pts + pkt->duration > span[1])
                span[1] = pkt->pts + pkt->duration;
        }
        averr = pkt->stream_index == idx ? decode(dec, pkt, frame, fs, err) : 0;
        av_packet_unref(pkt);
        if (averr < 0)
            goto end;
    }
    ret = decode(dec, NULL, frame, fs, err) < 0 ? -1 : 0;
end:
    av_frame_free(&frame);
    av_packet_free(&pkt);
    return ret;
}

int sdm_probe_file(const char *path, sdm_probe_frame_fn on_frame, void *user, int colors, sdm_probe_info *info,
                   sdm_error *err)
{
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVDictionaryEntry *comment;
    AVStream *st;
    frame_sink fs = { .on_frame = on_frame, .user = user, .info = info };
    int64_t span[2];
    int idx = -1, ret = -1;

    memset(info, 0, sizeof *info);
    info->gif_loop = -1;
    info->moov_before_mdat = -1;
    sdm_ff_log_init();

    if (open_video(path, &fmt, &dec, &idx, err))
        goto end;
    st = fmt->streams[idx];
    snprintf(info->codec, sizeof info->codec, "%s", dec->codec->name);
    info->width = st->codecpar->width;
    info->height = st->codecpar->height;
    if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
        info->stream_fps = av_q2d(st->avg_frame_rate);
    comment = av_dict_get(fmt->metadata, "comment", NULL, 0);
    if (comment)
        snprintf(info->comment, sizeof info->comment, "%s", comment->value);
    fs.rgb = av_malloc((size_t)info->width * info->height * 3);
    if (colors)
        fs.seen = av_malloc(1 << 21);
    if (!fs.rgb || (colors && !fs.seen)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (decode_all(fmt, dec, idx, &fs, span, path, err))
        goto end;
    if (span[0] != INT64_MAX && span[1] > span[0]) {
        info->start_time = span[0] * av_q2d(st->time_base);
        info->duration = (span[1] - span[0]) * av_q2d(st->time_base);
        info->fps = info->frames / info->duration;
    }
    if (strcmp(dec->codec->name, "gif") == 0)
        info->gif_loop = gif_loop_count(path);
    if (strstr(fmt->iformat->name, "mp4"))
        info->moov_before_mdat = mp4_moov_first(path);
    ret = 0;
end:
    sws_freeContext(fs.sws);
    av_free(fs.rgb);
    av_free(fs.seen);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return ret;
}

double sdm_probe_psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double sse = 0;

    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        sse += d * d;
    }
    if (sse == 0 || n == 0)
        return 99.0;
    return 10.0 * log10(255.0 * 255.0 * n / sse);
}
