/* codec/labels.c - where a flow's label comes from. */
#include "codec/codec.h"
#include "codec/internal.h"

#include <ctype.h>
#include <errno.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;      /* canonical 5-tuple text (+ "@file" when the CSV has files) */
    char *label;
} csv_entry;

typedef struct {
    char label[64];
    char *expr;
    int linktype;                /* program compiled for this link type, -1 none */
    struct bpf_program prog;
} bpf_rule;

struct nd_labeler {
    char fixed[64];
    bool comments;
    csv_entry *tab;              /* open addressing, power of two */
    size_t tab_cap, tab_n;
    bool csv_has_file;
    bpf_rule *rules;
    int n_rules;
};

nd_status nd_labeler_new(nd_labeler **out, nd_err *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? ND_OK : nd_fail(err, ND_ENOMEM, "out of memory");
}

static int label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

nd_status nd_labeler_set_fixed(nd_labeler *l, const char *label, nd_err *err)
{
    if (!label_ok(label))
        return nd_fail(err, ND_EINVAL,
                       "label '%s' must be 1-63 characters of letters, digits, _ - .", label);
    snprintf(l->fixed, sizeof l->fixed, "%s", label);
    return ND_OK;
}

void nd_labeler_use_comments(nd_labeler *l, bool on) { l->comments = on; }

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* "6|a|pa|b|pb" with the two endpoints in a fixed order (direction-free). */
static void tuple_key(char *buf, size_t n, int proto, const char *a, unsigned pa, const char *b,
                      unsigned pb, const char *file)
{
    char e1[80], e2[80];
    snprintf(e1, sizeof e1, "%s/%u", a, pa);
    snprintf(e2, sizeof e2, "%s/%u", b, pb);
    const char *lo = strcmp(e1, e2) <= 0 ? e1 : e2, *hi = lo == e1 ? e2 : e1;
    if (file)
        snprintf(buf, n, "%d|%s|%s@%s", proto, lo, hi, base_name(file));
    else
        snprintf(buf, n, "%d|%s|%s", proto, lo, hi);
}

static int tab_put(nd_labeler *l, const char *key, const char *label)
{
    if ((l->tab_n + 1) * 2 > l->tab_cap) {
        size_t nc = l->tab_cap ? l->tab_cap * 2 : 1024;
        csv_entry *nt = calloc(nc, sizeof *nt);
        if (!nt)
            return -1;
        for (size_t i = 0; i < l->tab_cap; i++)
            if (l->tab[i].key) {
                size_t j = hash_str(l->tab[i].key) & (nc - 1);
                while (nt[j].key)
                    j = (j + 1) & (nc - 1);
                nt[j] = l->tab[i];
            }
        free(l->tab);
        l->tab = nt;
        l->tab_cap = nc;
    }
    size_t j = hash_str(key) & (l->tab_cap - 1);
    while (l->tab[j].key) {
        if (!strcmp(l->tab[j].key, key))
            return 0;  /* first row wins */
        j = (j + 1) & (l->tab_cap - 1);
    }
    l->tab[j].key = strdup(key);
    l->tab[j].label = strdup(label);
    if (!l->tab[j].key || !l->tab[j].label)
        return -1;
    l->tab_n++;
    return 0;
}

static const char *tab_get(const nd_labeler *l, const char *key)
{
    if (!l->tab_cap)
        return NULL;
    size_t j = hash_str(key) & (l->tab_cap - 1);
    while (l->tab[j].key) {
        if (!strcmp(l->tab[j].key, key))
            return l->tab[j].label;
        j = (j + 1) & (l->tab_cap - 1);
    }
    return NULL;
}

/* Splits a CSV line in place on commas (no quoting in these files). */
static int split(char *line, char **f, int max)
{
    int n = 0;
    char *s = line;
    while (n < max) {
        f[n++] = s;
        char *c = strchr(s, ',');
        if (!c)
            break;
        *c = '\0';
        s = c + 1;
    }
    return n;
}

