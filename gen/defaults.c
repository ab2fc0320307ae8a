/* gen/defaults.c - where the embedded default model lives. */
#include "gen/gen.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nd_default_paths_get(nd_default_paths *p)
{
    memset(p, 0, sizeof *p);
    const char *h = getenv("ND_HOME");
    if (h && *h) {
        snprintf(p->home, sizeof p->home, "%.2000s", h);
    } else {
        char exe[PATH_MAX];
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k > 0) {
            exe[k] = '\0';
            for (int up = 0; up < 2; up++) {
                char *s = strrchr(exe, '/');
                if (s)
                    *s = '\0';
            }
            snprintf(p->home, sizeof p->home, "%.2000s", exe[0] ? exe : "/");
        } else {
            snprintf(p->home, sizeof p->home, ".");
        }
    }
    snprintf(p->model, sizeof p->model, "%s/weights/default/netdiff_default.safetensors", p->home);
    snprintf(p->controlnet, sizeof p->controlnet,
             "%s/weights/default/control_netdiff_canny.safetensors", p->home);
    snprintf(p->lora, sizeof p->lora, "%s/weights/default/netdiff_lora.safetensors", p->home);
    snprintf(p->classes, sizeof p->classes, "%s/conf/classes.json", p->home);
}
