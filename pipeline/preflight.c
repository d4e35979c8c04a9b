#include "preflight.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "embeddings.h"
#include "image_encoder.h"
#include "image_in.h"
#include "paths.h"
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
    const char *files[SDM_BUNDLE_MAX_FILES];
    int n = 0, n_files = sdm_bundle_files(b, files);

    if (r->path)
        in[n++] = (sdm_input){ r->path, "the recipe" };
    for (int k = 0; k < r->n_keyframes && n + 1 + SDM_BUNDLE_MAX_FILES < max; k++) /* room for the model's */
        if (r->keyframes[k].image)
            in[n++] = (sdm_input){ r->keyframes[k].image, "a starting picture" };
    if (!pf->has_bundle)
        return n;
    snprintf(pf->model_yaml, sizeof pf->model_yaml, "%s/model.yaml", b->dir);
    in[n++] = (sdm_input){ pf->model_yaml, "the model's" };
    for (int i = 0; i < n_files && n < max; i++)
        if (files[i][0])
            in[n++] = (sdm_input){ files[i], "the model file" };
    return n;
}

/* Size and sampler against the model: what the engine and the schedule
 * would refuse once loaded. */
static int model_limits(const sdm_recipe *r, const sdm_preflight *pf, sdm_error *err)
{
    const sdm_bundle *b = &pf->bundle;
    sdm_sampler_params sp = { r->sampler, r->steps, r->eta, r->karras, (sdm_spacing)r->timestep_spacing, 0, 0 };
    sdm_schedule s;
    sdm_error e = { 0 };

    if (pf->width % b->vae_scale || pf->height % b->vae_scale)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%s: width and height must be multiples of %d for this model "
                             "(%dx%d)",
                             r->path, b->vae_scale, pf->width, pf->height);
    if (sdm_schedule_make(b, &sp, &s, &e))
        return sdm_error_set(err, e.code, "%s: %s (model %s)", r->path, e.msg, b->dir);
    sdm_schedule_free(&s);
    return 0;
}

/* The embedding files a render reads: the model's own embeddings/ folder
 * (the engine reads it as it loads) and the recipe's. Read here as the
 * render reads them (the bundle's tokenizer, loaded once; a tensor per
 * text encoder), so a file it would refuse is refused before any model
 * loads, its message after whose folder it is. */
static int embeddings_limits(const sdm_recipe *r, const sdm_bundle *b, const char *reexport, sdm_error *err)
{
    const char *where = r->embeddings_where ? r->embeddings_where : r->path;
    char dirs[2][4096], what[2][4200];
    sdm_tokenizer *tok = NULL;
    sdm_error e2 = { 0 };
    struct stat st;
    int n = 0, rc = -1;

    snprintf(dirs[n], sizeof dirs[n], "%s/embeddings", b->dir);
    if (b->text_layers && !stat(dirs[n], &st) && S_ISDIR(st.st_mode))
        snprintf(what[n++], sizeof what[0], "the model's embeddings folder");
    if (r->embeddings) {
        if (!b->text_layers)
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "%s: 'embeddings': the text encoder of %s takes token ids, not embeddings; %s", where,
                                 b->dir, reexport);
        if (sdm_recipe_embeddings_dir(r, dirs[n], sizeof dirs[n]))
            return sdm_error_set(err, SDM_EXIT_USAGE, "%s: 'embeddings': path too long: %s", where, r->embeddings);
        if (stat(dirs[n], &st) || !S_ISDIR(st.st_mode)) /* the path as resolved beside the recipe */
            return sdm_error_set(err, SDM_EXIT_USAGE, "%s: 'embeddings': no folder %s", where, dirs[n]);
        snprintf(what[n++], sizeof what[0], "%s: 'embeddings'", where);
    }
    if (n && sdm_bundle_tokenizer(b, &tok, &e2)) {
        sdm_error_set(err, e2.code, "%s: %s", what[0], e2.msg);
        goto end;
    }
    for (int i = 0; i < n; i++) {
        sdm_embeddings e = { 0 };
        int bad = sdm_embeddings_load2(dirs[i], tok, b->hidden_size, b->text2.hidden_size, &e, &e2);
        sdm_embeddings_free(&e);
        if (bad) {
            sdm_error_set(err, e2.code, "%s: %s", what[i], e2.msg);
            goto end;
        }
    }
    rc = 0;
end:
    sdm_tokenizer_free(&tok);
    return rc;
}

/* clip_skip, size conditioning and embeddings against the text encoder:
 * the layers it gives (an older bundle gives its last only, and takes no
 * embeddings). */
