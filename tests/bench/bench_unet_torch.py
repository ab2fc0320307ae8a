"""tests/bench/bench_unet_torch.py DIR NTHREADS REPS TAG...
   tests/bench/bench_unet_torch.py DIR NTHREADS --serve

The diffusers (PyTorch CPU) side of bench_unet: the SAME random SD1.5 UNet and
ControlNet that bench_unet.c made (DIR/unet.safetensors, an SD1.5 LDM single file;
DIR/cn.safetensors, lllyasviel layout with the control_model. prefix; f16),
converted with diffusers' own single-file converters, loaded as f32 into
UNet2DConditionModel / ControlNetModel with SD1.5's configuration, run on the
inputs bench_unet.c used for each shape TAG (DIR/io_TAG.safetensors: x, t,
ctx, hint, and its eps output).

Prints one line per TAG on stdout:
  TAG unet_s cn_s peak_mb max_rel_err
(best of REPS runs; peak RSS during the runs, after a reset of the
high-water mark; max|eps_nd - eps_diffusers| / max|eps_diffusers|).
--serve (what bench_unet.c uses, as a coprocess, so both sides are timed
under the same load): prints "ready" once loaded; each "run TAG" line runs
one ControlNet + UNet eval on io_TAG's inputs and answers "TAG unet_s cn_s";
"end TAG" answers the TAG line above (best, peak, error against the eps then
in io_TAG).
Exit status 2 when PyTorch or diffusers is missing. Never needed by make or
make test."""
import os
import resource
import sys
import time

try:
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from safetensors import safe_open
    from safetensors.torch import load_file
except ImportError as e:  # the C side says the peer was skipped
    print("no PyTorch/diffusers: %s" % e, file=sys.stderr)
    sys.exit(2)

# SD1.5 (sd15.md section 4; diffusers' unet/config.json of SD1.5)
UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5,
            act_fn="silu", flip_sin_to_cos=True, freq_shift=0, downsample_padding=1,
            mid_block_scale_factor=1, use_linear_projection=False)
CONTROLNET = dict(in_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                  cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
                  norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0, downsample_padding=1,
                  conditioning_embedding_out_channels=(16, 32, 96, 256), use_linear_projection=False)


def log(msg):
    print("  diffusers: " + msg, file=sys.stderr, flush=True)


def build(cls, cfg, sd):
    """The model on the meta device (no random init of 1.2 G parameters), then
    the converted f32 weights assigned in."""
    with torch.device("meta"):
        m = cls(**cfg)
    m.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    return m.eval()


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Peer:
    def __init__(self, d, nthreads):
        self.d = d
        torch.set_num_threads(nthreads)
        t0 = time.time()
        with safe_open(os.path.join(d, "unet.safetensors"), "pt") as f:  # the UNet of the LDM file
            ldm = {k: f.get_tensor(k) for k in f.keys() if k.startswith("model.diffusion_model.")}
        self.unet = build(UNet2DConditionModel, UNET, sfu.convert_ldm_unet_checkpoint(ldm, dict(UNET)))
        del ldm
        self.cn = None
        if os.path.exists(os.path.join(d, "cn.safetensors")):
            ldm = load_file(os.path.join(d, "cn.safetensors"))
            self.cn = build(ControlNetModel, CONTROLNET,
                            sfu.convert_controlnet_checkpoint(ldm, dict(CONTROLNET)))
            del ldm
        log("torch %s, %d threads, models loaded as f32 in %.1f s" %
            (torch.__version__, nthreads, time.time() - t0))
        self.tag = None

    def io(self, tag):
        return load_file(os.path.join(self.d, "io_%s.safetensors" % tag))

    def run(self, tag):
        """One eval; returns (unet_s, cn_s)."""
        if tag != self.tag:
            self.tag, self.inp = tag, self.io(tag)
            self.best_u = self.best_c = float("inf")
            reset_peak()
        x, t, ctx = self.inp["x"], self.inp["t"], self.inp["ctx"]
        down = mid = None
        tc = 0.0
        with torch.inference_mode():
            if self.cn is not None:
                c0 = time.time()
                down, mid = self.cn(x, t, encoder_hidden_states=ctx, controlnet_cond=self.inp["hint"],
                                    conditioning_scale=1.0, return_dict=False)
                tc = time.time() - c0
            u0 = time.time()
            self.eps = self.unet(x, t, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                                 mid_block_additional_residual=mid).sample
            tu = time.time() - u0
        self.best_u, self.best_c = min(self.best_u, tu), min(self.best_c, tc)
        return tu, tc

    def end(self, tag):
        want = self.eps.double()
        err = float((self.io(tag)["eps"].double() - want).abs().max() / want.abs().max())
        return "%s %.3f %.3f %.0f %.3g" % (tag, self.best_u, self.best_c, peak_mb(), err)


def main():
    d, nthreads = sys.argv[1], int(sys.argv[2])
    peer = Peer(d, nthreads)
    if sys.argv[3] == "--serve":
        print("ready", flush=True)
        for line in sys.stdin:
            cmd, tag = line.split()
            if cmd == "run":
                print("%s %.3f %.3f" % ((tag,) + peer.run(tag)), flush=True)
            else:
                print(peer.end(tag), flush=True)
        return
    reps, tags = int(sys.argv[3]), sys.argv[4:]
    for tag in tags:
        for _ in range(reps):
            peer.run(tag)
        print(peer.end(tag), flush=True)


if __name__ == "__main__":
    main()