static int proto_num(const char *s)
{
    if (!strcasecmp(s, "tcp") || !strcmp(s, "6"))
        return 6;
    if (!strcasecmp(s, "udp") || !strcmp(s, "17"))
        return 17;
    if (!strcasecmp(s, "icmp") || !strcmp(s, "1"))
        return 1;
    return -1;
}

nd_status nd_labeler_load_csv(nd_labeler *l, const char *path, nd_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int col[7] = {-1, -1, -1, -1, -1, -1, -1}; /* src sport dst dport label l4 file */
    static const char *const names[7] = {"src", "sport", "dst", "dport", "label", "l4", "file"};
    nd_status st = ND_OK;
    long lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *fld[64];
        int nf = split(line, fld, 64);
        if (lineno == 1) {
            for (int i = 0; i < nf; i++)
                for (int k = 0; k < 7; k++)
                    if (!strcmp(fld[i], names[k]) ||
                        (k == 5 && (!strcmp(fld[i], "proto") || !strcmp(fld[i], "protocol"))))
                        col[k] = i;
            for (int k = 0; k < 5; k++)
                if (col[k] < 0) {
                    st = nd_fail(err, ND_EFORMAT, "%s: header has no '%s' column", path, names[k]);
                    goto done;
                }
            l->csv_has_file = col[6] >= 0;
            continue;
        }
        if (len == 0)
            continue;
        int need = 0;
        for (int k = 0; k < 7; k++)
            if (col[k] > need)
                need = col[k];
        if (nf <= need) {
            st = nd_fail(err, ND_EFORMAT, "%s:%ld: %d fields, expected %d", path, lineno, nf,
                         need + 1);
            goto done;
        }
        int proto = col[5] >= 0 ? proto_num(fld[col[5]]) : 0;
        if (col[5] >= 0 && proto < 0)
            continue;  /* flows of other protocols cannot match a flow of ours */
        char *e1, *e2;
        long sp = strtol(fld[col[1]], &e1, 10), dp = strtol(fld[col[3]], &e2, 10);
        if (*e1 || *e2 || sp < 0 || sp > 65535 || dp < 0 || dp > 65535) {
            st = nd_fail(err, ND_EFORMAT, "%s:%ld: bad port", path, lineno);
            goto done;
        }
        if (!label_ok(fld[col[4]]))
            continue;  /* empty or odd labels are no labels */
        char key[512];
        tuple_key(key, sizeof key, proto, fld[col[0]], (unsigned)sp, fld[col[2]], (unsigned)dp,
                  col[6] >= 0 ? fld[col[6]] : NULL);
        if (tab_put(l, key, fld[col[4]])) {
            st = nd_fail(err, ND_ENOMEM, "out of memory");
            goto done;
        }
    }
    if (lineno == 0)
        st = nd_fail(err, ND_EFORMAT, "%s: empty file", path);
done:
    free(line);
    fclose(f);
    return st;
}

nd_status nd_labeler_add_bpf(nd_labeler *l, const char *label, const char *bpf, nd_err *err)
{
    if (!label_ok(label))
        return nd_fail(err, ND_EINVAL, "label '%s' must be 1-63 characters of letters, digits, _ - .", label);
    /* Check the expression now, against Ethernet; it is compiled again for
     * each capture's own link type when used. */
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    struct bpf_program prog;
    if (!dead)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    if (pcap_compile(dead, &prog, bpf, 1, PCAP_NETMASK_UNKNOWN) < 0) {
        nd_status st = nd_fail(err, ND_EINVAL, "bad filter '%s': %s", bpf, pcap_geterr(dead));
        pcap_close(dead);
        return st;
    }
    pcap_freecode(&prog);
    pcap_close(dead);
    bpf_rule *r = realloc(l->rules, (size_t)(l->n_rules + 1) * sizeof *r);
    if (!r)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    l->rules = r;
    bpf_rule *nr = &r[l->n_rules];
    memset(nr, 0, sizeof *nr);
    snprintf(nr->label, sizeof nr->label, "%s", label);
    nr->expr = strdup(bpf);
    nr->linktype = -1;
    if (!nr->expr)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    l->n_rules++;
    return ND_OK;
}

