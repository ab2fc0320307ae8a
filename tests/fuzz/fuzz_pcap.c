/* libFuzzer: the capture reader, link decoding, nPrint rows and flows on
 * arbitrary bytes (pcap, pcapng, gzip). Never a crash, a leak or a hang. */
#include "codec/codec.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static nd_status sink(void *ctx, const nd_flow *f, nd_err *err)
{
    (void)err;
    nd_rows t;
    if (nd_flow_rows(f, 8, &t, NULL) == ND_OK) {
        *(long *)ctx += t.n;
        nd_rows_free(&t);
    }
    return ND_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_pcap", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    nd_reader *r;
    nd_err err;
    if (nd_reader_open(path, &r, &err) == ND_OK) {
        nd_packet p;
        int got;
        int8_t row[ND_HDR_BITS + 64 * 8];
        int n = 0;
        while (n++ < 10000 && nd_reader_next(r, &p, &got, &err) == ND_OK && got)
            if (p.l3)
                nd_row_encode(p.l3, p.l3_caplen, 64, row, NULL);
        nd_reader_close(r);
        nd_flow_opts o;
        nd_flow_opts_init(&o);
        o.max_packets = 16;
        long rows = 0;
        nd_flows_from_capture(path, &o, sink, &rows, NULL, &err);
    }
    close(fd);
    return 0;
}
