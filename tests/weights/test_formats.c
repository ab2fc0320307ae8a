/* tests/weights/test_formats.c - every fixture format loads to the same values;
 * LoRA merges equal diffusers' fuse_lora; full-size manifests map completely. */
#include "tests/harness.h"
#include "tests/proc_status.h"
#include "weights/weights.h"

#include <jansson.h>
#include <unistd.h>

#define FX "tests/fixtures/weights/"

static nd_weights *load(const char *path, nd_wdtype dt, nd_err *e)
{
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.dtype = dt;
    nd_weights *w = NULL;
    nd_status st = nd_weights_load(path, &p, &w, e);
    CHECKF(st == ND_OK, "load %s: %s", path, e->msg);
    return w;
}

static float at_f32(const nd_wtensor *t, uint64_t i)
{
    float f;
    nd_wconvert(&f, ND_WDT_F32, (const char *)t->data + i * nd_wdtype_size(t->dtype), t->dtype, 1,
                NULL);
    return f;
}

/* same names, shapes and values; returns the number of tensors compared */
static size_t same_weights(const nd_weights *a, const nd_weights *b)
{
    CHECK_EQ_INT(nd_weights_count(a), nd_weights_count(b));
    size_t n = 0;
    for (size_t i = 0; i < nd_weights_count(a); i++) {
        const nd_wtensor *x = nd_weights_at(a, i), *y = nd_weights_get(b, x->name);
        CHECKF(y != NULL, "%s missing in the other", x->name);
        if (!y)
            continue;
        CHECKF(x->ndim == y->ndim && !memcmp(x->shape, y->shape, sizeof x->shape), "%s shape", x->name);
        CHECKF(x->dtype == y->dtype && !memcmp(x->data, y->data, x->numel * nd_wdtype_size(x->dtype)),
               "%s values differ", x->name);
        n++;
    }
    return n;
}

static void test_ldm_equals_diffusers(void)
{
    nd_err e = {{0}};
    nd_weights *a = load(FX "tiny_diffusers", ND_WDT_F32, &e), *b = load(FX "tiny_ldm.safetensors", ND_WDT_F32, &e);
    if (!a || !b)
        goto out;
    CHECK_EQ_INT(same_weights(a, b), 208 + 120 + 36);
    CHECK_EQ_INT(nd_weights_get_report(b)->n_skipped, 2); /* position_ids, model_ema.decay */
    CHECK_EQ_INT(nd_weights_get_report(b)->format, ND_WFMT_LDM);
    CHECK_EQ_INT(nd_weights_get_report(a)->format, ND_WFMT_DIFFUSERS);
    /* spot checks of the mapping (docs/sd15.md examples, tiny shapes) */
    const nd_wtensor *t = nd_weights_get(b, "unet.down_blocks.0.resnets.0.conv1.weight");
    CHECK(t && !strcmp(t->src_name, "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"));
    t = nd_weights_get(b, "vae.decoder.mid_block.attentions.0.to_q.weight");
    CHECK(t && t->ndim == 2 && !strcmp(t->src_name, "first_stage_model.decoder.mid.attn_1.q.weight"));
    t = nd_weights_get(b, "unet.up_blocks.0.upsamplers.0.conv.weight");
    CHECK(t && !strcmp(t->src_name, "model.diffusion_model.output_blocks.1.1.conv.weight"));
    t = nd_weights_get(b, "text_encoder.text_model.encoder.layers.1.mlp.fc2.weight");
    CHECK(t && t->shape[0] == 64 && t->shape[1] == 128);
    /* configs: from JSON vs inferred agree on what shapes can tell */
    const nd_unet_config *u1 = nd_weights_unet(a), *u2 = nd_weights_unet(b);
    CHECK(u1 && u2 && u1->from_json && !u2->from_json);
    if (u1 && u2) {
        CHECK(u1->n_blocks == u2->n_blocks && u1->layers_per_block == u2->layers_per_block);
        CHECK(!memcmp(u1->block_out_channels, u2->block_out_channels, sizeof u1->block_out_channels));
        CHECK(!memcmp(u1->down_attn, u2->down_attn, sizeof u1->down_attn));
        CHECK(!memcmp(u1->up_attn, u2->up_attn, sizeof u1->up_attn));
        CHECK(u1->cross_attention_dim == u2->cross_attention_dim && u1->num_heads == u2->num_heads);
    }
    CHECK(nd_weights_clip(a)->num_heads == nd_weights_clip(b)->num_heads);
    CHECK(nd_weights_tokenizer_dir(a) != NULL);
out:
    nd_weights_free(a);
    nd_weights_free(b);
}

