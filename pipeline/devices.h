/* One render on several devices of one host (--devices cpu,cpu or 0,1):
 * each device renders one shard of the plan on its own thread, with its
 * own engine, into a segment in a temporary folder beside the outputs, and
 * the segments are joined into the outputs (join.h), so the frames and the
 * files are those of a render on one device. The shards are fixed, equal
 * chunks: for devices alike. */
#ifndef SDM_DEVICES_H
#define SDM_DEVICES_H

#include "recipe.h"
#include "render.h"

#define SDM_MAX_DEVICES 64

/* As sdm_render, with p->device replaced by each of devs[0..n). 1: interrupted
 * (nothing written: the shards done are removed). */
int sdm_render_devices(const sdm_recipe *r, const sdm_render_params *p, const sdm_device *devs, int n,
                       sdm_render_stats *stats, sdm_error *err);

#endif
