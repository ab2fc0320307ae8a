#!/usr/bin/env python3
"""Position check (an experiment, not part of the default model's command).

Hypothesis: the default's two-level UNet cannot place headers in the right columns (no positional
signal); a four-level UNet on 8 x 144 latents (images padded to 1152 columns with vacant blue) can.
Trains both for the same steps on the same latents (30 train flows per class, VAE from
train_default.py's work folder) and compares where samples drawn from pure noise put their bits.

  python train/position_check.py [STEPS] [WORK_DIR]     (1000 steps: ~12 min on 2 CPU cores)

Result on 2026-11-24 (1000 steps, v2's VAE): both drew IPv4 columns 0-160 filled 0.04 / 0.03 (real
0.15) and 58-60 rows (real 16.4): no difference at this training length.
"""
import sys, os, time, math, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_default as td
from diffusers import AutoencoderKL, UNet2DConditionModel, DDPMScheduler, DDIMScheduler
torch.set_num_threads(2)
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
W = sys.argv[2] if len(sys.argv) > 2 else '/work/data/default-model/work'
vae = AutoencoderKL.from_pretrained(W + '/vae').eval()
names, labels, arr = td.load_images('/work/data/default-model/images/train')
sub = td.per_class(labels, 30)
arr = arr[sub]; labels = [labels[i] for i in sub]
classes = td.class_table(); prompt = {c['name']: c['prompt'] for c in classes}
keep = [i for i, l in enumerate(labels) if l in prompt]
arr = arr[keep]; labels = [labels[i] for i in keep]
pad = np.zeros((len(arr), 64, 48, 3), np.uint8); pad[..., 2] = 255
arrp = np.concatenate([arr, pad], 2)
cache = os.path.join(W, 'position_latents.pt')
if os.path.exists(cache):
    lat138, lat144 = torch.load(cache)
else:
    lat138 = td.latents_of(vae, arr); lat144 = td.latents_of(vae, arrp)
    torch.save((lat138, lat144), cache)
tok = td.tokenizer(os.path.join(W, 'tokenizer')); te = td.text_encoder()
names_c = sorted(prompt)
ctxs = td.embed(te, tok, [prompt[c] for c in names_c] + [''])
cls = torch.tensor([names_c.index(l) for l in labels])
real_prof = (torch.from_numpy(arr).float().argmax(-1) != 2).float().mean((0, 1))  # per column
print('flows', len(arr), flush=True)
sched = DDPMScheduler(**td.SCHED); ac = sched.alphas_cumprod

def train(unet, lat, tag):
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(1); t0 = time.time()
    for step in range(STEPS):
        idx = torch.randint(0, len(lat), (8,), generator=g)
        z0 = lat[idx]; n = torch.randn(z0.shape, generator=g); t = torch.randint(0, 1000, (8,), generator=g)
        zt = sched.add_noise(z0, n, t)
        ctx = ctxs[cls[idx]]
        pred = unet(zt, t, encoder_hidden_states=ctx).sample
        snr = ac[t] / (1 - ac[t]); wt = torch.clamp(snr, max=5.0) / snr
        loss = (F.mse_loss(pred, n, reduction='none').mean((1, 2, 3)) * wt).mean()
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        for gr in opt.param_groups:
            gr['lr'] = 1e-3 * min(1.0, (step + 1) / 30) * (0.5 * (1 + math.cos(math.pi * step / STEPS)) * 0.9 + 0.1)
        opt.step()
        if step % 250 == 0: print(tag, step, round(loss.item(), 4), '%.0fs' % (time.time() - t0), flush=True)
    return unet.eval()

def sample(unet, shape, n=16):
    s = DDIMScheduler(**td.SCHED); s.set_timesteps(20)
    g = torch.Generator().manual_seed(7)
    z = torch.randn((n,) + shape, generator=g)
    c = ctxs[torch.arange(n) % (len(ctxs) - 1)]
    u = ctxs[-1:].expand_as(c)
    with torch.no_grad():
        for t in s.timesteps:
            e = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([u, c])).sample
            eu, ec = e.chunk(2); z = s.step(eu + 3.0 * (ec - eu), t, z).prev_sample
        im = torch.cat([vae.decode(z[i:i + 4] / 0.18215).sample for i in range(0, n, 4)])
    idx = im.argmax(1)[..., :1104]
    rows = (idx != 2).any(-1).sum(-1).float()
    prof = (idx != 2).float().mean((0, 1))
    return rows, prof

base = dict(td.UNET_CFG)
deep = dict(td.UNET_CFG, block_out_channels=[32, 64, 64, 64],
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"])
for tag, cfg, lat in (('deep144', deep, lat144), ('base138', base, lat138)):
    torch.manual_seed(3)
    u = train(UNet2DConditionModel(**cfg), lat, tag)
    rows, prof = sample(u, tuple(lat.shape[1:]))
    # column profile: where non-vacant pixels sit, vs the real flows' (L1 over columns, 0 = same)
    print('%s: rows drawn mean %.1f (real %.1f), column-profile L1 %.1f, IPv4 cols 0-160 filled %.2f (real %.2f), '
          'cols 160-480 %.2f (real %.2f)' % (tag, rows.mean(), (torch.from_numpy(arr).float().argmax(-1) != 2).any(-1).sum(-1).float().mean(),
          (prof - real_prof).abs().sum(), prof[:160].mean(), real_prof[:160].mean(), prof[160:480].mean(), real_prof[160:480].mean()), flush=True)
