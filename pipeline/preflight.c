#include "preflight.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "png.h"
#include "sampler.h"

sdm_sink_params sdm_preflight_sink_params(const sdm_recipe *r, const sdm_preflight *pf)
{
    sdm_sink_params kp = sdm_sink_default_params();

    kp.width = pf->width;
    kp.height = pf->height;
    kp.fps = r->fps;
    kp.total_frames = pf->plan.n_sequence;
    kp.gif_palette = r->gif_palette;
    kp.gif_dither = r->gif_dither;
    return kp;
}

/* The recipe, model.yaml and every file it names: what no output may be. */
static int render_inputs(const sdm_recipe *r, sdm_preflight *pf, sdm_input *in, int max)
{
    const sdm_bundle *b = &pf->bundle;
    const char *files[] = { b->text_encoder, b->unet, b->vae_decoder, b->vocab, b->merges, b->unet_aoti.path,
                            b->vae_aoti.path };
    int n = 0;

    if (r->path)
        in[n++] = (sdm_input){ r->path, "the recipe" };
    if (!pf->has_bundle)
        return n;
    snprintf(pf->model_yaml, sizeof pf->model_yaml, "%s/model.yaml", b->dir);
    in[n++] = (sdm_input){ pf->model_yaml, "the model's" };
    for (size_t i = 0; i < sizeof files / sizeof *files && n < max; i++)
        if (files[i][0])
            in[n++] = (sdm_input){ files[i], "the model file" };
    return n;
}

/* Size and sampler against the model: what the engine and the schedule
 * would refuse once loaded. */
static int model_limits(const sdm_recipe *r, const sdm_preflight *pf, sdm_error *err)
{
    const sdm_bundle *b = &pf->bundle;
    sdm_sampler_params sp = { r->sampler, r->steps, r->eta, r->karras };
    sdm_schedule s;
    sdm_error e = { 0 };

    if (pf->width % b->vae_scale || pf->height % b->vae_scale)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: width and height must be multiples of %d for this model "
                             "(%dx%d)", r->path, b->vae_scale, pf->width, pf->height);
    if (sdm_schedule_make(b, &sp, &s, &e))
        return sdm_error_set(err, e.code, "%s: %s (model %s)", r->path, e.msg, b->dir);
    sdm_schedule_free(&s);
    return 0;
}

/* clip_skip and embeddings against the text encoder: the layers it gives
 * (an older bundle gives its last only, and takes no embeddings). */
static int text_limits(const sdm_recipe *r, const sdm_bundle *b, sdm_error *err)
{
    static const char reexport[] = "export the bundle again with pipeline/export/export_sd.py (version 3 or later)";
    int layers = b->text_layers ? b->text_layers : 1;
    char dir[4096];
    struct stat st;

    for (int i = 0; i < r->n_keyframes; i++) {
        const sdm_keyframe *k = &r->keyframes[i];
        if (k->clip_skip <= layers)
            continue;
        if (b->text_layers)
            return sdm_error_set(err, SDM_EXIT_USAGE, "%s:%d:%d: clip_skip %d: the text encoder of %s has %d layers",
                                 r->path, k->mark.line, k->mark.col, k->clip_skip, b->dir, layers);
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s:%d:%d: clip_skip %d: the text encoder of %s gives its last "
                             "layer only; %s", r->path, k->mark.line, k->mark.col, k->clip_skip, b->dir, reexport);
    }
    if (!r->embeddings)
        return 0;
    if (!b->text_layers)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: 'embeddings': the text encoder of %s takes token ids, not "
                             "embeddings; %s", r->path, b->dir, reexport);
    if (sdm_recipe_embeddings_dir(r, dir, sizeof dir) || stat(dir, &st) || !S_ISDIR(st.st_mode))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: 'embeddings': no folder %s", r->path, r->embeddings);
    return 0;
}

int sdm_preflight_run(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *pf, sdm_error *err)
{
    sdm_input inputs[16];
    sdm_outputs_request q = { p->outputs, p->n_outputs, p->frames, inputs, 0, NULL };
    sdm_sink_params kp;

    memset(pf, 0, sizeof *pf);
    if (sdm_plan_make(r, &pf->plan, err))
        return -1;
    if (p->frames && sdm_plan_select(&pf->plan, p->frames, err))
        return -1;
    if (p->model_dir) {
        if (sdm_bundle_load(p->model_dir, &pf->bundle, err))
            return -1;
        pf->has_bundle = 1;
    }
    pf->width = r->width ? r->width : pf->has_bundle ? pf->bundle.width : 512;
    pf->height = r->height ? r->height : pf->has_bundle ? pf->bundle.height : 512;
    q.n_inputs = render_inputs(r, pf, inputs, (int)(sizeof inputs / sizeof *inputs));
    q.plan = &pf->plan;
    if (p->write_outputs && sdm_outputs_make(r, &q, &pf->outs, err))
        return -1;
    if (pf->has_bundle && (model_limits(r, pf, err) || text_limits(r, &pf->bundle, err)))
        return -1;
    kp = sdm_preflight_sink_params(r, pf);
    if (p->write_outputs && (pf->outs.n_videos || pf->outs.sheet) &&
        sdm_sink_check(pf->outs.videos, pf->outs.n_videos, pf->outs.sheet, &kp, err))
        return -1;
    if (p->write_outputs && pf->outs.n_stills && sdm_png_check(pf->outs.files[pf->outs.first_still].path, err))
        return -1;
    return 0;
}

void sdm_preflight_free(sdm_preflight *pf)
{
    sdm_plan_free(&pf->plan);
    sdm_outputs_free(&pf->outs);
}
