"""Digits (8x8, CPU): DMD2, the Pixel-GAN ablation and Flash-DMD distilling the same shipped conv UNet teacher, then Stage 2.

Every number written here is measured by this script in this run. Usage:

    python benchmarks/digits.py            # full run (about 15 minutes on 2 cores): benchmarks/results/digits.{json,png}
    python benchmarks/digits.py --quick    # under a minute, checks the pipeline: benchmarks/results/quick/

Stage 1: every method distils the teacher shipped in flash_dmd/assets with the same data, batch, learning rates
(flash_dmd.digits.DIGITS_DEFAULTS) and number of iterations (critic updates); DMD2 updates its generator on one
iteration in five (TTUR 5), Flash-DMD on every one. The 4-step student is evaluated every EVAL_EVERY iterations on
N_EVAL samples against the held-out split, in the features of the evaluation network (not the Pixel-GAN's backbone).
Cost is counted three ways: the paper's batch x generator iterations, network passes (forward + backward, in samples,
counted by hooks) and training seconds (one CPU thread per run).

Stage 2: from each seed's final Stage 1 student of STAGE2_FROM, the reward is stroke thickness (ink_reward, bounded),
scored for DPO on the teacher's posterior mean; distillation only (control), pure RL and joint RL + distillation run
for the same number of cycles (5 RL updates + 1 distillation iteration each). Hacking shows as accuracy and Fréchet
distance (held-out judges, never optimised) getting worse while the ink reward rises.
"""
from __future__ import annotations
import argparse, json, os, platform, time, warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _stats import mean as _mean, std as _std   # benchmarks/_stats.py (the script's folder is on sys.path)

METHODS = {   # name -> (preset, overrides on top of DIGITS_DEFAULTS)
    'dmd2': ('dmd2', {}), 'dmd2+A': ('dmd2+A', {}), 'flash': ('flash', {}), 'flash-nosplit': ('flash', {'split': False})}
SEEDS, ITERS, EVAL_EVERY, N_EVAL = (0, 1, 2), 500, 50, 1000
STAGE2_FROM, STAGE2_VARIANTS, CYCLES, RL_LR, STAGE2_EVAL_EVERY = 'flash-nosplit', ('distill-only', 'pure-rl', 'flash+rl'), 60, 1e-4, 20
RL_BETA = 6400.   # DPO beta on the per-dimension log-ratio: 8x8 digits have 64 numbers, so this is the old 100 on the sum
METRICS = ('fd', 'accuracy', 'confidence', 'diversity', 'precision', 'recall', 'saturation')
N_SHOW = 40   # samples kept per run for the picture (4 per class)

def _stage2(dist_cfg, state, seed, cycles, eval_every, n_eval, evaluator, teacher):
    "Stage 2 variants from one Stage 1 state; a curve of reward and judges per variant."
    import torch
    from flash_dmd.digits import digits_distiller, student_digits, ink_reward
    from flash_dmd.rewards import x0_reward
    from flash_dmd.rl import JointTrainer, rl_preset
    reward, out = ink_reward(), {}
    for name in STAGE2_VARIANTS:
        d = digits_distiller(dist_cfg, teacher)
        for k, sd in state.items(): getattr(d, k).load_state_dict(sd)
        jt = JointTrainer(rl_preset(name, lr=RL_LR, beta=RL_BETA, batch=dist_cfg.batch, seed=seed), d, x0_reward(teacher, reward), reward)
        curve, t0, err = [], time.perf_counter(), None
        def evaluate(cycle):
            x, y = student_digits(d.student, n_eval, seed=1)
            curve.append({'cycle': cycle, 'rl_updates': jt.rl_updates, 'distill_iterations': d.it - state_it,
                          'reward': reward(x, y).mean().item(), **evaluator(x, y), 'train_seconds': time.perf_counter() - t0})
            return x
        state_it = d.it
        evaluate(0)
        try:
            for c in range(1, cycles + 1):
                jt.step()
                if c % eval_every == 0 or c == cycles: x = evaluate(c)
        except FloatingPointError as e: err = str(e)
        out[name] = {'curve': curve, 'error': err, 'samples': student_digits(d.student, N_SHOW, seed=1)[0].tolist()}
    return out

