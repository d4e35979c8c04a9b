/* PNG contact sheet: every frame downscaled (swscale, area filter) into a
 * grid of ceil(sqrt(n)) columns, its index drawn in the corner with a tiny
 * built-in digit font (the FFmpeg we may rely on has no drawtext), so a
 * user picks the best frame of a variation walk at a glance. One PNG
 * through libavcodec's encoder, the recipe comment in a tEXt chunk (iTXt
 * when it is not ASCII).
 *
 * Memory is bounded whatever the frame count: at most MAX_CELLS thumbnails
 * are kept. total_frames sizes the thumbnails so the sheet stays within
 * MAX_SIDE pixels (so they hold at most ~MAX_SIDE^2 pixels, 50 MB); when it
 * is unknown (0) they are THUMB_UNKNOWN pixels on their long side (48 MB
 * for 1024). When the cells are full, every other thumbnail is dropped and
 * only every 2nd (4th...) frame kept from then on; the labels stay true. */
#include "format.h"

#include <math.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avio.h>
#include <libavutil/crc.h>
#include <libavutil/intreadwrite.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>

#include "ffutil.h"
#include "png.h"

#define MAX_SIDE 4096
#define MAX_CELLS 1024
#define THUMB_UNKNOWN 128
#define GAP 2
#define BACKGROUND 24

typedef struct {
    char *target, *tmp, *comment;
    AVIOContext *pb; /* opened at once, so a bad path fails before rendering */
    int width, height; /* of the frames */
    int tw, th; /* of a thumbnail */
    struct SwsContext *sws;
    uint8_t *thumbs; /* cap thumbnails, tw*th*3 each */
    int64_t index[MAX_CELLS]; /* frame index of each kept thumbnail */
    int cap; /* MAX_CELLS, or total_frames if fewer */
    int kept;
    int64_t stride; /* keep frames whose index is a multiple */
    int64_t seen;
} sheet_ctx;

static void sheet_free(void **pctx)
{
    sheet_ctx *c = pctx ? *pctx : NULL;

    if (!c)
        return;
    avio_closep(&c->pb);
    sws_freeContext(c->sws);
    av_free(c->thumbs);
    av_free(c->target);
    av_free(c->tmp);
    av_free(c->comment);
    av_freep(pctx);
}

static int sheet_open(void **out, const char *tmp_path, const char *target, const sdm_sink_params *p, sdm_error *err)
{
    sheet_ctx *c = NULL;
    double scale;
    int ret = -1, averr;

    c = av_mallocz(sizeof *c);
    if (!c || !(c->target = av_strdup(target)) || !(c->tmp = av_strdup(tmp_path)) ||
        (p->comment && !(c->comment = av_strdup(p->comment)))) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    c->width = p->width;
    c->height = p->height;
    c->stride = 1;
    if (p->total_frames > 0) {
        int n = p->total_frames < MAX_CELLS ? p->total_frames : MAX_CELLS;
        int cols = (int)ceil(sqrt(n)), rows = (n + cols - 1) / cols;
        double sx = (double)(MAX_SIDE - GAP) / cols - GAP, sy = (double)(MAX_SIDE - GAP) / rows - GAP;
        scale = fmin(1.0, fmin(sx / p->width, sy / p->height));
        c->stride = (p->total_frames + MAX_CELLS - 1) / MAX_CELLS;
    } else {
        scale = fmin(1.0, (double)THUMB_UNKNOWN / (p->width > p->height ? p->width : p->height));
    }
    c->tw = (int)fmax(1, floor(p->width * scale));
    c->th = (int)fmax(1, floor(p->height * scale));
    /* At least 2, so dropping every other thumbnail frees a cell. */
    c->cap = p->total_frames > 1 && p->total_frames < MAX_CELLS ? p->total_frames
             : p->total_frames == 1                             ? 2
                                                                : MAX_CELLS;
    c->thumbs = av_malloc((size_t)c->cap * c->tw * c->th * 3);
    c->sws = sws_getContext(p->width, p->height, AV_PIX_FMT_RGB24, c->tw, c->th, AV_PIX_FMT_RGB24,
                            SWS_AREA | SWS_ACCURATE_RND, NULL, NULL, NULL);
    if (!c->thumbs || !c->sws) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory for the contact sheet", target);
        goto end;
    }
    averr = avio_open(&c->pb, tmp_path, AVIO_FLAG_WRITE);
    if (averr < 0) {
        sdm_ff_error(err, averr, "cannot create %s (temporary file %s)", target, tmp_path);
        goto end;
    }
    *out = c;
    c = NULL;
    ret = 0;
end:
    sheet_free((void **)&c);
    return ret;
}

/* Keeps every other thumbnail (indices 0, 2, 4 ...) and doubles the stride. */
static void compact(sheet_ctx *c)
{
    size_t size = (size_t)c->tw * c->th * 3;
    int j = 0;

    for (int i = 0; i < c->kept; i += 2, j++) {
        if (i != j)
            memcpy(c->thumbs + j * size, c->thumbs + i * size, size);
        c->index[j] = c->index[i];
    }
    c->kept = j;
    c->stride *= 2;
}

