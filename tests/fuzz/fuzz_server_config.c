/* libFuzzer: netdiffd's configuration parser (conf/netdiffd.conf). */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_srv_config c;
    nd_srv_config_init(&c);
    nd_err err = {{0}};
    if (nd_srv_config_parse(&c, (const char *)data, size, "fuzz.conf", &err) == ND_OK) {
        /* what parses is within the table's ranges */
        if (c.max_batch < 1 || c.max_batch > 64 || c.port < 0 || c.port > 65535 || c.queue < 1 ||
            memchr(c.token, '\0', sizeof c.token) == NULL)
            abort();
    } else if (!err.msg[0]) {
        abort();
    }
    return 0;
}
