#include "spacing.h"

static const sdm_enum_entry spacing_entries[] = { { "leading", SDM_SPACING_LEADING },
                                                  { "trailing", SDM_SPACING_TRAILING },
                                                  { "linspace", SDM_SPACING_LINSPACE } };
static const sdm_enum_table spacing_names = SDM_ENUM_TABLE(spacing_entries);

SDM_ENUM_FUNCTIONS(sdm_spacing, spacing_names) /* sdm_spacing_name, sdm_spacing_from_str */

const sdm_enum_table *sdm_spacing_table(void)
{
    return &spacing_names;
}
