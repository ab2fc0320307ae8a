/* common/nd.h - the status type and error buffer every module returns.
 *
 * Errors are values: a function that can fail returns nd_status and, when it
 * fails, writes one line (no trailing newline) into the caller's nd_err.
 * Only cli/ and server/ print or answer; every other module only returns.
 * The caller owns the nd_err; it may be NULL when the caller does not care. */
#ifndef ND_COMMON_H
#define ND_COMMON_H

#include <stddef.h>

typedef enum {
    ND_OK = 0,
    ND_EINVAL,       /* bad argument or request (a usage error)            */
    ND_EIO,          /* the OS refused: open, read, write, mmap            */
    ND_EFORMAT,      /* outside data is malformed: pcap, PNG, CSV, JSON... */
    ND_ENOMEM,       /* an allocation failed or a size limit was exceeded  */
    ND_EUNSUPPORTED, /* well-formed but not something we handle            */
    ND_ENOTFOUND,    /* a named thing (class, key, file) does not exist    */
    ND_ECANCELLED,   /* the caller asked us to stop                        */
    ND_EBACKEND,     /* a compute backend (CUDA, cuBLAS, ...) failed       */
    ND_STATUS_COUNT
} nd_status;

#define ND_ERR_MAX 512
typedef struct nd_err {
    char msg[ND_ERR_MAX];
} nd_err;

/* Writes the formatted message into err (if not NULL) and returns st. */
nd_status nd_fail(nd_err *err, nd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes an existing message: "<prefix>: <old message>". Returns st. */
nd_status nd_wrap(nd_err *err, nd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Stable lower-case name of a status ("ok", "invalid", "io", ...). */
const char *nd_status_name(nd_status st);

/* Process exit code for a status: 0 ok, 2 usage (ND_EINVAL), 1 otherwise. */
int nd_exit_code(nd_status st);

#define ND_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