void nd_labeler_free(nd_labeler *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->tab_cap; i++) {
        free(l->tab[i].key);
        free(l->tab[i].label);
    }
    free(l->tab);
    for (int i = 0; i < l->n_rules; i++) {
        if (l->rules[i].linktype >= 0)
            pcap_freecode(&l->rules[i].prog);
        free(l->rules[i].expr);
    }
    free(l->rules);
    free(l);
}

void nd_label_from_filename(const char *path, char *buf, size_t n)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", base_name(path));
    /* strip extensions: .gz, then .pcap / .pcapng / .cap / .csv / .nprint / .png */
    static const char *const ext[] = {".gz", ".pcap", ".pcapng", ".cap", ".csv", ".nprint", ".png"};
    for (int k = 0; k < 2; k++) {
        char *dot = strrchr(tmp, '.');
        for (size_t e = 0; dot && e < ND_ARRAY_LEN(ext); e++)
            if (!strcmp(dot, ext[e])) {
                *dot = '\0';
                break;
            }
    }
    char *s = tmp;
    char *dd = NULL, *p = tmp;
    while ((p = strstr(p, "__"))) {
        dd = p;
        p += 2;
    }
    if (dd && dd[2]) {
        s = dd + 2;
    } else {
        /* netflix_01 -> netflix: drop a trailing _digits or -digits */
        size_t len = strlen(tmp);
        size_t i = len;
        while (i > 0 && isdigit((unsigned char)tmp[i - 1]))
            i--;
        if (i < len && i > 1 && (tmp[i - 1] == '_' || tmp[i - 1] == '-'))
            tmp[i - 1] = '\0';
    }
    /* keep label characters only */
    size_t o = 0;
    for (; *s && o + 1 < n && o < 63; s++)
        buf[o++] = (isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.') ? *s : '_';
    buf[o] = '\0';
}

/* ---- used by flows.c ---- */

const char *nd_labeler_lookup(nd_labeler *l, const char *capture_path, const nd_packet *first,
                              const nd_pktinfo *pi)
{
    if (!l)
        return NULL;
    if (l->tab_n) {
        char a[64], b[64], key[512];
        nd_addr_text(pi->ipver, pi->src, a, sizeof a);
        nd_addr_text(pi->ipver, pi->dst, b, sizeof b);
        tuple_key(key, sizeof key, pi->proto, a, pi->sport, b, pi->dport,
                  l->csv_has_file ? capture_path : NULL);
        const char *lab = tab_get(l, key);
        if (!lab && !l->csv_has_file) {
            tuple_key(key, sizeof key, 0, a, pi->sport, b, pi->dport, NULL);
            lab = tab_get(l, key);
        }
        if (lab)
            return lab;
    }
    for (int i = 0; i < l->n_rules; i++) {
        bpf_rule *r = &l->rules[i];
        if (r->linktype != first->linktype) {
            if (r->linktype >= 0)
                pcap_freecode(&r->prog);
            r->linktype = -1;
            pcap_t *dead = pcap_open_dead(first->linktype, 262144);
            if (!dead)
                continue;
            int bad = pcap_compile(dead, &r->prog, r->expr, 1, PCAP_NETMASK_UNKNOWN) < 0;
            pcap_close(dead);
            if (bad)
                continue;
            r->linktype = first->linktype;
        }
        struct pcap_pkthdr h = {.caplen = first->caplen, .len = first->wirelen};
        if (pcap_offline_filter(&r->prog, &h, first->frame))
            return r->label;
    }
    return l->fixed[0] ? l->fixed : NULL;
}

bool nd_labeler_comments(const nd_labeler *l) { return l && l->comments; }

int nd_label_from_comment(const char *comment, char *buf, size_t n)
{
    /* pcapml: "SAMPLEID,LABEL" */
    const char *c = strchr(comment, ',');
    if (!c || !label_ok(c + 1))
        return 0;
    snprintf(buf, n, "%s", c + 1);
    return 1;
}
