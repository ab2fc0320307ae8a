/* libFuzzer: the class-table JSON parser (a configuration file). */
#include "gen/gen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_class_table t;
    if (nd_class_table_parse((const char *)data, size, ".", &t, NULL) == ND_OK) {
        for (int i = 0; i < t.n; i++)
            (void)nd_class_table_find(&t, t.v[i].name);
        nd_class_table_free(&t);
    }
    return 0;
}
