/* tests/fuzz/fuzz_config_json.c - hostile config.json for the UNet /
 * ControlNet, VAE and CLIP parsers (deep nesting, wrong types, huge numbers). */
#include "weights/weights.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    nd_err e;
    nd_unet_config u;
    nd_vae_config v;
    nd_clip_config c;
    if (nd_unet_config_parse(buf, size, &u, &e) == ND_OK &&
        (u.n_blocks < 1 || u.n_blocks > ND_W_MAXBLOCKS || u.layers_per_block < 1))
        abort(); /* accepted configs must be usable */
    nd_vae_config_parse(buf, size, &v, &e);
    nd_clip_config_parse(buf, size, &c, &e);
    free(buf);
    return 0;
}
