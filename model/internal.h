/* model/internal.h - what the model's files share beyond model/sd.h. */
#ifndef ND_MODEL_INTERNAL_H
#define ND_MODEL_INTERNAL_H

#include "model/sd.h"

nd_backend *nd_unet_backend_(const nd_unet *u);
nd_backend *nd_controlnet_backend_(const nd_controlnet *cn);

#endif
