/* tests/proc_status.h - a "Key: N kB" line of /proc/self/status (VmRSS,
 * VmHWM, RssFile...), for the tests and benches that measure memory. */
#ifndef ND_TESTS_PROC_STATUS_H
#define ND_TESTS_PROC_STATUS_H

#include <stdio.h>
#include <string.h>

/* In kB; -1 where unreadable. */
static inline long nd_proc_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

#endif
