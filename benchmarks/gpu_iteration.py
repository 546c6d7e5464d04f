"""One Flash-DMD training iteration at scale: seconds per iteration, peak memory, and where the time goes.

    python benchmarks/gpu_iteration.py --model sdxl --pretrained stabilityai/stable-diffusion-xl-base-1.0 \
        --sam facebook/sam-vit-base --resolution 1024 --batch 1 --bf16 --grad-ckpt          # on a GPU, real weights
    python benchmarks/gpu_iteration.py --model tiny-sdxl --out benchmarks/results/quick        # anywhere, tiny models

The run is built by the trainer itself (`flash_dmd.train.build`), so it measures what `scaled_runs/sdxl.sh` runs.
Without --image-dir/--prompts it makes a small synthetic image folder and prompt file (timing does not depend on
what the pixels show). It measures:

* seconds per iteration (median of --steps timed iterations after --warmup), and peak GPU memory;
* each essential pass on its own at the same batch (teacher forward; student and fake score forward and backward;
  VAE decode and SAM forward), and, with the pass counts the Distiller's hooks record, the share of an iteration each
  takes and the ratio of the iteration to the sum of its essential passes (1.0 = no overhead);
* GPU-hours projected for the paper's recipe, 1k iterations at batch 64 (linear in batch, perfect data parallelism).

Writes `<out>/gpu_iteration.json` with the device named. Numbers from one run on one machine; rerun to compare.
"""
from __future__ import annotations
import argparse, json, os, platform, statistics, sys, tempfile, time, warnings
from pathlib import Path
import torch

def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def _timed(fn, dev, reps: int) -> float:
    "Median seconds of `fn()` over `reps` runs, after one warm-up."
    fn(); _sync(dev)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); _sync(dev); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

def synthetic_data(root: Path, size: int, n: int = 8) -> tuple[str, str]:
    "A folder of `n` random RGB images and a prompt file, for timing runs without a dataset."
    from PIL import Image
    import numpy as np
    img = root / 'images'; img.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n): Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(img / f'{i}.png')
    (root / 'prompts.txt').write_text('\n'.join(['a photo of a cat', 'a red car on a road', 'a bowl of fruit', 'a portrait']))
    return str(img), str(root / 'prompts.txt')

def pass_costs(d, reps: int, amp) -> dict:
    "Seconds of each essential pass on its own, at the run's per-process batch."
    dev, B = d.device, d.cfg.batch
    g = torch.Generator().manual_seed(0)
    x, c = d.real_batch(B, g)
    t = torch.full((B,), 499., device=dev)
    out = {}
    def fwd(m, grad):
        def f():
            with amp(), torch.set_grad_enabled(grad):
                y = m(x, t, c)
                if grad: y.float().mean().backward()
        return f
    with d.passes.paused():
        out['teacher_fwd'] = _timed(fwd(d.teacher, False), dev, reps)
        for name, m in (('student', d.student), ('fake', d.fake)):
            out[f'{name}_fwd'] = _timed(fwd(m, False), dev, reps)
            out[f'{name}_fwd_bwd'] = _timed(fwd(m, True), dev, reps)
            m.zero_grad(set_to_none=True)
        if d.disc is not None and getattr(d.disc, 'decode', None) is not None:
            def disc(grad):
                def f():
                    xx = x.detach().requires_grad_(grad)
                    with amp(), torch.set_grad_enabled(grad):
                        y = d.disc(xx, c if d.disc.cond is not None else None)
                        if grad: y.float().mean().backward()
                return f
            out['disc_fwd'] = _timed(disc(False), dev, reps)           # VAE decode + SAM + heads
            out['disc_fwd_bwd'] = _timed(disc(True), dev, reps)
            d.disc.zero_grad(set_to_none=True)
            with torch.no_grad(), amp():
                out['vae_decode_fwd'] = _timed(lambda: d.disc.decode(x), dev, reps)
                img = d.disc.decode(x)
                out['sam_fwd'] = _timed(lambda: d.disc.backbone(img), dev, reps)
    return out