def _run(job: dict) -> dict:
    "One Stage 1 run (and, for STAGE2_FROM, its Stage 2 variants) in a worker process with one thread."
    import torch
    torch.set_num_threads(1)
    warnings.filterwarnings('ignore')
    from flash_dmd.digits import digits_preset, run_digits, load_digits_teacher, DigitsEvaluator, student_digits
    teacher, evaluator = load_digits_teacher(), DigitsEvaluator()
    cfg = digits_preset(job['preset'], seed=job['seed'], **job['overrides'])
    t0 = time.perf_counter()
    try:
        d, curve = run_digits(cfg, job['iters'], job['eval_every'], job['n_eval'], teacher, evaluator)
        err = None
    except FloatingPointError as e:        # a diverged run is a result, not a crash
        d, curve, err = None, [], str(e)
    out = {**{k: job[k] for k in ('method', 'seed', 'iters')}, 'curve': curve, 'error': err,
           'wall_seconds': time.perf_counter() - t0,
           'samples': student_digits(d.student, N_SHOW, seed=1)[0].tolist() if d is not None else None}
    if job['stage2'] and d is not None:
        state = {k: {n: v.clone() for n, v in getattr(d, k).state_dict().items()} for k in ('student', 'fake', 'disc') if getattr(d, k) is not None}
        out['stage2'] = _stage2(cfg, state, job['seed'], job['cycles'], job['stage2_eval_every'], job['n_eval'], evaluator, teacher)
    return out

def final_value(curve: list, key: str, last: int = 2) -> float:
    "A run's final value of `key`: the mean of its last `last` evaluations (curves are noisy)."
    vals = [r[key] for r in curve[-last:]]
    return sum(vals) / len(vals)

def first_cost(curve: list, key: str, target: float, cost_key: str = 'batch_x_gen_iters'):
    "The cost at which a run's `key` (lower is better) first reaches `target`, or None if it never does."
    for r in curve:
        if r[key] <= target: return r[cost_key]
    return None

def _ms(vals): return {'mean': _mean(vals), 'std': _std(vals)}

def summarise(runs: list, methods) -> dict:
    "Per method: final metrics, best Fréchet distance, cost at the end and cost to first reach DMD2's final Fréchet distance."
    ok = lambda m: [r for r in runs if r['method'] == m and r['curve']]
    dmd2_fd = _mean([final_value(r['curve'], 'fd') for r in ok('dmd2')])
    summary = {}
    for m in methods:
        rs = ok(m)
        row = {'n_seeds': len(rs), 'n_diverged': len([r for r in runs if r['method'] == m]) - len(rs)}
        for key in METRICS: row[key] = _ms([final_value(r['curve'], key) for r in rs])
        row['best_fd'] = _ms([min(c['fd'] for c in r['curve']) for r in rs])
        for ck in ('iterations', 'generator_updates', 'batch_x_gen_iters', 'passes', 'train_seconds'): row[ck] = _ms([r['curve'][-1][ck] for r in rs])
        row['wall_seconds'] = _ms([r['wall_seconds'] for r in rs])
        costs = [first_cost(r['curve'], 'fd', dmd2_fd) for r in rs] if dmd2_fd is not None else []
        row['cost_to_dmd2_final_fd'] = {'mean': _mean(costs), 'reached': sum(c is not None for c in costs), 'of': len(rs),
                                        'unit': 'batch_x_gen_iters'}
        row['seconds_to_dmd2_final_fd'] = _mean([first_cost(r['curve'], 'fd', dmd2_fd, 'train_seconds') for r in rs]) if dmd2_fd is not None else None
        summary[m] = row
    return summary

def summarise_stage2(runs: list) -> dict:
    "Per Stage 2 variant: change of reward and of each judge from the Stage 1 start, and the final values, over seeds."
    out = {}
    for v in STAGE2_VARIANTS:
        curves = [r['stage2'][v]['curve'] for r in runs if r.get('stage2') and not r['stage2'][v]['error']]
        row = {'n_seeds': len(curves)}
        for key in ('reward',) + METRICS:
            row[key] = _ms([final_value(c, key) for c in curves])
            row[f'{key}_change'] = _ms([final_value(c, key) - c[0][key] for c in curves])
        row['rl_updates'], row['distill_iterations'] = curves[-1][-1]['rl_updates'] if curves else None, curves[-1][-1]['distill_iterations'] if curves else None
        row['train_seconds'] = _ms([c[-1]['train_seconds'] for c in curves])
        out[v] = row
    return out