static int text_limits(const sdm_recipe *r, const sdm_bundle *b, sdm_error *err)
{
    static const char reexport[] = "export the bundle again with pipeline/export/export_sd.py (version 3 or later)";
    int layers = b->text_layers ? b->text_layers - b->text_penultimate : 1;

    for (int i = 0; i < r->n_keyframes; i++) {
        const sdm_keyframe *k = &r->keyframes[i];
        if (k->clip_skip <= layers)
            continue;
        if (b->text_layers)
            return sdm_error_set(err, SDM_EXIT_USAGE, "%s:%d:%d: clip_skip %d: the text encoder of %s has %d layers",
                                 r->path, k->mark.line, k->mark.col, k->clip_skip, b->dir, layers);
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%s:%d:%d: clip_skip %d: the text encoder of %s gives its last "
                             "layer only; %s",
                             r->path, k->mark.line, k->mark.col, k->clip_skip, b->dir, reexport);
    }
    if (r->size_conditioning && !sdm_bundle_is_xl(b))
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%s: original_size, crops_coords_top_left and target_size are SDXL's size "
                             "conditioning; the model %s (family %s) takes none",
                             r->size_where ? r->size_where : r->path, b->dir, b->family);
    return embeddings_limits(r, b, reexport, err);
}

int sdm_preflight_replan(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *pf, sdm_error *err)
{
    sdm_plan plan;

    if (sdm_retime_place(&pf->retime, r, err) ||
        sdm_plan_make_retimed(r, (const double *const *)pf->retime.weights, &plan, err))
        return -1;
    if (p->frames && sdm_plan_select(&plan, p->frames, err)) {
        sdm_plan_free(&plan);
        return -1;
    }
    /* --shard: the shard's renders again (the segment keeps their range) */
    if (p->shard.count &&
        sdm_plan_keep_renders(&plan, pf->outs.segment.first, pf->outs.segment.first + pf->outs.segment.n, err)) {
        sdm_plan_free(&plan);
        return -1;
    }
    if (sdm_retime_missing(&pf->retime) < sdm_retime_wanted(r) && !(plan.retime_json = sdm_retime_json(&pf->retime))) {
        sdm_plan_free(&plan);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    sdm_plan_free(&pf->plan);
    pf->plan = plan;
    return 0;
}

/* The sidecar of the full render (without --frames) of these outputs, or
 * with own_outputs of the recipe's own: where the retiming's curves are
 * kept. *path NULL where there is none. */
static int full_sidecar(const sdm_recipe *r, const sdm_outputs_request *q, int own_outputs, char **path, sdm_error *err)
{
    sdm_outputs_request full = *q;
    sdm_outputs outs;
    int rc = -1;

    full.frames = NULL;
    if (own_outputs)
        full.n_outputs = 0;
    memset(&outs, 0, sizeof outs);
    if (sdm_outputs_make(r, &full, &outs, err))
        goto end;
    for (int i = 0; i < outs.n && !*path; i++)
        if (outs.files[i].kind == SDM_OUT_SIDECAR && !(*path = strdup(outs.files[i].path))) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
            goto end;
        }
    rc = 0;
end:
    sdm_outputs_free(&outs);
    return rc;
}

/* Transitions with `retime: even`, and their curves where the sidecar of
 * the full render with this model at this size has them. */
static int load_retime(const sdm_recipe *r, const sdm_render_params *p, const sdm_outputs_request *q, sdm_preflight *pf,
                       sdm_error *err)
{
    char model[32];
    int taken;

    if (!sdm_retime_wanted(r))
        return 0;
    if (pf->has_bundle)
        sdm_bundle_fingerprint(&pf->bundle, model, sizeof model);
    if (sdm_retime_init(&pf->retime, r, pf->has_bundle ? model : NULL, pf->width, pf->height, err))
        return -1;
    if (!pf->has_bundle || !p->write_outputs)
        return 0;
    /* the render of these outputs, else (-o elsewhere) the recipe's own */
    if (full_sidecar(r, q, 0, &pf->retime_sidecar, err))
        return -1;
    taken = sdm_retime_load(&pf->retime, pf->retime_sidecar);
    if (sdm_retime_missing(&pf->retime) && q->n_outputs > 0) {
        char *own = NULL;
        if (full_sidecar(r, q, 1, &own, err))
            return -1;
        if (sdm_retime_load(&pf->retime, own)) {
            taken = 1;
            free(pf->retime_sidecar);
            pf->retime_sidecar = own;
            own = NULL;
        }
        free(own);
    }
    return taken ? sdm_preflight_replan(r, p, pf, err) : 0;
}

/* The segment's frames file: -o's, else beside the recipe's first output,
 * out/x.mp4 → out/x.shard-2-of-3.rgb. */
