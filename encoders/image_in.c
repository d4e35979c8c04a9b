/* Starting pictures (image_in.h): the header read by hand (a few fixed
 * fields per format, so that size limits hold before libavcodec allocates
 * anything), then one packet through libavcodec's decoder and libswscale. */
#include "image_in.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/imgutils.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>

#include "ffutil.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le24(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

static int bad(sdm_error *err, const char *name, const char *what)
{
    return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %s", name, what);
}

/* PNG: the IHDR chunk first, IEND last. */
static int png_header(const uint8_t *d, size_t n, const char *name, sdm_image_header *h, sdm_error *err)
{
    static const uint8_t iend[8] = { 0, 0, 0, 0, 'I', 'E', 'N', 'D' };

    if (n < 33 || memcmp(d + 12, "IHDR", 4))
        return bad(err, name, "not a readable PNG (no IHDR chunk after the signature)");
    h->format = "PNG";
    h->width = be32(d + 16) > INT32_MAX ? -1 : (int)be32(d + 16);
    h->height = be32(d + 20) > INT32_MAX ? -1 : (int)be32(d + 20);
    if (n < 45 || memcmp(d + n - 12, iend, 8))
        return bad(err, name, "the PNG is truncated (it does not end with an IEND chunk)");
    return 0;
}

/* JPEG: the first start-of-frame marker's size; an end marker somewhere after. */
static int jpeg_header(const uint8_t *d, size_t n, const char *name, sdm_image_header *h, sdm_error *err)
{
    size_t i = 2;

    h->format = "JPEG";
    while (i + 4 <= n) {
        uint8_t m;
        size_t len;
        if (d[i] != 0xFF)
            return bad(err, name, "not a readable JPEG (a marker was expected)");
        m = d[i + 1];
        if (m == 0xFF || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {
            i += m == 0xFF ? 1 : 2; /* fill byte, or a marker without a length */
            continue;
        }
        if (m == 0xD9 || m == 0xDA)
            break;
        len = (size_t)d[i + 2] << 8 | d[i + 3];
        if (len < 2)
            return bad(err, name, "not a readable JPEG (a segment length under 2)");
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (len < 7 || i + 9 > n)
                break;
            h->height = (int)d[i + 5] << 8 | d[i + 6];
            h->width = (int)d[i + 7] << 8 | d[i + 8];
            for (size_t j = n - 1; j > i + 9; j--)
                if (d[j] == 0xD9 && d[j - 1] == 0xFF)
                    return 0;
            return bad(err, name, "the JPEG is truncated (no end-of-image marker)");
        }
        i += 2 + len;
    }
    return bad(err, name, "not a readable JPEG (no frame header before the image data), or truncated");
}

/* WebP: the canvas of VP8X, or the frame size of VP8L or VP8. */
static int webp_header(const uint8_t *d, size_t n, const char *name, sdm_image_header *h, sdm_error *err)
{
    h->format = "WebP";
    if (n < 30)
        return bad(err, name, "the WebP file is truncated (shorter than its headers)");
    if ((uint64_t)(le24(d + 4) | (uint32_t)d[7] << 24) + 8 > n) /* the RIFF size */
        return bad(err, name, "the WebP file is truncated (shorter than its RIFF size)");
    if (!memcmp(d + 12, "VP8X", 4)) {
        h->width = (int)le24(d + 24) + 1;
        h->height = (int)le24(d + 27) + 1;
    } else if (!memcmp(d + 12, "VP8L", 4) && d[20] == 0x2F) {
        uint32_t bits = (uint32_t)d[21] | (uint32_t)d[22] << 8 | (uint32_t)d[23] << 16 | (uint32_t)d[24] << 24;
        h->width = (int)(bits & 0x3FFF) + 1;
        h->height = (int)(bits >> 14 & 0x3FFF) + 1;
    } else if (!memcmp(d + 12, "VP8 ", 4) && d[23] == 0x9D && d[24] == 0x01 && d[25] == 0x2A) {
        h->width = (d[26] | d[27] << 8) & 0x3FFF;
        h->height = (d[28] | d[29] << 8) & 0x3FFF;
    } else {
        return bad(err, name, "not a readable WebP (no VP8, VP8L or VP8X chunk first)");
    }
    return 0;
}

int sdm_image_header_read(const uint8_t *data, size_t size, const char *name, sdm_image_header *out, sdm_error *err)
{
    static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
    int rc;

    memset(out, 0, sizeof *out);
    if (size >= 8 && !memcmp(data, png_sig, 8))
        rc = png_header(data, size, name, out, err);
    else if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        rc = jpeg_header(data, size, name, out, err);
    else if (size >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WEBP", 4))
        rc = webp_header(data, size, name, out, err);
    else
        return bad(err, name, size ? "not an image (expected a PNG, JPEG or WebP file)" : "the file is empty");
    if (rc)
        return rc;
    if (out->width < 1 || out->height < 1)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: the %s header gives no size (%dx%d)", name, out->format,
                             out->width, out->height);
    if (out->width > SDM_IMAGE_MAX_SIDE || out->height > SDM_IMAGE_MAX_SIDE ||
        (long long)out->width * out->height > SDM_IMAGE_MAX_PIXELS)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%s: the picture is too large (%dx%d, from its %s header); at most %d pixels a side "
                             "and %lld in all",
                             name, out->width, out->height, out->format, SDM_IMAGE_MAX_SIDE, SDM_IMAGE_MAX_PIXELS);
    return 0;
}

