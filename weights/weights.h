/* weights/weights.h - loading Stable Diffusion 1.5 weights from the public
 * formats, strictly: safetensors (mmap), diffusers folders, LDM single files,
 * ControlNets (original and diffusers layouts), kohya and PEFT LoRAs.
 *
 * Canonical tensor names (what the model code asks for) are diffusers names
 * with a component prefix:
 *   unet.<diffusers UNet2DConditionModel key>     unet.down_blocks.0.resnets.0.conv1.weight
 *   vae.<diffusers AutoencoderKL key>             vae.decoder.mid_block.attentions.0.to_q.weight  [C,C]
 *   text_encoder.<HF CLIPTextModel key, always with "text_model.">
 *                                                 text_encoder.text_model.encoder.layers.0.mlp.fc1.weight
 *   controlnet.<diffusers ControlNetModel key>    controlnet.controlnet_down_blocks.0.weight
 * Shapes are diffusers shapes (the VAE mid attention is [C,C] even when the
 * file holds LDM's [C,C,1,1] 1x1 convs). Layout is PyTorch: row-major,
 * conv [out,in,kh,kw], linear [out,in].
 *
 * Ownership and lifetime
 *   - nd_st_file: owns its mmap; every nd_st_tensor.data points into it and
 *     is valid until nd_st_close(). Nothing is read until it is touched.
 *   - nd_weights: owns its open files and any converted buffers; every
 *     nd_wtensor.data is valid until nd_weights_free(). Tensors already in the
 *     requested dtype and suitably aligned are zero-copy views of the mmap
 *     (read-only memory: never write through .data). Converted, squeezed-free
 *     or LoRA-merged tensors live in malloc'd buffers owned by nd_weights.
 *   - Strings returned by any function here belong to the object they came from.
 *   - No function prints; errors come back as nd_status + one line in nd_err.
 * Thread safety: distinct objects may be used from distinct threads; one object
 * is not safe to mutate (load / merge) while another thread reads it. */
#ifndef ND_WEIGHTS_H
#define ND_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/nd.h"

/* ---- dtypes --------------------------------------------------------------- */
typedef enum {
    ND_WDT_F32 = 0,
    ND_WDT_F16,
    ND_WDT_BF16,
    ND_WDT_F64,
    ND_WDT_F8_E5M2,
    ND_WDT_F8_E4M3,
    ND_WDT_I64,
    ND_WDT_I32,
    ND_WDT_I16,
    ND_WDT_I8,
    ND_WDT_U64,
    ND_WDT_U32,
    ND_WDT_U16,
    ND_WDT_U8,
    ND_WDT_BOOL,
    ND_WDT_COUNT
} nd_wdtype;

const char *nd_wdtype_name(nd_wdtype dt); /* safetensors spelling: "F32" ... */
size_t nd_wdtype_size(nd_wdtype dt);      /* bytes per element            */

/* Converts n elements between F32, F16 and BF16 (round to nearest even). */
nd_status nd_wconvert(void *dst, nd_wdtype dst_dt, const void *src, nd_wdtype src_dt,
                      size_t n, nd_err *err);

/* ---- safetensors ---------------------------------------------------------- */
#define ND_W_MAXDIM 8
#define ND_ST_MAX_HEADER 100000000u /* same cap as the reference parser */

typedef struct {
    const char *name;
    nd_wdtype dtype;
    int ndim;                      /* 0 for a scalar                      */
    int64_t shape[ND_W_MAXDIM];
    uint64_t numel;
    uint64_t nbytes;               /* = numel * nd_wdtype_size(dtype)     */
    uint64_t offset;               /* from the start of the data buffer   */
    const void *data;              /* into the mapping; lazy (page faults) */
} nd_st_tensor;

typedef struct nd_st_file nd_st_file;

/* Maps PATH read-only and validates the whole header strictly: length, UTF-8
 * JSON with no duplicate keys, known dtypes, shapes, offsets contiguous from
 * 0 with no gaps or overlaps and the buffer ending exactly at the file's end. */
nd_status nd_st_open(const char *path, nd_st_file **out, nd_err *err);
/* The same over a caller's buffer (not copied; must outlive the nd_st_file). */
nd_status nd_st_open_mem(const void *buf, size_t len, nd_st_file **out, nd_err *err);
void nd_st_close(nd_st_file *f);
size_t nd_st_count(const nd_st_file *f);
const nd_st_tensor *nd_st_at(const nd_st_file *f, size_t i); /* header order sorted by name */
const nd_st_tensor *nd_st_find(const nd_st_file *f, const char *name);
/* __metadata__ value for KEY, or NULL. */
const char *nd_st_meta(const nd_st_file *f, const char *key);
size_t nd_st_meta_count(const nd_st_file *f);
const char *nd_st_meta_key(const nd_st_file *f, size_t i);
uint64_t nd_st_file_size(const nd_st_file *f);

