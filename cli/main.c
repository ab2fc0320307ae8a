/* cli/main.c - `netdiff`: one subcommand per job. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#define ND_WEAK __attribute__((weak))
/* Subcommands not built yet are weak, so the table below stays complete. */
ND_WEAK const nd_cmd nd_cmd_encode, nd_cmd_decode, nd_cmd_inspect, nd_cmd_bench,
    nd_cmd_eval, nd_cmd_generate, nd_cmd_classes;

static const nd_cmd *const commands[] = {
    &nd_cmd_encode, &nd_cmd_decode, &nd_cmd_generate, &nd_cmd_classes,
    &nd_cmd_eval,   &nd_cmd_inspect, &nd_cmd_bench,
};

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "netdiff %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_fail(const char *cmd, nd_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "netdiff %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return nd_exit_code(st);
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: netdiff COMMAND [ARGS]   (netdiff COMMAND --help for each)\n\n"
               "Synthetic packet captures from diffusion models (nPrint images).\n\n"
               "commands:\n");
    for (size_t i = 0; i < ND_ARRAY_LEN(commands); i++)
        if (commands[i]->name)
            fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\nexit codes: 0 success, 1 runtime error, 2 usage error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("netdiff %s (%s)\n", ND_VERSION, ND_GIT_REV);
        return 0;
    }
    for (size_t i = 0; i < ND_ARRAY_LEN(commands); i++)
        if (commands[i]->name && !strcmp(commands[i]->name, argv[1]))
            return commands[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "netdiff: unknown command '%s' (see netdiff --help)\n", argv[1]);
    return 2;
}
