#include "common/nd.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
    [ND_OK] = "ok",
    [ND_EINVAL] = "invalid",
    [ND_EIO] = "io",
    [ND_EFORMAT] = "format",
    [ND_ENOMEM] = "nomem",
    [ND_EUNSUPPORTED] = "unsupported",
    [ND_ENOTFOUND] = "notfound",
    [ND_ECANCELLED] = "cancelled",
    [ND_EBACKEND] = "backend",
};
_Static_assert(ND_ARRAY_LEN(status_names) == ND_STATUS_COUNT,
               "status_names must name every nd_status");

nd_status nd_fail(nd_err *err, nd_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

nd_status nd_wrap(nd_err *err, nd_status st, const char *fmt, ...)
{
    if (err) {
        char old[ND_ERR_MAX];
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = '\0';
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %.*s", (int)(sizeof err->msg - 3 - (size_t)n), old);
    }
    return st;
}

const char *nd_status_name(nd_status st)
{
    if ((unsigned)st >= ND_STATUS_COUNT)
        return "unknown";
    return status_names[st];
}

int nd_exit_code(nd_status st)
{
    if (st == ND_OK)
        return 0;
    return st == ND_EINVAL ? 2 : 1;
}
