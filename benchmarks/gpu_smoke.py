"""GPU smoke run: every Stage 1 preset, a Stage 2 cycle and (when diffusers is installed) the tiny SDXL + SAM path,
on CUDA, with the same toy work timed on the CPU in the same run. Writes benchmarks/results/gpu_smoke.json.

    python benchmarks/gpu_smoke.py [--out DIR]

It checks that the core runs on a GPU (every tensor on the right device, losses finite) and measures seconds per
iteration; the card and the CPU are named in the JSON. Tiny models only: no weights are downloaded.
Each row builds its models from its own copy of the toy teacher on its own device, and asserts the device of every
parameter, buffer and sample it reports (an earlier version moved one shared teacher in place, so its "cpu" rows ran
on the GPU and its GPU rows on the CPU).
"""
from __future__ import annotations
import argparse, copy, json, os, platform, time, traceback, warnings
from pathlib import Path
import torch

def _time_steps(d, n, sync):
    for _ in range(3): d.step()
    sync(); t0 = time.perf_counter()
    for _ in range(n): out = d.step()
    sync()
    return (time.perf_counter() - t0) / n, out

def _assert_on(d, dev: torch.device, what: str):
    "Every parameter and buffer of `d`'s networks is on `dev`, or an AssertionError names the first one that is not."
    for k in ('student', 'fake', 'teacher', 'disc'):
        m = getattr(d, k, None)
        if m is None: continue
        for n, t in [*m.named_parameters(), *m.named_buffers()]:
            assert t.device.type == dev.type, f"{what}: {k}.{n} is on {t.device}, not {dev}"

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='benchmarks/results')
    p.add_argument('--steps', type=int, default=30)
    a = p.parse_args(argv)
    warnings.filterwarnings('ignore')
    from flash_dmd.toy import TeacherConfig, train_teacher
    from flash_dmd.distill import PRESETS, preset, toy_distiller, student_samples
    from flash_dmd.rl import JointTrainer, rl_preset
    from flash_dmd.rewards import NoiseAwareRewardModel
    cuda = torch.cuda.is_available()
    dev = torch.device('cuda' if cuda else 'cpu')
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    res = {'benchmark': 'gpu_smoke', 'device': torch.cuda.get_device_name(0) if cuda else 'no GPU', 'torch': torch.__version__,
           'python': platform.python_version(), 'cpu_count': os.cpu_count(), 'cpu_threads': torch.get_num_threads(),
           'toy': {}, 'stage2': {}, 'sdxl_tiny': {}}
    teacher = train_teacher(TeacherConfig('grid25', 'vp', steps=300), seed=0)     # stays on the CPU: rows take copies
    for name in PRESETS:
        row = {}
        for where in (('cpu', 'gpu') if cuda else ('cpu',)):
            rdev = dev if where == 'gpu' else torch.device('cpu')
            for batch in ((256,) if where == 'cpu' else (256, 4096)):
                d = toy_distiller(preset(name, batch=batch), copy.deepcopy(teacher).to(rdev), 'grid25')
                _assert_on(d, rdev, f'{name} {where}')
                sec, out = _time_steps(d, a.steps, sync if where == 'gpu' else (lambda: None))
                finite = all(v == v and abs(v) != float('inf') for k, v in out.items() if isinstance(v, float))
                x, _ = student_samples(d.student, 512, 5, d.schedule)
                _assert_on(d, rdev, f'{name} {where}, after {a.steps + 3} steps')
                assert x.device.type == rdev.type, f"{name} {where}: samples on {x.device}, not {rdev}"
                row[f'{where}_batch{batch}'] = {'sec_per_iter': sec, 'finite': finite, 'device': str(rdev), 'params_on_device': True,
                                                'samples_device': x.device.type}
        assert next(teacher.parameters()).device.type == 'cpu'
        if 'gpu_batch256' in row: row['cpu_over_gpu_batch256'] = row['cpu_batch256']['sec_per_iter'] / row['gpu_batch256']['sec_per_iter']
        res['toy'][name] = row
        print(name, {k: (round(v['sec_per_iter'] * 1000, 2) if isinstance(v, dict) else round(v, 2)) for k, v in row.items()}, flush=True)
    # Stage 2: a few joint cycles on the device
    t = copy.deepcopy(teacher).to(dev)
    lrm = NoiseAwareRewardModel(t.schedule, 5).to(dev)
    jt = JointTrainer(rl_preset('flash+rl'), toy_distiller(preset('flash'), t, 'grid25'), lrm, lambda x, c: torch.tanh(x[:, 0]))
    _assert_on(jt.d, dev, 'stage2')
    sync(); t0 = time.perf_counter()
    for _ in range(5): out = jt.step()
    sync()
    res['stage2'] = {'device': str(dev), 'sec_per_cycle': (time.perf_counter() - t0) / 5, 'rl_updates': jt.rl_updates, 'last': {k: v for k, v in out.items() if isinstance(v, (int, float))}}
    print('stage2', res['stage2'], flush=True)
    # the tiny SDXL and SAM path, when diffusers is present
    try:
        from functools import partial
        from flash_dmd.models.sdxl import tiny_sdxl, shape_pool, vae_decode
        from flash_dmd.models.sam import tiny_sam, SamFeatures, conv_head
        from flash_dmd.distill import Distiller
        parts = tiny_sdxl(seed=0)
        pool = shape_pool(parts, n=16)                       # encoded on the CPU, moved per batch
        for m in (parts.unet, parts.vae, *parts.text_encoders): m.to(dev)
        real_batch = lambda n, g: tuple(v.to(dev) for v in pool(n, g))
        for gan in ('fake_head', 'pixel'):
            kw = {}
            if gan == 'pixel':
                bb = SamFeatures(tiny_sam(seed=1)).to(dev); parts.vae.requires_grad_(False)
                kw = dict(disc_backbone=bb, disc_dims=bb.dims, head_fn=partial(conv_head, hidden=32, n_down=1, groups=8),
                          decode=partial(vae_decode, parts.vae))
            d = Distiller(preset('flash', gan=gan, batch=2, cond_gan=False, guidance=3.0), parts.denoiser(), parts.schedule, real_batch, **kw)
            _assert_on(d, dev, f'sdxl tiny {gan}')
            sec, out = _time_steps(d, 5, sync)
            res['sdxl_tiny'][gan] = {'device': str(dev), 'sec_per_iter': sec, 'losses': {k: v for k, v in out.items() if isinstance(v, float)}}
            print('sdxl tiny', gan, res['sdxl_tiny'][gan], flush=True)
    except Exception as e:
        res['sdxl_tiny'] = {'skipped': f'{type(e).__name__}: {e}', 'trace': traceback.format_exc()[-1500:]}
        print('sdxl tiny skipped:', res['sdxl_tiny']['skipped'], flush=True)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'gpu_smoke.json').write_text(json.dumps(res, indent=1, default=str))
    print('wrote', out / 'gpu_smoke.json')

if __name__ == '__main__':
    main()
