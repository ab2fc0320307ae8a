"""tests/bench/bench_ops_torch.py NTHREADS [--serve] [--cuda] < spec

The PyTorch side of bench_ops: on the CPU with the same thread count, or with
--cuda on the GPU in fp16 (the GPU table: attention through
scaled_dot_product_attention, whichever of its kernels PyTorch picks; conv2d
through cuDNN with cudnn.benchmark on, so cuDNN runs its fastest algorithm).

--serve (what bench_ops.c uses, as a coprocess on stdin/stdout): a spec line
("idx op nsrc shape... dst_shape dst_dtype params...") builds that row's
tensors, runs it once as a warm-up and answers "1" (or "none" for an op it
cannot express); each following "t" line times one run and answers its
milliseconds. bench_ops.c sends a "t" right after each of its own runs of the
same row, so both sides are timed under the same load.

Without --serve: reads all the spec lines and prints "idx ms" (best of a few
runs) for each. Never needed by make or make test."""
import math
import sys
import time

import torch
import torch.nn.functional as F


def shape(s):
    return None if s == "-" else [int(v) for v in s.split(",")]


DEV = "cpu"
DTYPE = torch.float32


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def make_fn(op, srcs, out_shape, params):
    t = [None if s is None else (torch.rand(s, device=DEV) * 2 - 1).to(DTYPE) for s in srcs]
    if op == "linear":
        return lambda: F.linear(t[0], t[1], t[2])
    if op == "conv2d":
        stride, pt, pb, pl, pr = (int(p) for p in params[:5])
        if pt == pb and pl == pr:
            return lambda: F.conv2d(t[0], t[1], t[2], stride=stride, padding=(pt, pl))
        return lambda: F.conv2d(F.pad(t[0], (pl, pr, pt, pb)), t[1], t[2], stride=stride)
    if op == "group_norm":
        g, eps, silu = int(params[0]), float(params[1]), int(params[2])
        if silu:
            return lambda: F.silu(F.group_norm(t[0], g, t[1], t[2], eps))
        return lambda: F.group_norm(t[0], g, t[1], t[2], eps)
    if op == "layer_norm":
        eps = float(params[1])
        return lambda: F.layer_norm(t[0], t[0].shape[-1:], t[1], t[2], eps)
    if op == "attention":
        heads, causal = int(params[0]), bool(int(params[1]))
        B, Nq, C = t[0].shape
        Nk = t[1].shape[1]
        d = C // heads

        def attn():  # diffusers' layout handling: views in, one copy out
            q = t[0].view(B, Nq, heads, d).transpose(1, 2)
            k = t[1].view(B, Nk, heads, d).transpose(1, 2)
            v = t[2].view(B, Nk, heads, d).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            return o.transpose(1, 2).reshape(B, Nq, C)
        return attn
    if op == "softmax":
        return lambda: torch.softmax(t[0], -1)
    if op == "geglu":
        def geglu():
            a, g = t[0].chunk(2, dim=-1)
            return a * F.gelu(g)
        return geglu
    if op == "gelu":
        return lambda: F.gelu(t[0])
    if op == "quick_gelu":
        return lambda: t[0] * torch.sigmoid(1.702 * t[0])
    if op == "silu":
        return lambda: F.silu(t[0])
    if op == "add":
        return lambda: t[0] + t[1]
    if op == "mul":
        return lambda: t[0] * t[1]
    if op == "scale":
        s, b = float(params[0]), float(params[1])
        return lambda: t[0] * s + b
    if op == "concat":
        return lambda: torch.cat([t[0], t[1]], 1)
    if op == "upsample2x":
        return lambda: F.interpolate(t[0], scale_factor=2.0, mode="nearest")
    if op == "transpose":
        return lambda: t[0].transpose(1, 2).contiguous()
    if op == "copy":
        return lambda: t[0].to(torch.float16)
    if op == "timestep_emb":
        dim = int(params[0])
        half = dim // 2

        def temb():
            e = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32,
                                                          device=DEV) / half)
            a = t[0][:, None] * e[None]
            return torch.cat([torch.cos(a), torch.sin(a)], -1)
        return temb
    return None


def parse(line):
    f = line.split()
    idx, op, nsrc = int(f[0]), f[1], int(f[2])
    srcs = [shape(s) for s in f[3:3 + nsrc]]
    out_shape = shape(f[3 + nsrc])
    params = f[5 + nsrc:]
    return idx, make_fn(op, srcs, out_shape, params)


def serve():
    fn = None
    out = sys.stdout
    with torch.inference_mode():
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                if line == "t" or line.startswith("t "):
                    # "t K": one untimed run, then K timed back to back;
                    # answers the time per run (bench_ops.c's burst)
                    k = int(line[2:]) if line != "t" else 1
                    if fn is None:
                        out.write("none\n")
                    else:
                        if k > 1:
                            fn()
                        sync()
                        t0 = time.perf_counter()
                        for _ in range(k):
                            fn()
                        sync()
                        out.write(f"{(time.perf_counter() - t0) * 1e3 / k:.4f}\n")
                else:
                    fn = None  # free the previous row's tensors first
                    _, fn = parse(line)
                    if fn is not None:
                        fn()  # warm-up (cuDNN's algorithm search on the GPU)
                        sync()
                    out.write("1\n" if fn is not None else "none\n")
            except Exception as e:  # noqa: BLE001 - report, keep serving
                print(f"bench_ops_torch: {e}", file=sys.stderr)
                fn = None
                out.write("err\n")
            out.flush()


def main():
    global DEV, DTYPE
    torch.set_num_threads(int(sys.argv[1]))
    if "--cuda" in sys.argv[2:]:
        DEV, DTYPE = "cuda", torch.float16
        torch.backends.cudnn.benchmark = True
    if "--serve" in sys.argv[2:]:
        serve()
        return
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        idx, op, nsrc = int(f[0]), f[1], int(f[2])
        srcs = [shape(s) for s in f[3:3 + nsrc]]
        out_shape = shape(f[3 + nsrc])
        params = f[5 + nsrc:]
        fn = make_fn(op, srcs, out_shape, params)
        if fn is None:
            continue
        with torch.inference_mode():
            fn()  # warm-up
            sync()
            best, total, rep = math.inf, 0.0, 0
            while rep < 20 and (rep < 2 or total < 400):
                t0 = time.perf_counter()
                fn()
                sync()
                ms = (time.perf_counter() - t0) * 1e3
                total += ms
                best = min(best, ms)
                rep += 1
                if total > 4000:
                    break
        print(idx, f"{best:.4f}", flush=True)


if __name__ == "__main__":
    main()