static int sheet_write(void *ctx, const uint8_t *rgb, sdm_error *err)
{
    sheet_ctx *c = ctx;
    int64_t k = c->seen++;

    (void)err;
    if (k % c->stride)
        return 0;
    if (c->kept == c->cap) {
        compact(c);
        if (k % c->stride)
            return 0;
    }
    {
        const uint8_t *src[4] = { rgb, NULL, NULL, NULL };
        int src_linesize[4] = { 3 * c->width, 0, 0, 0 };
        uint8_t *dst[4] = { c->thumbs + (size_t)c->kept * c->tw * c->th * 3, NULL, NULL, NULL };
        int dst_linesize[4] = { 3 * c->tw, 0, 0, 0 };
        sws_scale(c->sws, src, src_linesize, 0, c->height, dst, dst_linesize);
    }
    c->index[c->kept++] = k;
    return 0;
}

/* 3x5 digits: five rows of 3 bits, the top row in the highest bits. */
static const uint16_t digit_font[10] = {
    0x7B6F, /* 0: 111 101 101 101 111 */
    0x2C97, /* 1: 010 110 010 010 111 */
    0x73E7, /* 2: 111 001 111 100 111 */
    0x72CF, /* 3: 111 001 011 001 111 */
    0x5BC9, /* 4: 101 101 111 001 001 */
    0x79CF, /* 5: 111 100 111 001 111 */
    0x79EF, /* 6: 111 100 111 101 111 */
    0x7292, /* 7: 111 001 010 010 010 */
    0x7BEF, /* 8: 111 101 111 101 111 */
    0x7BCF, /* 9: 111 101 111 001 111 */
};

static void fill(uint8_t *img, int linesize, int x0, int y0, int w, int h, int xmax, int ymax, uint8_t v)
{
    for (int y = y0; y < y0 + h && y < ymax; y++)
        for (int x = x0; x < x0 + w && x < xmax; x++)
            memset(img + (size_t)y * linesize + 3 * x, v, 3);
}

/* Draws the number white on a black box at (x0, y0), clipped to xmax/ymax. */
static void draw_label(uint8_t *img, int linesize, int x0, int y0, int xmax, int ymax, int64_t number, int k)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)number);

    fill(img, linesize, x0, y0, (4 * n + 1) * k, 7 * k, xmax, ymax, 0);
    for (int i = 0; i < n; i++) {
        uint16_t glyph = digit_font[digits[i] - '0'];
        for (int r = 0; r < 5; r++)
            for (int col = 0; col < 3; col++)
                if (glyph >> (14 - 3 * r - col) & 1)
                    fill(img, linesize, x0 + (1 + 4 * i + col) * k, y0 + (1 + r) * k, k, k, xmax, ymax, 255);
    }
}

static int sheet_finish(void *ctx, sdm_error *err)
{
    sheet_ctx *c = ctx;
    AVFrame *frame = NULL;
    int cols, rows, k, ret = -1, averr;
    size_t size = (size_t)c->tw * c->th * 3;

    cols = (int)ceil(sqrt(c->kept));
    rows = (c->kept + cols - 1) / cols;
    frame = av_frame_alloc();
    if (!frame) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    frame->format = AV_PIX_FMT_RGB24;
    frame->width = cols * (c->tw + GAP) + GAP;
    frame->height = rows * (c->th + GAP) + GAP;
    averr = av_frame_get_buffer(frame, 0);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: out of memory for a %dx%d sheet", c->target, frame->width, frame->height);
        goto end;
    }

    fill(frame->data[0], frame->linesize[0], 0, 0, frame->width, frame->height, frame->width, frame->height,
         BACKGROUND);
    /* Digits about a 16th of the cell wide, at least one pixel a dot. */
    k = c->tw / 64 > 1 ? c->tw / 64 : 1;
    if (k > 6)
        k = 6;
    for (int i = 0; i < c->kept; i++) {
        int x0 = GAP + (i % cols) * (c->tw + GAP), y0 = GAP + (i / cols) * (c->th + GAP);
        const uint8_t *t = c->thumbs + i * size;
        for (int y = 0; y < c->th; y++)
            memcpy(frame->data[0] + (size_t)(y0 + y) * frame->linesize[0] + 3 * x0, t + (size_t)y * 3 * c->tw,
                   3 * c->tw);
        draw_label(frame->data[0], frame->linesize[0], x0, y0, x0 + c->tw, y0 + c->th, c->index[i], k);
    }
    /* Drawn: give their memory back before the encoder takes its own. */
    av_freep(&c->thumbs);
    c->kept = 0;

    if (sdm_png_encode(frame->data[0], frame->linesize[0], frame->width, frame->height, c->comment, c->pb, c->target,
                       err) < 0)
        goto end;
    averr = avio_closep(&c->pb);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: write failed", c->target);
        goto end;
    }
    ret = 0;
end:
    av_frame_free(&frame);
    return ret;
}

static int sheet_check(const char *target, const sdm_sink_params *p, sdm_error *err)
{
    (void)p;
    return sdm_png_check(target, err);
}

const sdm_format sdm_format_sheet = {
    .name = "png contact sheet",
    .check = sheet_check,
    .open = sheet_open,
    .write = sheet_write,
    .finish = sheet_finish,
    .free = sheet_free,
};
