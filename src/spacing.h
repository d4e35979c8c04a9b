/* diffusers' timestep_spacing: how a scheduler spreads its steps over the
 * training timesteps (model.yaml's schedule.timestep_spacing, the recipe's
 * timestep_spacing). */
#ifndef SDM_SPACING_H
#define SDM_SPACING_H

#include "enum_table.h"

/* DEFAULT: the scheduler class's own. */
typedef enum {
    SDM_SPACING_DEFAULT,
    SDM_SPACING_LEADING,
    SDM_SPACING_TRAILING,
    SDM_SPACING_LINSPACE,
    SDM_SPACING_COUNT
} sdm_spacing;

const char *sdm_spacing_name(sdm_spacing s);
int sdm_spacing_from_str(const char *s, sdm_spacing *out);
/* leading, trailing, linspace (DEFAULT has no name). */
const sdm_enum_table *sdm_spacing_table(void);

#endif