static void test_f16_path_zero_copy(void)
{
    nd_err e = {{0}};
    nd_weights *a = load(FX "tiny_ldm.safetensors", ND_WDT_F16, &e),
               *b = load(FX "tiny_diffusers", ND_WDT_F16, &e),
               *c = load(FX "tiny_diffusers", ND_WDT_F32, &e);
    if (a && b && c) {
        CHECK_EQ_INT(same_weights(a, b), 364);
        size_t views = 0;
        for (size_t i = 0; i < nd_weights_count(a); i++)
            views += !nd_weights_at(a, i)->owned;
        CHECK_EQ_INT(views, 364); /* f16 file, f16 wanted: all mmap views */
        /* f32 from an f16 file is a converted copy */
        const nd_wtensor *t = nd_weights_get(c, "unet.conv_in.weight");
        CHECK(t && t->owned && t->src_dtype == ND_WDT_F16 && t->dtype == ND_WDT_F32);
        t = nd_weights_get(c, "text_encoder.text_model.final_layer_norm.weight");
        CHECK(t && !t->owned && t->src_dtype == ND_WDT_F32);
    }
    nd_weights_free(a);
    nd_weights_free(b);
    nd_weights_free(c);
}

static void test_controlnet_layouts(void)
{
    nd_err e = {{0}};
    nd_weights *a = load(FX "tiny_controlnet_diffusers", ND_WDT_F32, &e),
               *b = load(FX "tiny_controlnet_ldm.safetensors", ND_WDT_F32, &e);
    if (a && b) {
        CHECK_EQ_INT(same_weights(a, b), 128);
        CHECK(nd_weights_get(b, "controlnet.controlnet_cond_embedding.conv_out.weight") != NULL);
        CHECK(nd_weights_get(b, "controlnet.controlnet_mid_block.weight") != NULL);
        CHECK(nd_weights_controlnet(b) && nd_weights_controlnet(b)->n_cond_embed == 4);
    }
    nd_weights_free(a);
    nd_weights_free(b);
    /* a base model plus a ControlNet */
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.controlnet = FX "tiny_controlnet_ldm.safetensors";
    nd_weights *w = NULL;
    CHECK_OK(nd_weights_load(FX "tiny_diffusers", &p, &w, &e), &e);
    if (w) {
        CHECK_EQ_INT(nd_weights_count(w), 364 + 128);
        CHECK(nd_weights_get_report(w)->comp[ND_WC_CONTROLNET].n_tensors == 128);
    }
    nd_weights_free(w);
}

/* every tensor of EXPECT equals w's within a relative tolerance */
static void check_merged(const nd_weights *w, const nd_weights *base, const char *expect,
                         const char *expect2, size_t want)
{
    nd_err e = {{0}};
    nd_st_file *f = NULL, *g = NULL;
    CHECK_OK(nd_st_open(expect, &f, &e), &e);
    if (expect2)
        CHECK_OK(nd_st_open(expect2, &g, &e), &e);
    if (!f || (expect2 && !g))
        goto out;
    size_t n = 0;
    double worst = 0;
    /* union of targets: expected = base + sum of each LoRA's delta */
    for (size_t i = 0; i < nd_weights_count(w); i++) {
        const nd_wtensor *t = nd_weights_at(w, i), *b0 = nd_weights_get(base, t->name);
        const nd_st_tensor *x = nd_st_find(f, t->name), *y = g ? nd_st_find(g, t->name) : NULL;
        if (!x && !y) {
            CHECKF(!memcmp(t->data, b0->data, t->numel * 4), "%s changed but no LoRA targets it", t->name);
            continue;
        }
        n++;
        for (uint64_t k = 0; k < t->numel; k++) {
            double base_v = at_f32(b0, k), want_v = base_v;
            if (x)
                want_v += ((const float *)x->data)[k] - base_v;
            if (y)
                want_v += ((const float *)y->data)[k] - base_v;
            /* float rounding of a different summation order, not more */
            double got = at_f32(t, k), err = fabs(got - want_v) / (1 + fabs(want_v));
            if (err > worst)
                worst = err;
        }
    }
    CHECK_EQ_INT(n, want);
    CHECKF(worst < 1e-5, "worst relative error %g", worst);
out:
    nd_st_close(f);
    nd_st_close(g);
}

