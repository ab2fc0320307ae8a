/* model/tokenizer.c - the CLIP byte-level BPE tokenizer of SD1.5, matching
 * transformers.CLIPTokenizer (tokenizers backend, transformers 5):
 *   added tokens   "<|startoftext|>" / "<|endoftext|>" in the raw text -> ids
 *   normalizer     NFC, \s+ -> " ", lowercase (per code point)
 *   pre-split      <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d |
 *                  \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+   (matches kept)
 *   byte level     GPT-2 bytes_to_unicode; its regex only splits the literal
 *                  specials further ("<|", "endoftext", "|>")
 *   BPE            "</w>" on each word's last symbol, lowest-rank merge first
 * The vocabulary is rebuilt from the embedded merges file (model/data/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "model/sd.h"
#include "model/unicode_tables.h"

#define N_MERGES 48894
#define MAP_BITS 17
#define MAP_SIZE (1u << MAP_BITS)

size_t nd_clip_vocab_gz_size(void);
const unsigned char *nd_clip_vocab_gz_data(void);

struct sd_tokenizer {
    char *arena;                 /* every vocab string and merge key, NUL-ended */
    const char *vocab[SD_VOCAB_SIZE];
    int32_t vocab_map[MAP_SIZE]; /* open addressing: id or -1                   */
    const char *merge_key[N_MERGES]; /* "left right"                          */
    int32_t merge_map[MAP_SIZE]; /* rank or -1                                  */
    char byte_sym[256][4];       /* bytes_to_unicode, UTF-8                     */
};

/* ---- hashing --------------------------------------------------------------- */
static uint32_t hash_str(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h ^ (h >> 15);
}

static void map_put(int32_t *map, const char *const *keys, const char *key, int32_t val)
{
    uint32_t h = hash_str(key, strlen(key)) & (MAP_SIZE - 1);
    while (map[h] >= 0) {
        if (!strcmp(keys[map[h]], key))
            return; /* first one wins */
        h = (h + 1) & (MAP_SIZE - 1);
    }
    map[h] = val;
}

static int32_t map_get(const int32_t *map, const char *const *keys, const char *key, size_t n)
{
    uint32_t h = hash_str(key, n) & (MAP_SIZE - 1);
    while (map[h] >= 0) {
        const char *k = keys[map[h]];
        if (!strncmp(k, key, n) && k[n] == '\0')
            return map[h];
        h = (h + 1) & (MAP_SIZE - 1);
    }
    return -1;
}

static size_t utf8_put(uint32_t c, char *o)
{
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 63));
        o[2] = (char)(0x80 | (c & 63)); return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 63));
    o[2] = (char)(0x80 | ((c >> 6) & 63)); o[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* ---- loading ---------------------------------------------------------------- */
static nd_status inflate_vocab(char **out, size_t *out_len, nd_err *err)
{
    const unsigned char *gz = nd_clip_vocab_gz_data();
    size_t gzn = nd_clip_vocab_gz_size();
    if (gzn < 18)
        return nd_fail(err, ND_EFORMAT, "tokenizer: embedded vocabulary is missing");
    size_t cap = (size_t)gz[gzn - 4] | (size_t)gz[gzn - 3] << 8 | (size_t)gz[gzn - 2] << 16 |
                 (size_t)gz[gzn - 1] << 24;
    char *buf = malloc(cap + 1);
    if (!buf)
        return nd_fail(err, ND_ENOMEM, "tokenizer: out of memory");
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        return nd_fail(err, ND_ENOMEM, "tokenizer: zlib init failed");
    }
    zs.next_in = (Bytef *)gz;
    zs.avail_in = (uInt)gzn;
    zs.next_out = (Bytef *)buf;
    zs.avail_out = (uInt)cap;
    int rc = inflate(&zs, Z_FINISH);
    size_t got = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        return nd_fail(err, ND_EFORMAT, "tokenizer: embedded vocabulary does not inflate (%d)", rc);
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    return ND_OK;
}

