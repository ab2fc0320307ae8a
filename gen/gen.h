/* gen/gen.h - the generation job and the class table it draws from.
 *
 * Class table: what a model can generate, one entry per class: its name, the
 * prompt the model was trained with (NetDiffusion style, "pixelated network
 * data, type-N"), template flows whose canny edges guide the ControlNet, and
 * the statistics of the class's real traffic that the repair step needs
 * (inter-arrival times per direction change, TTLs) plus summary facts
 * (transport shares, server ports) used to check conditioning. It is made
 * from labelled captures (nd_class_builder, `netdiff classes build`) and
 * stored as JSON (conf/classes.json) with template images beside it.
 *
 * Ownership: an nd_class_table owns its classes; free it with
 * nd_class_table_free. Strings inside belong to the table. No function here
 * prints; errors are nd_status + one line in nd_err naming the file. */
#ifndef ND_GEN_H
#define ND_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "common/nd.h"
#include "heuristics/repair.h"

/* ============================================================ class table */

#define ND_CLASS_NAME_MAX 64
#define ND_CLASS_PROMPT_MAX 160
#define ND_CLASS_MAX_TEMPLATES 16
#define ND_CLASS_TOP_PORTS 8
#define ND_CLASS_FORMAT "netdiffd-classes/1"

typedef struct nd_class {
    char name[ND_CLASS_NAME_MAX];
    char prompt[ND_CLASS_PROMPT_MAX];
    uint64_t flows, packets;            /* real traffic the entry was built from   */
    double transport[3];                /* share of flows: TCP, UDP, ICMP          */
    double ipv6_share;                  /* share of flows over IPv6                */
    int n_ports;                        /* server-side ports, most flows first     */
    uint16_t port[ND_CLASS_TOP_PORTS];
    uint8_t port_proto[ND_CLASS_TOP_PORTS]; /* 6 or 17                             */
    double port_share[ND_CLASS_TOP_PORTS];
    double mean_packets;                /* packets per flow (first K kept)         */
    int n_templates;                    /* template flows, as layout images        */
    char templates[ND_CLASS_MAX_TEMPLATES][256]; /* paths relative to the table     */
    nd_class_stats stats;               /* what the repair draws from              */
} nd_class;

typedef struct nd_class_table {
    int n;
    nd_class *v;                        /* sorted by name                          */
    nd_layout layout;                   /* the images' layout (templates)          */
    char dir[4096];                     /* folder of the table: templates resolve here */
} nd_class_table;

/* Reads a class table (strict: unknown keys, wrong types and out-of-range
 * values are errors naming the key). */
nd_status nd_class_table_load(const char *path, nd_class_table *t, nd_err *err);
/* The same from memory (dir: where templates resolve; may be "."). */
nd_status nd_class_table_parse(const char *json, size_t n, const char *dir, nd_class_table *t,
                               nd_err *err);
/* Writes the table as JSON (atomically: temporary file, then rename). */
nd_status nd_class_table_save(const nd_class_table *t, const char *path, nd_err *err);
/* The class called name, or NULL. */
const nd_class *nd_class_table_find(const nd_class_table *t, const char *name);
/* Full path of template k of class c, into buf. */
void nd_class_template_path(const nd_class_table *t, const nd_class *c, int k, char *buf,
                            size_t n);
void nd_class_table_free(nd_class_table *t);

/* Building a table from labelled captures. */
typedef struct nd_class_builder nd_class_builder;
typedef struct nd_class_build_opts {
    nd_layout layout;                   /* template image layout (packet budget)   */
    int templates;                      /* template flows kept per class (4)       */
    int min_flows;                      /* classes with fewer flows are left out (5) */
    int min_template_packets;           /* templates need at least this many (8)   */
    const char *prompt_format;          /* printf format with one %d ("pixelated network data, type-%d") */
} nd_class_build_opts;
void nd_class_build_opts_init(nd_class_build_opts *o);

nd_status nd_class_builder_new(const nd_class_build_opts *o, nd_class_builder **out,
                               nd_err *err);
/* Splits a capture into flows (fo: flow options with the labeler) and adds
 * every labelled flow to its class. */
nd_status nd_class_builder_add_capture(nd_class_builder *b, const char *path,
                                       const nd_flow_opts *fo, nd_err *err);
/* Adds one flow (label from f->label; unlabelled flows are ignored). */
nd_status nd_class_builder_add_flow(nd_class_builder *b, const nd_flow *f, nd_err *err);
/* Finishes the table: classes with at least min_flows flows, sorted by name,
 * prompts numbered in that order; template images are written into
 * template_dir (created if needed), their paths stored relative to
 * table_dir. skipped (may be NULL) receives one "name: N flows" line per
 * class left out, separated by newlines. */
nd_status nd_class_builder_finish(nd_class_builder *b, const char *table_dir,
                                  const char *template_dir, nd_class_table *out,
                                  char *skipped, size_t skipped_n, nd_err *err);
void nd_class_builder_free(nd_class_builder *b);

#endif