static void test_lora_merges(void)
{
    nd_err e = {{0}};
    nd_weights *base = load(FX "tiny_diffusers", ND_WDT_F32, &e);
    nd_weights *wk = load(FX "tiny_diffusers", ND_WDT_F32, &e);
    nd_weights *wl = load(FX "tiny_ldm.safetensors", ND_WDT_F32, &e);
    if (!base || !wk || !wl)
        goto out;
    nd_lora_report r;
    CHECK_OK(nd_weights_merge_lora(wk, FX "lora_kohya.safetensors", 0.8f, &r, &e), &e);
    CHECK_EQ_INT(r.n_applied, 61);
    CHECK_EQ_INT(r.n_conv, 1);
    check_merged(wk, base, FX "merged_kohya.safetensors", NULL, 61);
    /* the same LoRA on the LDM-loaded model */
    CHECK_OK(nd_weights_merge_lora(wl, FX "lora_kohya.safetensors", 0.8f, &r, &e), &e);
    check_merged(wl, base, FX "merged_kohya.safetensors", NULL, 61);
    /* PEFT alone, through the params */
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.loras[0].path = FX "lora_peft.safetensors";
    p.loras[0].scale = 0.5f;
    p.n_loras = 1;
    nd_weights *wp = NULL;
    CHECK_OK(nd_weights_load(FX "tiny_diffusers", &p, &wp, &e), &e);
    if (wp)
        check_merged(wp, base, FX "merged_peft.safetensors", NULL, 53);
    nd_weights_free(wp);
    /* both at once */
    p.loras[1].path = FX "lora_kohya.safetensors";
    p.loras[1].scale = 0.8f;
    p.n_loras = 2;
    wp = NULL;
    CHECK_OK(nd_weights_load(FX "tiny_ldm.safetensors", &p, &wp, &e), &e);
    if (wp)
        check_merged(wp, base, FX "merged_peft.safetensors", FX "merged_kohya.safetensors", 61);
    nd_weights_free(wp);
    /* a LoRA is not a model; a model is not a LoRA */
    wp = NULL;
    CHECK(nd_weights_load(FX "lora_kohya.safetensors", NULL, &wp, &e) == ND_EINVAL);
    CHECK(nd_weights_merge_lora(wk, FX "tiny_ldm.safetensors", 1, NULL, &e) == ND_EFORMAT);
    /* a LoRA for another model fails before changing anything */
    nd_weights *cn = load(FX "tiny_controlnet_diffusers", ND_WDT_F32, &e);
    if (cn) {
        CHECK(nd_weights_merge_lora(cn, FX "lora_kohya.safetensors", 1, NULL, &e) == ND_ENOTFOUND);
        CHECKF(strstr(e.msg, "matches no tensor") != NULL, "%s", e.msg);
    }
    nd_weights_free(cn);
out:
    nd_weights_free(base);
    nd_weights_free(wk);
    nd_weights_free(wl);
}

/* a shape-only safetensors file (sparse, zero data) from a manifest */
static int manifest_file(const char *manifest, const char *out)
{
    json_error_t je;
    json_t *j = json_load_file(manifest, 0, &je);
    CHECKF(j != NULL, "%s: %s", manifest, je.text);
    if (!j)
        return -1;
    nd_st_writer *w = nd_st_writer_new();
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(json_object_get(j, "tensors"), k, v) {
        int64_t sh[8];
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(v, "shape"), i, x) sh[i] = json_integer_value(x);
        const char *dt = json_string_value(json_object_get(v, "dtype"));
        nd_wdtype d = !strcmp(dt, "F16") ? ND_WDT_F16 : ND_WDT_F32;
        if (nd_st_writer_add(w, k, d, (int)json_array_size(json_object_get(v, "shape")), sh, NULL, NULL))
            rc = -1;
    }
    nd_err e = {{0}};
    if (!rc && nd_st_writer_save(w, out, &e))
        rc = -1;
    nd_st_writer_free(w);
    json_decref(j);
    return rc;
}

/* An f16 file loaded as f32 is all converted copies: the file's pages are
 * dropped as it goes, so the RSS does not hold the file beside its copy (2 GB
 * at SD1.5 size). Measured on the tiny fixture (2.3 MB of real data; a sparse
 * file's holes would map the zero page and prove nothing), loaded once first
 * so the loader's own code pages are already in. */
static void test_converted_file_released(void)
{
    nd_err e = {{0}};
    nd_weights_free(load(FX "tiny_ldm.safetensors", ND_WDT_F32, &e));
    long file0 = nd_proc_status_kb("RssFile");
    nd_weights *w = load(FX "tiny_ldm.safetensors", ND_WDT_F32, &e);
    long file1 = nd_proc_status_kb("RssFile");
    CHECK(w && nd_weights_count(w) == 364 && nd_weights_at(w, 0)->owned);
    if (file0 >= 0 && file1 >= 0)
        CHECKF(file1 - file0 < 512, "%ld kB of the 2.3 MB file still resident after the f32 load",
               file1 - file0);
    nd_weights_free(w);
}