nd_status sd_tokenizer_new(sd_tokenizer **out, nd_err *err)
{
    *out = NULL;
    sd_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return nd_fail(err, ND_ENOMEM, "tokenizer: out of memory");
    char *txt = NULL;
    size_t txt_len = 0;
    nd_status st = inflate_vocab(&txt, &txt_len, err);
    if (st) {
        free(t);
        return st;
    }
    /* merges: lines 2 .. N_MERGES+1 */
    char *lines[N_MERGES];
    char *p = strchr(txt, '\n');
    for (int i = 0; i < N_MERGES; i++) {
        if (!p) {
            st = nd_fail(err, ND_EFORMAT, "tokenizer: vocabulary has %d merges, want %d", i, N_MERGES);
            goto fail;
        }
        *p++ = '\0';
        lines[i] = p;
        p = strchr(p, '\n');
    }
    if (p)
        *p = '\0';
    for (int i = 0; i < N_MERGES; i++) {
        size_t n = strlen(lines[i]);
        if (n && lines[i][n - 1] == '\r')
            lines[i][--n] = '\0';
        char *sp = strchr(lines[i], ' ');
        if (!sp || sp == lines[i] || !sp[1] || strchr(sp + 1, ' ')) {
            st = nd_fail(err, ND_EFORMAT, "tokenizer: bad merge line %d", i + 2);
            goto fail;
        }
    }
    /* byte symbols in bytes_to_unicode order */
    int order[256], n_ord = 0;
    uint32_t sym[256];
    bool printable[256] = {0};
    for (int b = 0; b < 256; b++)
        printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    for (int b = 0; b < 256; b++)
        if (printable[b]) { order[n_ord++] = b; sym[b] = (uint32_t)b; }
    for (int b = 0, k = 0; b < 256; b++)
        if (!printable[b]) { order[n_ord++] = b; sym[b] = 256u + (uint32_t)k++; }
    for (int b = 0; b < 256; b++)
        t->byte_sym[b][utf8_put(sym[b], t->byte_sym[b])] = '\0';
    /* arena: 512 byte tokens (<= 7 bytes + NUL), merges as concatenation and as key */
    size_t need = 512 * 8 + 64;
    for (int i = 0; i < N_MERGES; i++)
        need += 2 * (strlen(lines[i]) + 1);
    t->arena = malloc(need);
    if (!t->arena) {
        st = nd_fail(err, ND_ENOMEM, "tokenizer: out of memory");
        goto fail;
    }
    char *a = t->arena;
    for (int k = 0; k < 512; k++) {
        t->vocab[k] = a;
        a += sprintf(a, "%s%s", t->byte_sym[order[k & 255]], k < 256 ? "" : "</w>") + 1;
    }
    for (int i = 0; i < N_MERGES; i++) {
        size_t n = strlen(lines[i]);
        memcpy(a, lines[i], n + 1);
        t->merge_key[i] = a;
        a += n + 1;
        t->vocab[512 + i] = a;
        for (const char *q = lines[i]; *q; q++)
            if (*q != ' ')
                *a++ = *q;
        *a++ = '\0';
    }
    t->vocab[SD_TOK_BOS] = a; a += sprintf(a, "<|startoftext|>") + 1;
    t->vocab[SD_TOK_EOS] = a; a += sprintf(a, "<|endoftext|>") + 1;
    memset(t->vocab_map, 0xff, sizeof t->vocab_map);
    memset(t->merge_map, 0xff, sizeof t->merge_map);
    for (int32_t id = 0; id < SD_VOCAB_SIZE; id++)
        map_put(t->vocab_map, t->vocab, t->vocab[id], id);
    for (int32_t r = 0; r < N_MERGES; r++)
        map_put(t->merge_map, t->merge_key, t->merge_key[r], r);
    free(txt);
    *out = t;
    return ND_OK;
fail:
    free(txt);
    free(t->arena);
    free(t);
    return st;
}

void sd_tokenizer_free(sd_tokenizer *tok)
{
    if (!tok)
        return;
    free(tok->arena);
    free(tok);
}

const char *sd_token_str(const sd_tokenizer *tok, int32_t id)
{
    return tok && id >= 0 && id < SD_VOCAB_SIZE ? tok->vocab[id] : NULL;
}

/* ---- Unicode ------------------------------------------------------------------ */
static uint32_t range_val(const nd_uc_range *r, size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (c < r[m].lo) hi = m;
        else if (c > r[m].hi) lo = m + 1;
        else return r[m].val;
    }
    return 0;
}

static int uc_class(uint32_t c)
{
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
        return c >= '0' && c <= '9' ? 2 : 0;
    }
    return (int)range_val(nd_uc_class, nd_uc_class_len, c);
}

