/* cli/cmd_inspect.c - `netdiff inspect PATH`: what a weights file or folder is. */
#include "cli/cli.h"
#include "weights/weights.h"

#include <stdio.h>
#include <string.h>

static void print_dtypes(const size_t *c)
{
    int first = 1;
    for (int d = 0; d < ND_WDT_COUNT; d++)
        if (c[d]) {
            printf("%s%s x%zu", first ? "" : ", ", nd_wdtype_name((nd_wdtype)d), c[d]);
            first = 0;
        }
}

static int inspect_lora(const char *path, int all)
{
    nd_err err = {{0}};
    nd_lora *l;
    nd_status st = nd_lora_open(path, &l, &err);
    if (st)
        return cli_fail("inspect", st, "%s", err.msg);
    const nd_lora_report *r = nd_lora_get_report(l);
    printf("format: %s\n", nd_wformat_name(r->format));
    printf("modules: %zu (unet %zu, text encoder %zu, conv/LoCon %zu)\n", r->n_modules, r->n_unet,
           r->n_text, r->n_conv);
    printf("rank: %d..%d\n", r->rank_min, r->rank_max);
    printf("targets:\n");
    size_t n = nd_lora_count(l);
    for (size_t i = 0; i < n && (all || i < 20); i++) {
        int rank, conv;
        float alpha;
        const char *t = nd_lora_target(l, i, &rank, &alpha, &conv);
        printf("  %s  rank %d alpha %g%s\n", t, rank, alpha, conv ? " conv" : "");
    }
    if (!all && n > 20)
        printf("  ... %zu more (--all lists every one)\n", n - 20);
    nd_lora_free(l);
    return 0;
}

static int run(int argc, char **argv)
{
    const char *path = NULL;
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: netdiff inspect [--all] PATH\n\n"
                   "Says what PATH is (diffusers folder, LDM single file, ControlNet, kohya or\n"
                   "PEFT LoRA), its components, dtypes, parameter counts, missing and\n"
                   "unexpected keys, and a LoRA's targets. --all lists every key problem and\n"
                   "every LoRA target. Exit 1 when a model has missing or mis-shaped keys.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--all"))
            all = 1;
        else if (argv[i][0] == '-')
            return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (path)
            return cli_usage_error("inspect", "one PATH only");
        else
            path = argv[i];
    }
    if (!path)
        return cli_usage_error("inspect", "missing PATH (see netdiff inspect --help)");
    nd_err err = {{0}};
    nd_wformat f = ND_WFMT_UNKNOWN;
    nd_status st = nd_wdetect(path, &f, &err);
    if (st)
        return cli_fail("inspect", st, "%s", err.msg);
    if (f == ND_WFMT_LORA_KOHYA || f == ND_WFMT_LORA_PEFT)
        return inspect_lora(path, all);
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.strict = 0; /* report problems instead of stopping at the first */
    nd_weights *w;
    if ((st = nd_weights_load(path, &p, &w, &err)))
        return cli_fail("inspect", st, "%s", err.msg);
    const nd_weights_report *r = nd_weights_get_report(w);
    printf("format: %s\n", nd_wformat_name(r->format));
    size_t bad = 0;
    for (int c = 0; c < ND_WC_COUNT; c++) {
        const nd_wcomponent_report *cr = &r->comp[c];
        if (!cr->present)
            continue;
        printf("%s: %zu tensors, %llu parameters, dtypes ", nd_wcomponent_name((nd_wcomponent)c),
               cr->n_tensors, (unsigned long long)cr->n_params);
        print_dtypes(cr->dtype_count);
        printf("; missing %zu, unexpected %zu, mis-shaped %zu\n", cr->n_missing, cr->n_unexpected,
               cr->n_mismatch);
        bad += cr->n_missing + cr->n_mismatch;
    }
    const nd_unet_config *u = nd_weights_unet(w), *cn = nd_weights_controlnet(w);
    for (int k = 0; k < 2; k++) {
        const nd_unet_config *x = k ? cn : u;
        if (!x)
            continue;
        printf("%s config (%s): in %d, channels", k ? "controlnet" : "unet",
               x->from_json ? "config.json" : "inferred from shapes", x->in_channels);
        for (int i = 0; i < x->n_blocks; i++)
            printf("%s%d", i ? "," : " ", x->block_out_channels[i]);
        printf(", layers/block %d, cross-attention %d, heads %d\n", x->layers_per_block,
               x->cross_attention_dim, x->num_heads);
    }
    const nd_vae_config *v = nd_weights_vae(w);
    if (v) {
        printf("vae config (%s): latent %d, channels", v->from_json ? "config.json" : "inferred",
               v->latent_channels);
        for (int i = 0; i < v->n_blocks; i++)
            printf("%s%d", i ? "," : " ", v->block_out_channels[i]);
        printf(", scaling %g\n", v->scaling_factor);
    }
    const nd_clip_config *c = nd_weights_clip(w);
    if (c)
        printf("text_encoder config (%s): vocab %d, width %d, layers %d, heads %d\n",
               c->from_json ? "config.json" : "inferred", c->vocab_size, c->hidden_size,
               c->num_layers, c->num_heads);
    if (nd_weights_tokenizer_dir(w))
        printf("tokenizer: %s\n", nd_weights_tokenizer_dir(w));
    printf("skipped: %zu (EMA copies, buffers, base weights not used)\n", r->n_skipped);
    size_t np = nd_weights_n_problems(w);
    for (size_t i = 0; i < np && (all || i < 20); i++)
        if (nd_weights_problem(w, i))
            printf("  %s\n", nd_weights_problem(w, i));
    if (!all && np > 20)
        printf("  ... %zu more (--all lists every one)\n", np - 20);
    nd_weights_free(w);
    return bad ? 1 : 0;
}

const nd_cmd nd_cmd_inspect = {"inspect", "what a weights file or folder holds", run};
