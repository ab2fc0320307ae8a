/* cli/cli.h - what the netdiff subcommands share. Only cli/ prints. */
#ifndef ND_CLI_H
#define ND_CLI_H

#include "common/nd.h"

typedef struct nd_cmd {
    const char *name;
    const char *summary;                  /* one line for `netdiff --help`  */
    int (*run)(int argc, char **argv);    /* argv[0] is the command name    */
} nd_cmd;

/* Every subcommand, defined in cli/cmd_NAME.c. */
extern const nd_cmd nd_cmd_encode, nd_cmd_decode, nd_cmd_inspect, nd_cmd_bench,
    nd_cmd_eval, nd_cmd_generate, nd_cmd_classes;

/* Prints "netdiff CMD: message" on stderr; returns exit code 2 (usage). */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "netdiff CMD: message" on stderr; returns the status's exit code. */
int cli_fail(const char *cmd, nd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends path to *list, or, for a directory, every file below it in
 * sorted order (hidden names skipped). Strings are the caller's to free.
 * Returns -1 (errno set) when a directory cannot be read. */
int cli_collect_paths(const char *path, char ***list, int *n, int *cap);
/* Parses a whole decimal number in [lo, hi]; 0 on success. */
int cli_parse_long(const char *s, long lo, long hi, long *out);

#endif