static uint32_t uc_ccc(uint32_t c)
{
    return c < 0x300 ? 0 : range_val(nd_uc_ccc, nd_uc_ccc_len, c);
}

static bool uc_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static uint32_t uc_lower1(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    size_t lo = 0, hi = nd_uc_lower_len;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (nd_uc_lower[m].cp == c) return nd_uc_lower[m].to;
        if (nd_uc_lower[m].cp < c) lo = m + 1; else hi = m;
    }
    return c;
}

static const nd_uc_decomp_t *find_decomp(uint32_t c)
{
    size_t lo = 0, hi = nd_uc_decomp_len;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (nd_uc_decomp[m].a == c) return &nd_uc_decomp[m];
        if (nd_uc_decomp[m].a < c) lo = m + 1; else hi = m;
    }
    return NULL;
}

static uint32_t find_comp(uint32_t a, uint32_t b)
{
    size_t lo = 0, hi = nd_uc_comp_len;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        const nd_uc_decomp_t *e = &nd_uc_comp[m];
        if (e->a == a && e->b == b) return e->c;
        if (e->a < a || (e->a == a && e->b < b)) lo = m + 1; else hi = m;
    }
    return 0;
}

#define H_SBASE 0xAC00u
#define H_LBASE 0x1100u
#define H_VBASE 0x1161u
#define H_TBASE 0x11A7u
#define H_LCOUNT 19u
#define H_VCOUNT 21u
#define H_TCOUNT 28u
#define H_NCOUNT (H_VCOUNT * H_TCOUNT)
#define H_SCOUNT (H_LCOUNT * H_NCOUNT)

typedef struct {
    uint32_t *v;
    size_t n, cap;
    bool oom;
} cpvec;

static void cp_push(cpvec *b, uint32_t c)
{
    if (b->oom)
        return;
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 64;
        uint32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) { b->oom = true; return; }
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = c;
}

static void decompose(cpvec *o, uint32_t c, int depth)
{
    if (c >= H_SBASE && c < H_SBASE + H_SCOUNT) {
        uint32_t s = c - H_SBASE;
        cp_push(o, H_LBASE + s / H_NCOUNT);
        cp_push(o, H_VBASE + (s % H_NCOUNT) / H_TCOUNT);
        if (s % H_TCOUNT)
            cp_push(o, H_TBASE + s % H_TCOUNT);
        return;
    }
    const nd_uc_decomp_t *d = c >= 0xC0 && depth < 8 ? find_decomp(c) : NULL;
    if (!d) {
        cp_push(o, c);
        return;
    }
    decompose(o, d->b, depth + 1);
    if (d->c)
        decompose(o, d->c, depth + 1);
}

/* NFC of in[0..n) appended to o. */
static void nfc(const uint32_t *in, size_t n, cpvec *o)
{
    size_t base = o->n;
    for (size_t i = 0; i < n; i++)
        decompose(o, in[i], 0);
    if (o->oom)
        return;
    uint32_t *v = o->v + base;
    size_t m = o->n - base;
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t i = 1; i < m; i++) {
        uint32_t cc = uc_ccc(v[i]);
        if (!cc)
            continue;
        size_t j = i;
        uint32_t c = v[i];
        while (j > 0 && uc_ccc(v[j - 1]) > cc) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = c;
    }
    /* canonical composition */
    if (!m)
        return;
    size_t starter = 0, out = 1;
    uint32_t last_cc = uc_ccc(v[0]) ? 256 : 0;
    for (size_t i = 1; i < m; i++) {
        uint32_t c = v[i], cc = uc_ccc(c), s = v[starter], comp = 0;
        if (last_cc < cc || last_cc == 0) {
            if (s >= H_LBASE && s < H_LBASE + H_LCOUNT && c >= H_VBASE && c < H_VBASE + H_VCOUNT &&
                last_cc == 0 && out == starter + 1)
                comp = H_SBASE + ((s - H_LBASE) * H_VCOUNT + (c - H_VBASE)) * H_TCOUNT;
            else if (s >= H_SBASE && s < H_SBASE + H_SCOUNT && (s - H_SBASE) % H_TCOUNT == 0 &&
                     c > H_TBASE && c < H_TBASE + H_TCOUNT && last_cc == 0 && out == starter + 1)
                comp = s + (c - H_TBASE);
            else
                comp = find_comp(s, c);
        }
        if (comp) {
            v[starter] = comp;
            continue;
        }
        if (cc == 0)
            starter = out;
        last_cc = cc;
        v[out++] = c;
    }
    o->n = base + out;
}

