/* eval/metrics.c - JSD (base 2), TVD and Hellinger between two histograms. */
#include "eval/eval.h"

#include <math.h>

nd_eval_metric nd_eval_distances(const double *p, const double *q, size_t n)
{
    nd_eval_metric m = {0, 0, 0};
    double sp = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        sp += p[i];
        sq += q[i];
    }
    if (sp <= 0 && sq <= 0)
        return m;
    if (sp <= 0 || sq <= 0)
        return (nd_eval_metric){1, 1, 1};
    double kl_p = 0, kl_q = 0, tv = 0, sq_diff = 0;
    for (size_t i = 0; i < n; i++) {
        double a = p[i] / sp, b = q[i] / sq, mid = 0.5 * (a + b);
        /* 0 log 0 = 0; mid > 0 whenever a or b is */
        if (a > 0)
            kl_p += a * log2(a / mid);
        if (b > 0)
            kl_q += b * log2(b / mid);
        tv += fabs(a - b);
        double d = sqrt(a) - sqrt(b);
        sq_diff += d * d;
    }
    m.jsd = 0.5 * (kl_p + kl_q);
    m.tvd = 0.5 * tv;
    /* sqrt(1 - sum sqrt(pq)) written as sqrt(1/2 sum (sqrt p - sqrt q)^2):
     * the same number, but exactly 0 for equal histograms */
    m.hel = sqrt(0.5 * sq_diff);
    if (m.hel > 1)
        m.hel = 1;
    if (m.jsd < 0)
        m.jsd = 0;
    if (m.jsd > 1)
        m.jsd = 1;
    if (m.tvd > 1)
        m.tvd = 1;
    return m;
}