/* The whole file into memory (at most SDM_IMAGE_MAX_BYTES). */
static int read_file(const char *path, uint8_t **data, size_t *size, sdm_error *err)
{
    FILE *f = fopen(path, "rb");
    long len;
    int rc = -1;

    *data = NULL;
    *size = 0;
    if (!f)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: cannot open the picture: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: cannot read the picture: %s", path, strerror(errno));
        goto end;
    }
    if ((unsigned long)len > SDM_IMAGE_MAX_BYTES) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: the picture file is too large (%ld bytes; at most %u)", path, len,
                      SDM_IMAGE_MAX_BYTES);
        goto end;
    }
    *data = malloc(len > 0 ? (size_t)len : 1);
    if (!*data) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (fread(*data, 1, (size_t)len, f) != (size_t)len) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: cannot read the picture: %s", path,
                      ferror(f) ? strerror(errno) : "it is shorter than its size");
        goto end;
    }
    *size = (size_t)len;
    rc = 0;
end:
    if (rc) {
        free(*data);
        *data = NULL;
    }
    fclose(f);
    return rc;
}

int sdm_image_check(const char *path, sdm_image_header *out, sdm_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc;

    if (read_file(path, &data, &size, err))
        return -1;
    rc = sdm_image_header_read(data, size, path, out, err);
    free(data);
    return rc;
}

/* One packet through the format's decoder: the picture, in whatever pixel
 * format the decoder gives. */
static int decode_frame(const uint8_t *data, size_t size, const char *name, const sdm_image_header *h, AVFrame **out,
                        sdm_error *err)
{
    enum AVCodecID id = h->format[0] == 'P'   ? AV_CODEC_ID_PNG
                        : h->format[0] == 'J' ? AV_CODEC_ID_MJPEG
                                              : AV_CODEC_ID_WEBP;
    const AVCodec *codec = avcodec_find_decoder(id);
    AVCodecContext *ctx = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    int ret, rc = -1;

    sdm_ff_log_init();
    if (!codec) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: this FFmpeg has no %s decoder", name, h->format);
        goto end;
    }
    ctx = avcodec_alloc_context3(codec);
    if (!ctx || !pkt || !frame || av_new_packet(pkt, (int)size) < 0) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    memcpy(pkt->data, data, size);
    ctx->max_pixels = SDM_IMAGE_MAX_PIXELS; /* the header's limit, held by the decoder too */
    ctx->thread_count = 1;
    ctx->err_recognition = AV_EF_EXPLODE;
    ret = avcodec_open2(ctx, codec, NULL);
    if (ret >= 0)
        ret = avcodec_send_packet(ctx, pkt);
    if (ret >= 0)
        ret = avcodec_send_packet(ctx, NULL);
    if (ret >= 0)
        ret = avcodec_receive_frame(ctx, frame);
    if (ret >= 0 && (frame->width != h->width || frame->height != h->height || frame->format < 0))
        ret = AVERROR_INVALIDDATA;
    if (ret < 0) {
        sdm_ff_error(err, ret, "%s: not a readable %s", name, h->format);
        err->code = SDM_EXIT_USAGE;
        goto end;
    }
    *out = frame;
    frame = NULL;
    rc = 0;
end:
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&ctx);
    return rc;
}

/* swscale reads and writes whole SIMD blocks: its buffers get rows
 * aligned to 64 bytes and a spare row at the end. */
#define ROW_ALIGN 64

static int padded_stride(int w)
{
    return (w * 3 + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
}

static uint8_t *padded_rgb(int w, int h)
{
    return av_mallocz((size_t)padded_stride(w) * (h + 1) + ROW_ALIGN);
}

/* rect (w x h at src, rows src_stride apart, padded) scaled to dw x dh into
 * dst (rows dst_stride apart), RGB24 both; a plain copy where the sizes agree. */
static int scale_rgb(const uint8_t *src, int src_stride, int w, int h, uint8_t *dst, int dst_stride, int dw, int dh)
{
    struct SwsContext *sws = NULL;
    uint8_t *out = NULL;
    int stride = padded_stride(dw), rc = -1;

    if (w == dw && h == dh) {
        for (int y = 0; y < h; y++)
            memcpy(dst + (size_t)y * dst_stride, src + (size_t)y * src_stride, (size_t)w * 3);
        return 0;
    }
    sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, dw, dh, AV_PIX_FMT_RGB24, SWS_LANCZOS | SWS_ACCURATE_RND, NULL, NULL,
                         NULL);
    out = padded_rgb(dw, dh);
    if (!sws || !out)
        goto end;
    sws_scale(sws, (const uint8_t *const *)&src, &src_stride, 0, h, &out, &stride);
    for (int y = 0; y < dh; y++)
        memcpy(dst + (size_t)y * dst_stride, out + (size_t)y * stride, (size_t)dw * 3);
    rc = 0;
end:
    sws_freeContext(sws);
    av_free(out);
    return rc;
}