/* Writer: collects tensors (data is referenced, not copied: it must stay valid
 * until nd_st_writer_save returns; NULL data writes zeros as a sparse hole,
 * for shape-only test files), then writes a standard file (header padded
 * with spaces to 8 bytes, tensors sorted by alignment then name). */
typedef struct nd_st_writer nd_st_writer;
nd_st_writer *nd_st_writer_new(void);
nd_status nd_st_writer_add(nd_st_writer *w, const char *name, nd_wdtype dt, int ndim,
                           const int64_t *shape, const void *data, nd_err *err);
nd_status nd_st_writer_meta(nd_st_writer *w, const char *key, const char *value, nd_err *err);
nd_status nd_st_writer_save(nd_st_writer *w, const char *path, nd_err *err);
void nd_st_writer_free(nd_st_writer *w);

/* ---- formats -------------------------------------------------------------- */
typedef enum {
    ND_WFMT_UNKNOWN = 0,
    ND_WFMT_DIFFUSERS,            /* folder with model_index.json                */
    ND_WFMT_DIFFUSERS_COMPONENT,  /* one folder: config.json + safetensors       */
    ND_WFMT_LDM,                  /* single file: model.diffusion_model. ...     */
    ND_WFMT_CONTROLNET_LDM,       /* lllyasviel single file (opt. control_model.) */
    ND_WFMT_CONTROLNET_DIFFUSERS, /* ControlNetModel folder or its safetensors   */
    ND_WFMT_LORA_KOHYA,           /* lora_unet_* / lora_te_*                      */
    ND_WFMT_LORA_PEFT,            /* unet.*.lora_A.weight / text_encoder.*        */
    ND_WFMT_PICKLE                /* .ckpt/.bin/.pt: refused                     */
} nd_wformat;
const char *nd_wformat_name(nd_wformat f);
/* Looks at PATH (folder or file) and says what it is. Pickles are detected by
 * name and by their magic bytes; detecting one is not an error here. */
nd_status nd_wdetect(const char *path, nd_wformat *out, nd_err *err);

/* ---- configurations (from config.json, else inferred from shapes) ---------- */
#define ND_W_MAXBLOCKS 8
typedef struct {
    int present, from_json;       /* from_json 0: inferred from tensor shapes */
    int in_channels, out_channels, n_blocks, layers_per_block;
    int block_out_channels[ND_W_MAXBLOCKS];
    int down_attn[ND_W_MAXBLOCKS], up_attn[ND_W_MAXBLOCKS]; /* CrossAttn* blocks */
    int cross_attention_dim, num_heads; /* heads: diffusers "attention_head_dim" */
    int norm_num_groups, use_linear_projection, sample_size;
    float norm_eps;
    /* ControlNet only */
    int cond_channels, n_cond_embed;
    int cond_embed_channels[ND_W_MAXBLOCKS];
} nd_unet_config;                 /* also used for the ControlNet             */

typedef struct {
    int present, from_json;
    int in_channels, out_channels, latent_channels, n_blocks, layers_per_block;
    int block_out_channels[ND_W_MAXBLOCKS];
    int norm_num_groups, sample_size;
    float scaling_factor;
} nd_vae_config;

typedef struct {
    int present, from_json;
    int vocab_size, hidden_size, intermediate_size, num_layers, num_heads;
    int max_position_embeddings;
    float layer_norm_eps;
    int quick_gelu; /* hidden_act "quick_gelu" (SD1.5) vs "gelu" */
} nd_clip_config;

/* ---- loaded weights ------------------------------------------------------- */
typedef struct {
    const char *name;      /* canonical name (see top of file)              */
    const char *src_name;  /* key in the file it came from                  */
    nd_wdtype dtype;       /* the requested dtype (F32 or F16)              */
    nd_wdtype src_dtype;   /* dtype in the file                             */
    int ndim;
    int64_t shape[ND_W_MAXDIM];
    uint64_t numel;
    const void *data;      /* see ownership notes                           */
    int owned;             /* 1: converted/merged copy; 0: view of the mmap */
} nd_wtensor;

typedef enum { ND_WC_UNET = 0, ND_WC_VAE, ND_WC_TEXT, ND_WC_CONTROLNET, ND_WC_COUNT } nd_wcomponent;
const char *nd_wcomponent_name(nd_wcomponent c); /* "unet", "vae", ... */