/* ---- BPE ------------------------------------------------------------------------- */
typedef struct {
    int32_t rank, left;      /* left node index                       */
    int32_t llen, rlen;      /* spans when pushed (staleness check)   */
} heap_ent;

static bool ent_less(const heap_ent *a, const heap_ent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n)
{
    heap_ent top = h[0], e = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && ent_less(&h[c + 1], &h[c]))
            c++;
        if (!ent_less(&h[c], &e))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
    return top;
}

typedef struct {
    const sd_tokenizer *tok;
    int32_t *ids;
    size_t cap, n;
    /* scratch */
    char *s; size_t s_cap;
    int32_t *start, *len, *prev, *next;
    size_t c_start, c_len, c_prev, c_next;
    char *ub; size_t ub_cap;
    heap_ent *heap; size_t heap_cap;
    char *key; size_t key_cap;
    bool oom;
} bpe_ctx;

static bool grow(void **p, size_t *cap, size_t need, size_t elt)
{
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elt);
    if (!np)
        return false;
    *p = np;
    *cap = nc;
    return true;
}

static void emit(bpe_ctx *b, int32_t id)
{
    if (b->n < b->cap)
        b->ids[b->n] = id;
    b->n++;
}

static int32_t pair_rank(bpe_ctx *b, int32_t i, int32_t j)
{
    size_t n = (size_t)b->len[i] + 1 + (size_t)b->len[j];
    memcpy(b->key, b->s + b->start[i], (size_t)b->len[i]);
    b->key[b->len[i]] = ' ';
    memcpy(b->key + b->len[i] + 1, b->s + b->start[j], (size_t)b->len[j]);
    return map_get(b->tok->merge_map, b->tok->merge_key, b->key, n);
}

static void push_pair(bpe_ctx *b, size_t *hn, int32_t i)
{
    int32_t j = b->next[i];
    if (j < 0)
        return;
    int32_t r = pair_rank(b, i, j);
    if (r >= 0)
        heap_push(b->heap, hn, (heap_ent){r, i, b->len[i], b->len[j]});
}

/* One word given as UTF-8 bytes. */
static void bpe_word(bpe_ctx *b, const char *w, size_t wn)
{
    if (!wn)
        return;
    size_t sn = 0;
    if (!grow((void **)&b->s, &b->s_cap, wn * 2 + 8, 1) ||
        !grow((void **)&b->start, &b->c_start, wn, sizeof(int32_t)) ||
        !grow((void **)&b->len, &b->c_len, wn, sizeof(int32_t)) ||
        !grow((void **)&b->prev, &b->c_prev, wn, sizeof(int32_t)) ||
        !grow((void **)&b->next, &b->c_next, wn, sizeof(int32_t)) ||
        !grow((void **)&b->heap, &b->heap_cap, 3 * wn + 4, sizeof(heap_ent)) ||
        !grow((void **)&b->key, &b->key_cap, wn * 4 + 16, 1)) {
        b->oom = true;
        return;
    }
    for (size_t i = 0; i < wn; i++) {
        const char *sym = b->tok->byte_sym[(uint8_t)w[i]];
        size_t l = strlen(sym);
        b->start[i] = (int32_t)sn;
        b->len[i] = (int32_t)l;
        b->prev[i] = (int32_t)i - 1;
        b->next[i] = i + 1 < wn ? (int32_t)i + 1 : -1;
        memcpy(b->s + sn, sym, l);
        sn += l;
    }
    memcpy(b->s + sn, "</w>", 4);
    b->len[wn - 1] += 4;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < wn; i++)
        push_pair(b, &hn, (int32_t)i);
    while (hn) {
        heap_ent e = heap_pop(b->heap, &hn);
        int32_t i = e.left;
        if (b->len[i] != e.llen)
            continue;
        int32_t j = b->next[i];
        if (j < 0 || b->len[j] != e.rlen)
            continue;
        b->len[i] += b->len[j];
        b->len[j] = -1; /* dead */
        b->next[i] = b->next[j];
        if (b->next[j] >= 0)
            b->prev[b->next[j]] = i;
        if (b->prev[i] >= 0)
            push_pair(b, &hn, b->prev[i]);
        push_pair(b, &hn, i);
    }
    for (int32_t i = 0; i >= 0; i = b->next[i]) {
        int32_t id = map_get(b->tok->vocab_map, b->tok->vocab, b->s + b->start[i], (size_t)b->len[i]);
        emit(b, id >= 0 ? id : SD_TOK_EOS /* unk; cannot happen with byte symbols */);
    }
}