/* A JPEG's yuvj formats as the plain ones with full range (swscale warns
 * about the yuvj ones); *full: the source is full range. */
static enum AVPixelFormat plain_format(const AVFrame *f, int *full)
{
    static const enum AVPixelFormat j[][2] = { { AV_PIX_FMT_YUVJ420P, AV_PIX_FMT_YUV420P },
                                               { AV_PIX_FMT_YUVJ422P, AV_PIX_FMT_YUV422P },
                                               { AV_PIX_FMT_YUVJ444P, AV_PIX_FMT_YUV444P },
                                               { AV_PIX_FMT_YUVJ440P, AV_PIX_FMT_YUV440P },
                                               { AV_PIX_FMT_YUVJ411P, AV_PIX_FMT_YUV411P } };

    *full = f->color_range == AVCOL_RANGE_JPEG;
    for (size_t i = 0; i < sizeof j / sizeof *j; i++) {
        if (f->format == j[i][0]) {
            *full = 1;
            return j[i][1];
        }
    }
    return (enum AVPixelFormat)f->format;
}

/* The decoded frame as RGB24 at its own size, in a padded buffer (av_free it). */
static int frame_rgb(const AVFrame *f, uint8_t **rgb, int *stride)
{
    int full;
    enum AVPixelFormat fmt = plain_format(f, &full);
    struct SwsContext *sws = sws_getContext(f->width, f->height, fmt, f->width, f->height, AV_PIX_FMT_RGB24,
                                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    const int *coefs = sws_getCoefficients(SWS_CS_DEFAULT); /* BT.601, as JPEG and WebP have it */

    *stride = padded_stride(f->width);
    *rgb = sws ? padded_rgb(f->width, f->height) : NULL;
    if (*rgb && full)
        sws_setColorspaceDetails(sws, coefs, 1, coefs, 1, 0, 1 << 16, 1 << 16);
    if (*rgb)
        sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, rgb, stride);
    sws_freeContext(sws);
    return *rgb ? 0 : -1;
}

/* sw x sh pixels at src (rows ss apart) brought to W x H at dst as fit says. */
static int fit_rgb(const uint8_t *src, int ss, int sw, int sh, int W, int H, sdm_image_fit fit, uint8_t *dst)
{
    double s;
    int cw, ch;

    if (fit == SDM_FIT_STRETCH)
        return scale_rgb(src, ss, sw, sh, dst, W * 3, W, H);
    if (fit == SDM_FIT_PAD) {
        s = fmin((double)W / sw, (double)H / sh);
        cw = (int)fmin(fmax(lround(sw * s), 1), W);
        ch = (int)fmin(fmax(lround(sh * s), 1), H);
        memset(dst, 0, (size_t)W * H * 3);
        return scale_rgb(src, ss, sw, sh, dst + ((size_t)(H - ch) / 2 * W + (size_t)(W - cw) / 2) * 3, W * 3, cw, ch);
    }
    /* crop: the largest centred rectangle of the frame's aspect ratio */
    s = fmax((double)W / sw, (double)H / sh);
    cw = (int)fmin(fmax(lround(W / s), 1), sw);
    ch = (int)fmin(fmax(lround(H / s), 1), sh);
    return scale_rgb(src + (size_t)(sh - ch) / 2 * ss + (size_t)(sw - cw) / 2 * 3, ss, cw, ch, dst, W * 3, W, H);
}

int sdm_image_decode(const uint8_t *data, size_t size, const char *name, int width, int height, sdm_image_fit fit,
                     uint8_t **rgb, sdm_error *err)
{
    sdm_image_header h;
    AVFrame *frame = NULL;
    uint8_t *full = NULL;
    int stride = 0, rc = -1;

    *rgb = NULL;
    if (width < 1 || height < 1 || (long long)width * height > SDM_IMAGE_MAX_PIXELS)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: picture size %dx%d", width, height);
    if (sdm_image_header_read(data, size, name, &h, err) || decode_frame(data, size, name, &h, &frame, err))
        goto end;
    *rgb = malloc((size_t)width * height * 3);
    if (!*rgb || frame_rgb(frame, &full, &stride) ||
        fit_rgb(full, stride, frame->width, frame->height, width, height, fit, *rgb)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory converting the picture", name);
        goto end;
    }
    rc = 0;
end:
    if (rc) {
        free(*rgb);
        *rgb = NULL;
    }
    av_free(full);
    av_frame_free(&frame);
    return rc;
}

int sdm_image_load(const char *path, int width, int height, sdm_image_fit fit, uint8_t **rgb, sdm_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc;

    *rgb = NULL;
    if (read_file(path, &data, &size, err))
        return -1;
    rc = sdm_image_decode(data, size, path, width, height, fit, rgb, err);
    free(data);
    return rc;
}