def plot(runs, refs_samples, methods, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from flash_dmd.digits import show_digits
    by_class = lambda x: torch.stack(torch.as_tensor(x).split(10), 1).flatten(0, 1)   # one row per class
    seed0 = {r['method']: r for r in runs if r['seed'] == min(r2['seed'] for r2 in runs)}
    s2 = seed0.get(STAGE2_FROM, {}).get('stage2') or {}
    panels = [(k, v) for k, v in refs_samples.items()] + [(f'{m} student (4 steps)', seed0[m]['samples']) for m in methods if seed0.get(m, {}).get('samples')]
    panels += [(f'Stage 2: {v}', s2[v]['samples']) for v in ('pure-rl', 'flash+rl') if v in s2]
    fig = plt.figure(figsize=(2.1 * max(len(panels), 4), 7.2))
    gs = fig.add_gridspec(2, len(panels))
    for i, (title, x) in enumerate(panels):
        show_digits(fig.add_subplot(gs[0, i]), by_class(x), nrow=4, title=title)
    gs2 = gs[1, :].subgridspec(1, 5)
    for j, (key, xkey, title) in enumerate([('fd', 'batch_x_gen_iters', 'Fréchet distance vs batch x gen. iterations'),
                                            ('fd', 'train_seconds', 'Fréchet distance vs training seconds'),
                                            ('saturation', 'iterations', 'saturated pixels (|x| > 1.05)')]):
        ax = fig.add_subplot(gs2[0, j])
        for k, m in enumerate(methods):
            rs = [r for r in runs if r['method'] == m and r['curve']]
            if not rs: continue
            n = min(len(r['curve']) for r in rs)
            x = np.mean([[c[xkey] for c in r['curve'][:n]] for r in rs], 0)
            y = np.array([[c[key] for c in r['curve'][:n]] for r in rs])
            ax.plot(x, y.mean(0), label=m, color=f'C{k}')
            ax.fill_between(x, y.min(0), y.max(0), color=f'C{k}', alpha=0.15)
        ax.set_title(title, fontsize=9); ax.set_xlabel(xkey.replace('_', ' ') + ' (mean, min-max over seeds)', fontsize=8)
        if j == 0: ax.legend(fontsize=7)
    for j, (key, title) in enumerate([('reward', 'Stage 2: ink reward (training reward)'), ('fd', 'Stage 2: Fréchet distance (judge)')]):
        ax = fig.add_subplot(gs2[0, 3 + j])
        for k, v in enumerate(STAGE2_VARIANTS):
            cs = [r['stage2'][v]['curve'] for r in runs if r.get('stage2') and r['stage2'][v]['curve']]
            if not cs: continue
            n = min(len(c) for c in cs)
            ax.plot([p['cycle'] for p in cs[0][:n]], np.mean([[p[key] for p in c[:n]] for c in cs], 0), color=f'C{k + 4}', label=v)
        ax.set_title(title, fontsize=9); ax.set_xlabel(f'cycles from the {STAGE2_FROM} student', fontsize=8); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='tiny run (under a minute) that checks the pipeline and the file shape')
    p.add_argument('--out', default=None, help='output folder (default benchmarks/results, or benchmarks/results/quick with --quick)')
    p.add_argument('--workers', type=int, default=2, help='parallel runs, one thread each')
    a = p.parse_args(argv)
    out = Path(a.out or ('benchmarks/results/quick' if a.quick else 'benchmarks/results'))
    out.mkdir(parents=True, exist_ok=True)
    if a.quick: seeds, iters, every, n_eval, cycles, s2_every = (0,), 6, 3, 200, 2, 1
    else: seeds, iters, every, n_eval, cycles, s2_every = SEEDS, ITERS, EVAL_EVERY, N_EVAL, CYCLES, STAGE2_EVAL_EVERY
    t0 = time.time()
    import torch
    torch.set_num_threads(1)
    from dataclasses import asdict
    from flash_dmd.digits import (load_digits_teacher, digits_teacher_meta, DigitsEvaluator, digits_references, digits_split,
                                  teacher_digits, digits_preset, DIGITS_DEFAULTS)
    teacher, evaluator = load_digits_teacher(), DigitsEvaluator()
    refs = digits_references(teacher, evaluator, n=n_eval)
    x, y = digits_split('test')
    show = {'held-out data': torch.stack([x[y == c][:4] for c in range(10)], 1).flatten(0, 1),   # balanced order, like samples
            'teacher, 50 steps': teacher_digits(teacher, N_SHOW, 50)[0], 'teacher, 4 steps': teacher_digits(teacher, N_SHOW, 4)[0]}
    jobs = [dict(method=m, preset=pre, overrides=ov, iters=iters, eval_every=every, n_eval=n_eval, seed=s,
                 stage2=(m == STAGE2_FROM), cycles=cycles, stage2_eval_every=s2_every)
            for s in seeds for m, (pre, ov) in METHODS.items()]
    jobs.sort(key=lambda j: (not j['stage2'], j['method'] != 'flash'))              # longest first: better packing
    runs = []
    with ProcessPoolExecutor(a.workers) as ex:
        for i, r in enumerate(ex.map(_run, jobs), 1):
            runs.append(r)
            last = r['curve'][-1] if r['curve'] else {}
            print(f"[{i}/{len(jobs)}] {r['method']:14s} seed {r['seed']}: "
                  + (f"fd {last['fd']:.2f} (best {min(c['fd'] for c in r['curve']):.2f}) saturation {last['saturation']:.3f} ({r['wall_seconds']:.0f}s)"
                     if last else f"DIVERGED: {r['error']}"), flush=True)
    methods = list(METHODS)
    summary = summarise(runs, methods)
    stage2 = summarise_stage2(runs)
    plot(runs, show, methods, out / 'digits.png')                    # the picture needs the samples; the JSON does not
    for r in runs:
        r.pop('samples', None)
        for v in (r.get('stage2') or {}).values(): v.pop('samples', None)
    result = {
        'benchmark': 'digits', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
        'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(),
                    'threads_per_run': 1, 'workers': a.workers},
        'config': {'seeds': list(seeds), 'iterations': iters, 'eval_every': every, 'n_eval': n_eval,
                   'final_value': 'mean of the last 2 evaluations', 'digits_defaults': DIGITS_DEFAULTS,
                   'methods': {m: {'preset': pre, 'overrides': ov} for m, (pre, ov) in METHODS.items()},
                   'distill_configs': {m: asdict(digits_preset(pre, **ov)) for m, (pre, ov) in METHODS.items()},
                   'teacher': digits_teacher_meta(),
                   'stage2': {'from': STAGE2_FROM, 'variants': list(STAGE2_VARIANTS), 'cycles': cycles, 'rl_lr': RL_LR, 'rl_beta': RL_BETA,
                              'reward': 'ink_reward(0.1) on the teacher posterior mean (DPO); judges: evaluation network'}},
        'references': refs,
        'summary': summary,
        'stage2_summary': stage2,
        'runs': runs,
    }
    (out / 'digits.json').write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out / 'digits.json'} and {out / 'digits.png'} in {time.time() - t0:.0f}s")
    fmt = lambda d: f"{d['mean']:.3f}±{d['std']:.3f}" if d.get('mean') is not None else 'n/a'
    for m, s in summary.items():
        print(f"{m:14s} " + ' '.join(f"{k} {fmt(s[k])}" for k in ('fd', 'best_fd', 'precision', 'recall', 'saturation', 'batch_x_gen_iters', 'train_seconds')))
    for v, s in stage2.items():
        print(f"stage2 {v:12s} " + ' '.join(f"{k} {fmt(s[k])}" for k in ('reward_change', 'accuracy_change', 'fd_change', 'saturation')))
    return result

if __name__ == '__main__':
    main()