static void bpe_cps(bpe_ctx *b, const uint32_t *c, size_t n)
{
    if (!grow((void **)&b->ub, &b->ub_cap, n * 4 + 4, 1)) {
        b->oom = true;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += utf8_put(c[i], b->ub + k);
    bpe_word(b, b->ub, k);
}

static bool match_lit(const uint32_t *c, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    if (n < l)
        return false;
    for (size_t i = 0; i < l; i++)
        if (c[i] != (uint8_t)lit[i])
            return false;
    return true;
}

static bool is_contraction(const uint32_t *c, size_t n, size_t *len)
{
    if (n < 2 || c[0] != '\'')
        return false;
    if (c[1] == 's' || c[1] == 't' || c[1] == 'm' || c[1] == 'd') { *len = 2; return true; }
    if (n >= 3 && ((c[1] == 'r' && c[2] == 'e') || (c[1] == 'v' && c[2] == 'e') ||
                   (c[1] == 'l' && c[2] == 'l'))) { *len = 3; return true; }
    return false;
}

/* A segment of the raw text (no added tokens in it). */
static void segment(bpe_ctx *b, const uint32_t *in, size_t n, cpvec *t1, cpvec *t2)
{
    t1->n = 0;
    t2->n = 0;
    nfc(in, n, t1);
    /* whitespace runs -> " ", lowercase */
    for (size_t i = 0; i < t1->n; i++) {
        uint32_t c = t1->v[i];
        if (uc_space(c)) {
            if (i == 0 || !uc_space(t1->v[i - 1]))
                cp_push(t2, ' ');
        } else if (c == 0x130) {
            cp_push(t2, 'i');
            cp_push(t2, 0x307);
        } else {
            cp_push(t2, uc_lower1(c));
        }
    }
    if (t1->oom || t2->oom) {
        b->oom = true;
        return;
    }
    const uint32_t *c = t2->v;
    size_t m = t2->n, i = 0;
    while (i < m) {
        size_t l;
        int cl = uc_class(c[i]);
        if (c[i] == ' ') { /* only whitespace left after normalisation */
            i++;
        } else if (match_lit(c + i, m - i, "<|startoftext|>") || match_lit(c + i, m - i, "<|endoftext|>")) {
            l = c[i + 2] == 's' ? 15 : 13;
            bpe_cps(b, c + i, 2);
            bpe_cps(b, c + i + 2, l - 4);
            bpe_cps(b, c + i + l - 2, 2);
            i += l;
        } else if (is_contraction(c + i, m - i, &l)) {
            bpe_cps(b, c + i, l);
            i += l;
        } else if (cl == 1) {
            for (l = 1; i + l < m && uc_class(c[i + l]) == 1; l++) {}
            bpe_cps(b, c + i, l);
            i += l;
        } else if (cl == 2) {
            bpe_cps(b, c + i, 1);
            i += 1;
        } else {
            for (l = 1; i + l < m && c[i + l] != ' ' && !uc_class(c[i + l]); l++) {}
            bpe_cps(b, c + i, l);
            i += l;
        }
    }
}

/* Strict UTF-8 decode; returns the count or (size_t)-1. */
static size_t utf8_decode(const char *s, size_t n, uint32_t *out)
{
    size_t k = 0;
    const uint8_t *p = (const uint8_t *)s, *e = p + n;
    while (p < e) {
        uint32_t c = *p++;
        int more;
        uint32_t min;
        if (c < 0x80) { out[k++] = c; continue; }
        else if ((c & 0xE0) == 0xC0) { c &= 0x1F; more = 1; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { c &= 0x0F; more = 2; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { c &= 0x07; more = 3; min = 0x10000; }
        else return (size_t)-1;
        if (e - p < more)
            return (size_t)-1;
        for (int i = 0; i < more; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return (size_t)-1;
            c = (c << 6) | (p[i] & 0x3F);
        }
        p += more;
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return (size_t)-1;
        out[k++] = c;
    }
    return k;
}

nd_status sd_tokenize_raw(const sd_tokenizer *tok, const char *text, size_t len, int32_t *ids,
                          size_t cap, size_t *n_total, nd_err *err)
{
    if (n_total)
        *n_total = 0;
    if (!tok || (!text && len) || (!ids && cap))
        return nd_fail(err, ND_EINVAL, "tokenize: bad arguments");
    if (len > SD_PROMPT_MAX)
        return nd_fail(err, ND_EINVAL, "tokenize: prompt of %zu bytes (at most %d)", len, SD_PROMPT_MAX);
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    cpvec t1 = {0}, t2 = {0};
    bpe_ctx b = {.tok = tok, .ids = ids, .cap = cap};
    nd_status st = ND_OK;
    if (!cps) {
        st = nd_fail(err, ND_ENOMEM, "tokenize: out of memory");
        goto done;
    }
    size_t n = len ? utf8_decode(text, len, cps) : 0;
    if (n == (size_t)-1) {
        st = nd_fail(err, ND_EFORMAT, "tokenize: prompt is not valid UTF-8");
        goto done;
    }
    size_t seg = 0;
    for (size_t i = 0; i <= n && !b.oom;) {
        bool bos = i < n && match_lit(cps + i, n - i, "<|startoftext|>");
        bool eos = i < n && !bos && match_lit(cps + i, n - i, "<|endoftext|>");
        if (i < n && !bos && !eos) {
            i++;
            continue;
        }
        if (i > seg)
            segment(&b, cps + seg, i - seg, &t1, &t2);
        if (i == n)
            break;
        emit(&b, bos ? SD_TOK_BOS : SD_TOK_EOS);
        i += bos ? 15 : 13;
        seg = i;
    }
    if (b.oom)
        st = nd_fail(err, ND_ENOMEM, "tokenize: out of memory");
    else if (n_total)
        *n_total = b.n;
done:
    free(cps);
    free(t1.v);
    free(t2.v);
    free(b.s); free(b.start); free(b.len); free(b.prev); free(b.next); free(b.heap); free(b.key); free(b.ub);
    return st;
}

static void frame(const int32_t *ids, size_t n, int32_t *out)
{
    out[0] = SD_TOK_BOS;
    size_t k = n < SD_TOKENS - 2 ? n : SD_TOKENS - 2;
    memcpy(out + 1, ids, k * sizeof *ids);
    out[k + 1] = SD_TOK_EOS;
    for (size_t i = k + 2; i < SD_TOKENS; i++)
        out[i] = SD_TOK_PAD;
}

nd_status sd_tokenize(const sd_tokenizer *tok, const char *text, int32_t ids[SD_TOKENS],
                      bool *truncated, nd_err *err)
{
    int32_t raw[SD_TOKENS - 2];
    size_t n = 0;
    if (!text)
        return nd_fail(err, ND_EINVAL, "tokenize: no prompt");
    nd_status st = sd_tokenize_raw(tok, text, strlen(text), raw, SD_TOKENS - 2, &n, err);
    if (st)
        return st;
    frame(raw, n, ids);
    if (truncated)
        *truncated = n > SD_TOKENS - 2;
    return ND_OK;
}

nd_status sd_tokenize_chunks(const sd_tokenizer *tok, const char *text, int32_t *ids,
                             size_t max_chunks, size_t *n_chunks, nd_err *err)
{
    *n_chunks = 0;
    if (!text || !max_chunks || max_chunks > SD_PROMPT_MAX)
        return nd_fail(err, ND_EINVAL, "tokenize: bad arguments");
    size_t per = SD_TOKENS - 2, n = 0;
    int32_t *raw = malloc(max_chunks * per * sizeof *raw);
    if (!raw)
        return nd_fail(err, ND_ENOMEM, "tokenize: out of memory");
    nd_status st = sd_tokenize_raw(tok, text, strlen(text), raw, max_chunks * per, &n, err);
    if (!st) {
        size_t k = n ? (n + per - 1) / per : 1;
        if (k > max_chunks)
            k = max_chunks;
        for (size_t c = 0; c < k; c++) {
            size_t left = n > c * per ? n - c * per : 0;
            frame(raw + c * per, left < per ? left : per, ids + c * SD_TOKENS);
        }
        *n_chunks = k;
    }
    free(raw);
    return st;
}
