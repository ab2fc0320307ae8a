/* libFuzzer: netdiffd's request parsers. The first byte picks the query
 * string or the JSON body parser; the rest is the input. A two-class table
 * stands in for the model's. */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

static nd_class_table *table(void)
{
    static nd_class_table t;
    static int ready;
    if (!ready) {
        ready = 1;
        t.n = 2;
        t.v = calloc(2, sizeof *t.v);
        snprintf(t.v[0].name, sizeof t.v[0].name, "ssh");
        snprintf(t.v[1].name, sizeof t.v[1].name, "zoom");
    }
    return &t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    nd_srv_request r;
    nd_srv_problem p;
    if (data[0] & 1) {
        (void)nd_srv_parse_json((const char *)data + 1, size - 1, table(), 1000, &r, &p);
    } else {
        char *s = malloc(size);
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        if (nd_srv_parse_query_string(s, table(), 1000, &r, &p) == 0) {
            /* accepted: a valid job within the limits */
            uint64_t n = nd_gen_job_total(&r.job);
            if (n < 1 || n > 1000)
                abort();
        } else if (p.status != 400 || !p.code) {
            abort();
        }
        free(s);
    }
    return 0;
}
