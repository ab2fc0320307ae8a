/* cli/cmd_bench.c - `netdiff bench`: the standard benchmark tables, the same
 * as `make bench` (tests/bench/run.sh over the built benchmarks), run from
 * the project folder beside the binary. */
#include "cli/cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int run(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: netdiff bench [NAME]\n\n"
               "Runs the benchmarks (codec, repair, ops, weights_load, unet, eval, ...) and\n"
               "prints their tables; NAME runs those whose name contains it. Needs the\n"
               "project's source folder beside the binary (or $ND_HOME) with `make bench`'s\n"
               "programs built.\n");
        return 0;
    }
    if (argc > 2)
        return cli_usage_error("bench", "at most one benchmark name");
    char home[PATH_MAX];
    const char *h = getenv("ND_HOME");
    if (h && *h) {
        snprintf(home, sizeof home, "%s", h);
    } else {
        ssize_t k = readlink("/proc/self/exe", home, sizeof home - 1);
        if (k <= 0)
            return cli_fail("bench", ND_EIO, "cannot find the binary's folder");
        home[k] = '\0';
        for (int up = 0; up < 2; up++) {
            char *s = strrchr(home, '/');
            if (s)
                *s = '\0';
        }
    }
    if (chdir(home))
        return cli_fail("bench", ND_EIO, "%s: cannot enter the project folder", home);
    if (access("tests/bench/run.sh", R_OK))
        return cli_fail("bench", ND_ENOTFOUND, "%s/tests/bench/run.sh: not found (run from a source checkout)", home);
    execlp("sh", "sh", "tests/bench/run.sh", argc > 1 ? argv[1] : "", (char *)NULL);
    return cli_fail("bench", ND_EIO, "cannot run sh");
}

const nd_cmd nd_cmd_bench = {"bench", "run the standard benchmark tables (as make bench)", run};
