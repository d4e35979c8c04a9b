/* libFuzzer target: the starting-picture reader (encoders/image_in.h) on
 * any bytes: the header first, then (for a header it accepts, of a size
 * kept small here) the decode through libavcodec and libswscale into each
 * fit. Checks the header's promises: a refusal is a usage error with a
 * message naming the input, an accepted header has a size within the
 * limits, and a decode gives the frame size or an error with a message.
 * Built by `make fuzz` with -fsanitize=fuzzer,address,undefined (FFmpeg
 * itself is not instrumented). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "image_in.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sdm_log_set_level(SDM_LOG_COUNT); /* FFmpeg's complaints about broken inputs are expected */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdm_image_header h;
    sdm_error err = { 0 };
    uint8_t *rgb = NULL;

    if (sdm_image_header_read(data, size, "fuzz", &h, &err)) {
        if (err.code != SDM_EXIT_USAGE || strncmp(err.msg, "fuzz: ", 6))
            abort();
        return 0;
    }
    if (h.width < 1 || h.height < 1 || h.width > SDM_IMAGE_MAX_SIDE || h.height > SDM_IMAGE_MAX_SIDE ||
        (long long)h.width * h.height > SDM_IMAGE_MAX_PIXELS)
        abort();
    /* decoding allocates the picture: keep each run small */
    if ((long long)h.width * h.height > 512 * 512)
        return 0;
    for (int fit = 0; fit < SDM_FIT_COUNT; fit++) {
        memset(&err, 0, sizeof err);
        if (sdm_image_decode(data, size, "fuzz", 24 + 8 * fit, 16, (sdm_image_fit)fit, &rgb, &err)) {
            if (!err.msg[0] || rgb)
                abort();
            return 0;
        }
        if (!rgb)
            abort();
        free(rgb);
        rgb = NULL;
    }
    return 0;
}
