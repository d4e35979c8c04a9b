#include "png.h"

#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avio.h>
#include <libavutil/crc.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>

#include "ffutil.h"

int sdm_png_check(const char *target, sdm_error *err)
{
    if (!avcodec_find_encoder(AV_CODEC_ID_PNG))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: this FFmpeg was built without the png encoder", target);
    return 0;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

/* The PNG as encoded, with a "Comment" text chunk after IHDR (signature 8 +
 * IHDR 25 bytes): tEXt for ASCII, which every reader shows; else iTXt,
 * the chunk for UTF-8. */
static int write_packet(AVIOContext *pb, const AVPacket *pkt, const char *comment, const char *target, sdm_error *err)
{
    const AVCRC *crc = av_crc_get_table(AV_CRC_32_IEEE_LE);
    static const char key[] = "Comment";
    uint8_t *chunk = NULL;
    int ret = -1;

    if (pkt->size < 33 || memcmp(pkt->data + 12, "IHDR", 4) != 0) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: the PNG encoder gave no IHDR", target);
        goto end;
    }
    avio_write(pb, pkt->data, 33);
    if (comment) {
        int utf8 = !is_ascii(comment);
        size_t text_len = strlen(comment);
        /* keyword NUL [iTXt: compression flag, method, language NUL, translated keyword NUL] text */
        size_t head = sizeof key + (utf8 ? 4 : 0), data_len = head + text_len;
        chunk = av_mallocz(4 + data_len);
        if (!chunk) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
            goto end;
        }
        memcpy(chunk, utf8 ? "iTXt" : "tEXt", 4);
        memcpy(chunk + 4, key, sizeof key);
        memcpy(chunk + 4 + head, comment, text_len);
        avio_wb32(pb, (uint32_t)data_len);
        avio_write(pb, chunk, (int)(4 + data_len));
        avio_wb32(pb, ~av_crc(crc, 0xFFFFFFFF, chunk, 4 + data_len));
    }
    avio_write(pb, pkt->data + 33, pkt->size - 33);
    avio_flush(pb);
    if (pb->error < 0) {
        sdm_ff_error(err, pb->error, "%s: write failed", target);
        goto end;
    }
    ret = 0;
end:
    av_free(chunk);
    return ret;
}

int sdm_png_encode(const uint8_t *rgb, int linesize, int width, int height, const char *comment, AVIOContext *pb,
                   const char *target, sdm_error *err)
{
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    AVCodecContext *enc = NULL;
    AVFrame *frame = NULL;
    AVPacket *pkt = NULL;
    int ret = -1, averr;

    if (sdm_png_check(target, err))
        return -1;
    enc = avcodec_alloc_context3(codec);
    frame = av_frame_alloc();
    pkt = av_packet_alloc();
    if (!enc || !frame || !pkt) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    enc->width = width;
    enc->height = height;
    enc->pix_fmt = AV_PIX_FMT_RGB24;
    enc->time_base = (AVRational){ 1, 1 };
    /* A sheet is written after the last frame and a still between frames,
     * while the render waits: zlib's fastest level on rows predicted from
     * their left neighbour is 3 times faster than FFmpeg's default (level
     * 6, no prediction) and the file a quarter smaller (a 4094x4094 sheet:
     * 0.75 s and 25.7 MB against 2.25 s and 33.2 MB). */
    enc->compression_level = 1;
    av_opt_set(enc->priv_data, "pred", "sub", 0);
    averr = avcodec_open2(enc, codec, NULL);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: cannot open the PNG encoder", target);
        goto end;
    }
    /* the encoder reads the pixels where they are */
    frame->format = AV_PIX_FMT_RGB24;
    frame->width = width;
    frame->height = height;
    frame->data[0] = (uint8_t *)rgb;
    frame->linesize[0] = linesize;
    averr = avcodec_send_frame(enc, frame);
    if (averr >= 0)
        averr = avcodec_send_frame(enc, NULL);
    if (averr >= 0)
        averr = avcodec_receive_packet(enc, pkt);
    if (averr < 0) {
        sdm_ff_error(err, averr, "%s: PNG encoding failed", target);
        goto end;
    }
    ret = write_packet(pb, pkt, comment, target, err);
end:
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    return ret;
}

int sdm_png_write(const char *path, const uint8_t *rgb, int width, int height, const char *comment, const char *target,
                  sdm_error *err)
{
    AVIOContext *pb = NULL;
    int averr = avio_open(&pb, path, AVIO_FLAG_WRITE), ret;

    if (averr < 0)
        return sdm_ff_error(err, averr, "cannot create %s (temporary file %s)", target, path);
    ret = sdm_png_encode(rgb, 3 * width, width, height, comment, pb, target, err);
    averr = avio_closep(&pb);
    if (!ret && averr < 0)
        ret = sdm_ff_error(err, averr, "%s: write failed", target);
    return ret;
}
