/* libFuzzer: the nPrint CSV reader (plain and gzip) on arbitrary bytes. */
#include "codec/codec.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_csv", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        nd_rows t;
        if (nd_csv_read(path, &t, NULL) == ND_OK) {
            uint8_t buf[2048];
            for (int i = 0; i < t.n; i++)
                nd_row_to_bytes(nd_rows_at(&t, i), t.payload_bytes, buf, sizeof buf);
            nd_rows_free(&t);
        }
    }
    close(fd);
    return 0;
}
