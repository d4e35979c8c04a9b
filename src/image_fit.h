/* How a starting picture is brought to the recipe's frame size: the
 * keyframe's (or walk's, or recipe's) `fit` key, read by the image reader
 * (encoders/image_in.h). */
#ifndef SDM_IMAGE_FIT_H
#define SDM_IMAGE_FIT_H

#include "enum_table.h"

typedef enum {
    SDM_FIT_CROP, /* scaled to cover the frame, the overflow cut off evenly (default) */
    SDM_FIT_PAD, /* scaled to fit inside the frame, the rest black */
    SDM_FIT_STRETCH, /* scaled to the frame, the aspect ratio not kept */
    SDM_FIT_COUNT
} sdm_image_fit;

extern const sdm_enum_table sdm_image_fit_names;

const char *sdm_image_fit_name(sdm_image_fit v);
int sdm_image_fit_from_str(const char *s, sdm_image_fit *out); /* 0, or -1 if unknown */

#endif