static void test_full_size_manifests(void)
{
    nd_err e = {{0}};
    char sd[] = "/tmp/nd_sd15_XXXXXX", cl[] = "/tmp/nd_cnl_XXXXXX", cd[] = "/tmp/nd_cnd_XXXXXX",
         lo[] = "/tmp/nd_lora_XXXXXX";
    close(mkstemp(sd)), close(mkstemp(cl)), close(mkstemp(cd)), close(mkstemp(lo));
    CHECK(!manifest_file(FX "manifests/sd15_ldm.json", sd));
    CHECK(!manifest_file(FX "manifests/controlnet_canny_ldm.json", cl));
    CHECK(!manifest_file(FX "manifests/controlnet_canny_diffusers.json", cd));
    CHECK(!manifest_file(FX "manifests/lora_kohya_sd15_r32.json", lo));
    nd_weights *w = load(sd, ND_WDT_F32, &e); /* strict: any missing/unexpected/mis-shaped fails */
    if (w) {
        const nd_weights_report *r = nd_weights_get_report(w);
        CHECK_EQ_INT(r->comp[ND_WC_UNET].n_tensors, 686);
        CHECK_EQ_INT(r->comp[ND_WC_UNET].n_params, 859520964);
        CHECK_EQ_INT(r->comp[ND_WC_VAE].n_tensors, 248);
        CHECK_EQ_INT(r->comp[ND_WC_VAE].n_params, 83653863);
        CHECK_EQ_INT(r->comp[ND_WC_TEXT].n_tensors, 196);
        CHECK_EQ_INT(r->comp[ND_WC_TEXT].n_params, 123060480);
        CHECK_EQ_INT(nd_weights_n_problems(w), 0);
        const nd_unet_config *u = nd_weights_unet(w);
        CHECK(u && u->n_blocks == 4 && u->block_out_channels[3] == 1280 && u->layers_per_block == 2 &&
              u->cross_attention_dim == 768 && u->down_attn[2] && !u->down_attn[3] && !u->up_attn[0]);
        CHECK(nd_weights_clip(w) && nd_weights_clip(w)->num_heads == 12);
        nd_lora_report lr;
        CHECK_OK(nd_weights_check_lora(w, lo, &lr, &e), &e);
        CHECK_EQ_INT(lr.n_unet, 192);
        CHECK_EQ_INT(lr.n_text, 72);
        CHECK_EQ_INT(lr.rank_max, 32);
    }
    nd_weights_free(w);
    /* the UNet alone (a UNet-only tool): VAE and text encoder left out */
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.dtype = ND_WDT_F16;
    p.skip = 1u << ND_WC_VAE | 1u << ND_WC_TEXT;
    w = NULL;
    CHECK_OK(nd_weights_load(sd, &p, &w, &e), &e);
    if (w) {
        const nd_weights_report *r = nd_weights_get_report(w);
        CHECK_EQ_INT(nd_weights_count(w), 686);
        CHECK(!nd_weights_vae(w) && !nd_weights_clip(w) && nd_weights_unet(w));
        CHECK(!r->comp[ND_WC_VAE].present && !r->comp[ND_WC_TEXT].present);
        CHECK_EQ_INT(r->n_skipped, 248 + 196);
        CHECK(nd_weights_get(w, "vae.decoder.conv_in.weight") == NULL);
    }
    nd_weights_free(w);
    for (int k = 0; k < 2; k++) {
        w = load(k ? cd : cl, ND_WDT_F32, &e);
        if (w) {
            const nd_weights_report *r = nd_weights_get_report(w);
            CHECK_EQ_INT(r->comp[ND_WC_CONTROLNET].n_tensors, 340);
            CHECK_EQ_INT(r->comp[ND_WC_CONTROLNET].n_params, 361279120);
            CHECK_EQ_INT(nd_weights_n_problems(w), 0);
        }
        nd_weights_free(w);
    }
    unlink(sd), unlink(cl), unlink(cd), unlink(lo);
}

