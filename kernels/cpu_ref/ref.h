/* kernels/cpu_ref/ref.h - the reference op bodies (f32 tensors, validated). */
#ifndef ND_KERNELS_CPU_REF_REF_H
#define ND_KERNELS_CPU_REF_REF_H

#include "kernels/backend_impl.h"

void ref_linear(const nd_tensor *x, const nd_tensor *w, const nd_tensor *b, nd_tensor *y);
void ref_conv2d(const nd_tensor *x, const nd_tensor *w, const nd_tensor *b,
                const nd_conv2d_params *p, nd_tensor *y);
void ref_attention(const nd_tensor *q, const nd_tensor *k, const nd_tensor *v,
                   const nd_attention_params *p, nd_tensor *o, double *scores);
void ref_group_norm(const nd_tensor *x, const nd_tensor *g, const nd_tensor *b,
                    const nd_norm_params *p, nd_tensor *y);
void ref_layer_norm(const nd_tensor *x, const nd_tensor *g, const nd_tensor *b,
                    const nd_norm_params *p, nd_tensor *y);
void ref_softmax(const nd_tensor *x, nd_tensor *y);
void ref_unary(nd_op op, const nd_tensor *x, nd_tensor *y); /* gelu, quick_gelu, silu */
void ref_geglu(const nd_tensor *x, nd_tensor *y);
void ref_binary(nd_op op, const nd_tensor *a, const nd_tensor *b, nd_tensor *y);
void ref_scale(const nd_tensor *x, const nd_scale_params *p, nd_tensor *y);
void ref_concat(const nd_tensor *a, const nd_tensor *b, nd_tensor *y);
void ref_upsample2x(const nd_tensor *x, nd_tensor *y);
void ref_timestep_emb(const nd_tensor *t, const nd_timestep_params *p, nd_tensor *y);
void ref_transpose(const nd_tensor *x, nd_tensor *y);

#endif
