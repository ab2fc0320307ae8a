/* cli/eval_random.h - the random-bits-through-repair baseline for `netdiff eval`. */
#ifndef ND_CLI_EVAL_RANDOM_H
#define ND_CLI_EVAL_RANDOM_H

#include "eval/eval.h"

/* Adds n_flows repaired random flows to e's RANDOM side (none when e has no
 * REAL flows yet: their lengths are borrowed). */
nd_status cli_eval_random(nd_eval *e, uint64_t n_flows, uint64_t seed, nd_err *err);

#endif