static void test_refusals(void)
{
    nd_err e = {{0}};
    char path[] = "/tmp/nd_pickle_XXXXXX";
    int fd = mkstemp(path);
    CHECK(write(fd, "\x80\x02}q\x00.", 6) == 6);
    close(fd);
    nd_weights *w = NULL;
    CHECK(nd_weights_load(path, NULL, &w, &e) == ND_EUNSUPPORTED);
    CHECKF(strstr(e.msg, "pickle") && strstr(e.msg, "save_file"), "%s", e.msg);
    unlink(path);
    CHECK(nd_weights_load("/nonexistent/model", NULL, &w, &e) == ND_ENOTFOUND);
    /* strict vs lenient on a model with a tensor missing */
    char sd[] = "/tmp/nd_miss_XXXXXX";
    close(mkstemp(sd));
    nd_st_file *f = NULL;
    CHECK_OK(nd_st_open(FX "tiny_ldm.safetensors", &f, &e), &e);
    if (f) {
        nd_st_writer *wr = nd_st_writer_new();
        for (size_t i = 0; i < nd_st_count(f); i++) {
            const nd_st_tensor *t = nd_st_at(f, i);
            if (strcmp(t->name, "model.diffusion_model.out.2.bias"))
                nd_st_writer_add(wr, t->name, t->dtype, t->ndim, t->shape, t->data, NULL);
        }
        nd_st_writer_add(wr, "model.diffusion_model.extra.weight", ND_WDT_F16, 1, (int64_t[]){1},
                         nd_st_at(f, 0)->data, NULL);
        CHECK_OK(nd_st_writer_save(wr, sd, &e), &e);
        nd_st_writer_free(wr);
        nd_st_close(f);
        CHECK(nd_weights_load(sd, NULL, &w, &e) == ND_EFORMAT);
        CHECKF(strstr(e.msg, "1 missing, 1 unexpected") && strstr(e.msg, "unet.conv_out.bias"), "%s", e.msg);
        nd_weights_params p;
        nd_weights_params_init(&p);
        p.strict = 0;
        CHECK_OK(nd_weights_load(sd, &p, &w, &e), &e);
        if (w) {
            CHECK_EQ_INT(nd_weights_n_problems(w), 2);
            CHECK(nd_weights_get_report(w)->comp[ND_WC_UNET].n_missing == 1);
            nd_weights_free(w);
        }
    }
    unlink(sd);
}

static void test_config_json(void)
{
    nd_err e = {{0}};
    nd_unet_config u;
    const char *ok = "{\"_class_name\":\"UNet2DConditionModel\",\"block_out_channels\":[32,64],"
                     "\"down_block_types\":[\"CrossAttnDownBlock2D\",\"DownBlock2D\"],"
                     "\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\"],\"layers_per_block\":1,"
                     "\"attention_head_dim\":8,\"cross_attention_dim\":64}";
    CHECK_OK(nd_unet_config_parse(ok, strlen(ok), &u, &e), &e);
    CHECK(u.n_blocks == 2 && u.down_attn[0] && !u.down_attn[1] && u.up_attn[1] && u.num_heads == 8);
    const char *bad[] = {"[1]", "{\"block_out_channels\":\"x\"}", "{\"layers_per_block\":-3}",
                         "{\"block_out_channels\":[32,64],\"down_block_types\":[\"A\"]}",
                         "{\"transformer_layers_per_block\":2}", "{\"a\":", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < ND_ARRAY_LEN(bad); i++)
        CHECKF(nd_unet_config_parse(bad[i], strlen(bad[i]), &u, &e) != ND_OK, "accepted %s", bad[i]);
    nd_clip_config c;
    const char *t5 = "{\"architectures\":[\"CLIPTextModel\"],\"hidden_size\":768,\"num_attention_heads\":12,"
                     "\"intermediate_size\":3072,\"num_hidden_layers\":12,\"vocab_size\":49408}";
    CHECK_OK(nd_clip_config_parse(t5, strlen(t5), &c, &e), &e);
    CHECK(c.num_heads == 12 && c.quick_gelu);
    const char *badc = "{\"hidden_size\":100,\"num_attention_heads\":12}";
    CHECK(nd_clip_config_parse(badc, strlen(badc), &c, &e) == ND_EFORMAT);
    nd_vae_config v;
    CHECK_OK(nd_vae_config_parse("{}", 2, &v, &e), &e);
    CHECK(v.n_blocks == 4 && v.block_out_channels[3] == 512 && fabsf(v.scaling_factor - 0.18215f) < 1e-7f);
}

ND_TEST_MAIN(ND_TEST(test_ldm_equals_diffusers), ND_TEST(test_f16_path_zero_copy),
             ND_TEST(test_controlnet_layouts), ND_TEST(test_lora_merges),
             ND_TEST(test_full_size_manifests), ND_TEST(test_converted_file_released),
             ND_TEST(test_refusals), ND_TEST(test_config_json))
