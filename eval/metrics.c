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
    double kl_p = 0, kl_q = 0, tv = 0, bc = 0;
    for (size_t i = 0; i < n; i++) {
        double a = p[i] / sp, b = q[i] / sq, mid = 0.5 * (a + b);
        /* 0 log 0 = 0; mid > 0 whenever a or b is */
        if (a > 0)
            kl_p += a * log2(a / mid);
        if (b > 0)
            kl_q += b * log2(b / mid);
        tv += fabs(a - b);
        bc += sqrt(a * b);
    }
    m.jsd = 0.5 * (kl_p + kl_q);
    m.tvd = 0.5 * tv;
    /* rounding can push the Bhattacharyya coefficient a hair past 1 */
    m.hel = bc >= 1 ? 0 : sqrt(1 - bc);
    if (m.jsd < 0)
        m.jsd = 0;
    if (m.jsd > 1)
        m.jsd = 1;
    if (m.tvd > 1)
        m.tvd = 1;
    return m;
}