def plot(res: dict, path: Path):
    "Bars: each pass's share of one iteration, from the isolated timings and the hooks' pass counts."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sh = res['share_of_iteration']
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(sh) + 1.4))
    ax.barh(list(sh), list(sh.values()), color='tab:blue'); ax.invert_yaxis()
    ax.axvline(1.0, c='k', lw=0.8, ls=':')
    ax.set(xlabel='share of one iteration (pass counts x isolated pass time / iteration time)',
           title=f"{res['model']} on {res['device']}\n{res['sec_per_iter']:.3f} s/iter at batch {res['batch_per_process']}; "
                 f"iteration / essential passes = {res['iteration_over_essential']:.2f}")
    ax.title.set_fontsize(9); plt.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='sdxl', choices=('sdxl', 'tiny-sdxl', 'sd3', 'tiny-sd3'))
    p.add_argument('--pretrained', default='stabilityai/stable-diffusion-xl-base-1.0')
    p.add_argument('--sam', default='facebook/sam-vit-base')
    p.add_argument('--resolution', type=int, default=1024)
    p.add_argument('--batch', type=int, default=1, help='per-process batch')
    p.add_argument('--method', default='flash')
    p.add_argument('--bf16', action='store_true', help='mixed_precision=bf16 (autocast)')
    p.add_argument('--grad-ckpt', action='store_true', help='gradient checkpointing of student and fake score')
    p.add_argument('--adam8bit', action='store_true')
    p.add_argument('--image-dir'); p.add_argument('--prompts')
    p.add_argument('--steps', type=int, default=10, help='timed iterations')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--reps', type=int, default=5, help='repetitions of each isolated pass')
    p.add_argument('--paper-batch', type=int, default=64); p.add_argument('--paper-iters', type=int, default=1000)
    p.add_argument('--out', default='benchmarks/results')
    p.add_argument('overrides', nargs='*', metavar='key=value', help='further TrainConfig overrides')
    a = p.parse_args(argv)
    warnings.filterwarnings('ignore')
    from contextlib import nullcontext
    from flash_dmd.train import load_config, build
    tiny = a.model.startswith('tiny-')
    tmp = tempfile.mkdtemp(prefix='gpu_iteration-')
    over = [f'model={a.model}', f'method={a.method}', f'distill.batch={a.batch}', 'report_to=none', f'output_dir={tmp}/run']
    if not tiny:
        img, pr = (a.image_dir, a.prompts) if a.image_dir and a.prompts else synthetic_data(Path(tmp), a.resolution)
        over += [f'pretrained={a.pretrained}', f'sam={a.sam}', f'resolution={a.resolution}', f'image_dir={img}', f'prompts={pr}']
    if a.bf16: over.append('mixed_precision=bf16')
    if a.grad_ckpt: over.append('gradient_checkpointing=true')
    if a.adam8bit: over.append('optimizer=adam8bit')
    cfg = load_config(overrides=over + list(a.overrides))
    d = build(cfg)
    dev = d.device
    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if cfg.mixed_precision == 'bf16' else nullcontext
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    with amp():
        for _ in range(a.warmup): d.step()
    f0, b0 = dict(d.passes.forward), dict(d.passes.backward)
    times = []
    for _ in range(a.steps):
        _sync(dev); t0 = time.perf_counter()
        with amp(): d.step()
        _sync(dev); times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    enc = getattr(d, 'data_stats', None)                          # real images VAE-encoded per iteration (image-folder runs)
    images_per_iter = None
    if enc is not None:
        n0 = enc['images_encoded']
        with amp():
            for _ in range(a.steps): d.step()
        now = (enc['images_encoded'] - n0) / a.steps
        cond, d.cond_batch, n0 = d.cond_batch, None, enc['images_encoded']     # the old path: conditions read off real batches
        with amp():
            for _ in range(a.steps): d.step()
        images_per_iter = {'conditions_from_prompts (now)': now, 'conditions_from_real_batches (before)': (enc['images_encoded'] - n0) / a.steps}
        d.cond_batch = cond
    fwd = {k: (d.passes.forward[k] - f0[k]) / a.steps / a.batch for k in f0}        # passes per iteration, in batches
    bwd = {k: (d.passes.backward[k] - b0[k]) / a.steps / a.batch for k in b0}
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None
    costs = pass_costs(d, a.reps, amp)
    one = lambda k, part: costs.get(f'{k}_{part}')
    share, total = {}, 0.
    for k in fwd:
        f, fb = one(k, 'fwd'), one(k, 'fwd_bwd')
        if f is None: continue
        s = fwd[k] * f + (bwd.get(k, 0) * max(fb - f, 0.) if fb is not None else 0.)
        share[k] = s / sec; total += s
    if 'vae_decode_fwd' in costs and fwd.get('disc'):                 # split the critic's forward into its parts
        share['disc.vae_decode_fwd'] = fwd['disc'] * costs['vae_decode_fwd'] / sec
        share['disc.sam_fwd'] = fwd['disc'] * costs['sam_fwd'] / sec
    gpu_h = a.paper_iters * sec * (a.paper_batch / a.batch) / 3600
    res = {'benchmark': 'gpu_iteration', 'device': torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)',
           'torch': torch.__version__, 'python': platform.python_version(), 'model': a.model, 'tiny_models': tiny,
           'pretrained': None if tiny else a.pretrained, 'sam': None if tiny else a.sam, 'resolution': None if tiny else a.resolution,
           'method': a.method, 'batch_per_process': a.batch, 'bf16': a.bf16, 'gradient_checkpointing': a.grad_ckpt, 'adam8bit': a.adam8bit,
           'sec_per_iter': sec, 'sec_per_iter_all': times, 'peak_memory_gib': peak, 'images_vae_encoded_per_iter': images_per_iter,
           'passes_per_iter_in_batches': {'forward': fwd, 'backward': bwd}, 'isolated_pass_seconds': costs,
           'share_of_iteration': share, 'essential_sum_s': total, 'iteration_over_essential': sec / total if total else None,
           'projection': {'recipe': f'{a.paper_iters} iterations at batch {a.paper_batch}', 'gpu_hours': gpu_h,
                          'assumes': 'time linear in batch, perfect data parallelism, this device'}}
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'gpu_iteration.json').write_text(json.dumps(res, indent=1))
    plot(res, out / 'gpu_iteration.png')
    print(f"{res['device']}: {sec:.3f} s/iter at batch {a.batch}" + (f", peak {peak:.1f} GiB" if peak else '')
          + f"; iteration / essential passes = {res['iteration_over_essential']:.2f}; projected {gpu_h:.2f} GPU-hours for {res['projection']['recipe']}")
    print('shares:', {k: round(v, 3) for k, v in share.items()})
    if images_per_iter: print('real images VAE-encoded per iteration:', images_per_iter)
    print('wrote', out / 'gpu_iteration.json')
    return res

if __name__ == '__main__':
    main()