static int segment_path(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *pf, sdm_error *err)
{
    const char *name = p->n_outputs > 0 ? p->outputs[0] : r->n_outputs > 0 ? r->outputs[0] : r->contact_sheet;
    const char *base, *ext;
    char tail[64];

    if (p->n_outputs > 1 || (p->n_outputs == 1 && (!(ext = sdm_path_ext(name)) || strcmp(ext, ".rgb"))))
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "--shard writes one segment: -o names its frames file, "
                             "NAME.rgb (its manifest goes to NAME.json)");
    if (p->n_outputs == 1) {
        snprintf(pf->segment, sizeof pf->segment, "%s", name);
        return 0;
    }
    if (!name)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: no output to name the segment after; give -o NAME.rgb", r->path);
    base = sdm_path_base(name);
    ext = sdm_path_ext(name);
    snprintf(tail, sizeof tail, ".shard-%d-of-%d.rgb", p->shard.index, p->shard.count);
    if (snprintf(pf->segment, sizeof pf->segment, "%.*s%s", (int)((ext ? ext : base + strlen(base)) - name), name,
                 tail) >= (int)sizeof pf->segment)
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s': no room for the shard in its name", name);
    return 0;
}

/* --shard I/N: the plan keeps the shard's renders, the segment is the output. */
static int shard_plan(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *pf, sdm_error *err)
{
    sdm_segment_info *s = &pf->outs.segment;
    int first, end;

    if (p->frames)
        return sdm_error_set(err, SDM_EXIT_USAGE, "--shard and --frames cannot be given together");
    if (p->shard.count > pf->plan.n_renders)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "--shard %d/%d: %s has only %d distinct renders; use at most "
                             "%d shards",
                             p->shard.index, p->shard.count, r->path, pf->plan.n_renders, pf->plan.n_renders);
    sdm_shard_range(&p->shard, pf->plan.n_renders, &first, &end);
    s->index = p->shard.index;
    s->count = p->shard.count;
    s->first = first;
    s->n = end - first;
    s->n_total = pf->plan.n_renders;
    if (sdm_plan_keep_renders(&pf->plan, first, end, err))
        return -1;
    return segment_path(r, p, pf, err);
}

/* What the manifest records; the outputs are made by now. */
static void segment_info(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *pf)
{
    sdm_segment_info *s = &pf->outs.segment;

    pf->outs.has_segment = 1;
    s->width = pf->width;
    s->height = pf->height;
    sdm_file_fingerprint(r->path, s->recipe_fp, sizeof s->recipe_fp);
    if (pf->has_bundle)
        sdm_bundle_fingerprint(&pf->bundle, s->model_fp, sizeof s->model_fp);
    snprintf(s->model_dir, sizeof s->model_dir, "%s", p->model_dir ? p->model_dir : "");
}

/* Every starting picture: there, readable, a PNG, JPEG or WebP, whole and
 * not too large (its header, no decoding); and a model that can encode it. */
static int check_images(const sdm_recipe *r, const sdm_preflight *pf, sdm_error *err)
{
    sdm_image_header h;
    sdm_error e = { 0 };

    for (int k = 0; k < (r->walk ? 1 : r->n_keyframes); k++) {
        const sdm_keyframe *kf = &r->keyframes[k];
        if (!kf->image || !sdm_image_check(kf->image, &h, &e))
            continue;
        if (r->walk)
            return sdm_error_set(err, e.code, "%s:%d:%d: walk: %s", r->path, kf->mark.line, kf->mark.col, e.msg);
        return sdm_error_set(err, e.code, "%s:%d:%d: keyframe %d: %s", r->path, kf->mark.line, kf->mark.col, k, e.msg);
    }
    if (pf->has_bundle && sdm_recipe_has_images(r) && sdm_image_encoder_check(&pf->bundle, &e))
        return sdm_error_set(err, e.code, "%s: %s", r->path, e.msg);
    return 0;
}

int sdm_preflight_run(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *pf, sdm_error *err)
{
    sdm_input inputs[64];
    const char *seg = NULL; /* a shard's one output: q points here until load_retime */
    sdm_outputs_request q = { p->outputs, p->n_outputs, p->frames, inputs, 0, NULL };
    sdm_sink_params kp;

    memset(pf, 0, sizeof *pf);
    if (sdm_plan_make(r, &pf->plan, err))
        return -1;
    if (p->frames && sdm_plan_select(&pf->plan, p->frames, err))
        return -1;
    if (p->shard.count && shard_plan(r, p, pf, err))
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
    if (p->shard.count) {
        sdm_segment_info info = pf->outs.segment;
        seg = pf->segment;
        q.outputs = &seg;
        q.n_outputs = 1;
        q.frames = NULL;
        if (p->write_outputs && sdm_outputs_make(r, &q, &pf->outs, err))
            return -1;
        pf->outs.segment = info;
        segment_info(r, p, pf);
    } else if (p->write_outputs && sdm_outputs_make(r, &q, &pf->outs, err)) {
        return -1;
    }
    if (pf->has_bundle && (model_limits(r, pf, err) || text_limits(r, &pf->bundle, err)))
        return -1;
    if (check_images(r, pf, err))
        return -1;
    if (load_retime(r, p, &q, pf, err))
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
    sdm_retime_free(&pf->retime);
    free(pf->retime_sidecar);
    pf->retime_sidecar = NULL;
}
