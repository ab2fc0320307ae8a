/* cli/paths.c - expanding the files and directories given on a command line. */
#include "cli/cli.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_collect_paths(const char *path, char ***list, int *n, int *cap)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        struct dirent **ents;
        int k = scandir(path, &ents, NULL, alphasort);
        if (k < 0)
            return -1;
        int rc = 0;
        for (int i = 0; i < k; i++) {
            if (ents[i]->d_name[0] != '.' && rc == 0) {
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, ents[i]->d_name);
                rc = cli_collect_paths(sub, list, n, cap);
            }
            free(ents[i]);
        }
        free(ents);
        return rc;
    }
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        char **nl = realloc(*list, (size_t)nc * sizeof *nl);
        if (!nl)
            return -1;
        *list = nl;
        *cap = nc;
    }
    char *dup = strdup(path);
    if (!dup)
        return -1;
    (*list)[(*n)++] = dup;
    return 0;
}
