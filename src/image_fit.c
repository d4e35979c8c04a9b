#include "image_fit.h"

static const sdm_enum_entry image_fit_entries[] = { { "crop", SDM_FIT_CROP },
                                                    { "pad", SDM_FIT_PAD },
                                                    { "stretch", SDM_FIT_STRETCH } };
const sdm_enum_table sdm_image_fit_names = SDM_ENUM_TABLE(image_fit_entries);

SDM_ENUM_FUNCTIONS(sdm_image_fit, sdm_image_fit_names) /* sdm_image_fit_name, sdm_image_fit_from_str */