#define ND_W_MAX_LORAS 16
typedef struct {
    nd_wdtype dtype;        /* F32 (CPU, default) or F16 (GPU upload)        */
    int strict;             /* 1 (default): a missing or mis-shaped key fails */
    const char *controlnet; /* optional ControlNet path, either layout       */
    struct { const char *path; float scale; } loras[ND_W_MAX_LORAS];
    int n_loras;            /* merged in order at load                       */
    unsigned skip;          /* 1u << ND_WC_VAE | 1u << ND_WC_TEXT: leave those
                               out (a UNet-only tool); their tensors count as
                               skipped. Other bits are ignored.              */
} nd_weights_params;
void nd_weights_params_init(nd_weights_params *p);

typedef struct {
    int present;
    size_t n_tensors, n_missing, n_unexpected, n_mismatch;
    uint64_t n_params;
    size_t dtype_count[ND_WDT_COUNT]; /* by the file's dtype                */
} nd_wcomponent_report;

typedef struct {
    nd_wformat format;
    size_t n_skipped;        /* EMA copies, DDPM buffers, position_ids ...  */
    nd_wcomponent_report comp[ND_WC_COUNT];
} nd_weights_report;

typedef struct nd_weights nd_weights;

/* Loads a model (diffusers folder, LDM single file, or a lone component /
 * ControlNet) plus p->controlnet and p->loras. p may be NULL (defaults). */
nd_status nd_weights_load(const char *path, const nd_weights_params *p, nd_weights **out,
                          nd_err *err);
void nd_weights_free(nd_weights *w);
const nd_wtensor *nd_weights_get(const nd_weights *w, const char *name); /* NULL if absent */
size_t nd_weights_count(const nd_weights *w);
const nd_wtensor *nd_weights_at(const nd_weights *w, size_t i); /* sorted by name */
const nd_unet_config *nd_weights_unet(const nd_weights *w);
const nd_unet_config *nd_weights_controlnet(const nd_weights *w);
const nd_vae_config *nd_weights_vae(const nd_weights *w);
const nd_clip_config *nd_weights_clip(const nd_weights *w);
const nd_weights_report *nd_weights_get_report(const nd_weights *w);
/* Folder of tokenizer/ (vocab.json, merges.txt) of a diffusers model, or NULL. */
const char *nd_weights_tokenizer_dir(const nd_weights *w);
/* Missing / unexpected / mis-shaped key names (non-strict loads, inspect). */
size_t nd_weights_n_problems(const nd_weights *w);
const char *nd_weights_problem(const nd_weights *w, size_t i); /* "missing unet.x [..]" */

/* ---- LoRA ----------------------------------------------------------------- */
typedef struct {
    nd_wformat format;         /* ND_WFMT_LORA_KOHYA or ND_WFMT_LORA_PEFT        */
    size_t n_modules, n_unet, n_text, n_conv; /* n_conv: LoCon conv modules     */
    size_t n_applied, n_unmatched;             /* after a merge                  */
    int rank_min, rank_max;
} nd_lora_report;

/* Merges a LoRA into w: W += scale * (alpha / rank) * up @ down for every
 * module (merged in f32, stored back in w's dtype). Several calls = several
 * LoRAs at once (merging is additive). A module whose target is not in w,
 * or whose shapes disagree, fails the whole call before anything is changed. */
nd_status nd_weights_merge_lora(nd_weights *w, const char *path, float scale,
                                nd_lora_report *rep, nd_err *err);
/* The same checks as a merge (every module matches a tensor of w with fitting
 * shapes) without changing w; rep->n_applied counts the modules that would. */
nd_status nd_weights_check_lora(nd_weights *w, const char *path, nd_lora_report *rep, nd_err *err);
/* Inspects a LoRA file without a model: counts, ranks, target names. */
typedef struct nd_lora nd_lora;
nd_status nd_lora_open(const char *path, nd_lora **out, nd_err *err);
void nd_lora_free(nd_lora *l);
const nd_lora_report *nd_lora_get_report(const nd_lora *l);
size_t nd_lora_count(const nd_lora *l);
/* Target of module i as the file names it (kohya "lora_unet_..." or the PEFT
 * path), its rank, alpha and whether it is a conv. */
const char *nd_lora_target(const nd_lora *l, size_t i, int *rank, float *alpha, int *is_conv);

/* ---- JSON configs (exposed for the fuzz target and tools) ------------------ */
nd_status nd_unet_config_parse(const char *json, size_t len, nd_unet_config *c, nd_err *err);
nd_status nd_vae_config_parse(const char *json, size_t len, nd_vae_config *c, nd_err *err);
nd_status nd_clip_config_parse(const char *json, size_t len, nd_clip_config *c, nd_err *err);

#endif
