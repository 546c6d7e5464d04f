"""Digits (8x8, CPU): DMD2, the Pixel-GAN ablation and Flash-DMD distilling the same shipped conv UNet teacher.

Every number written here is measured by this script in this run. Usage:

    python benchmarks/digits.py            # full run (about 15 minutes on 2 cores): benchmarks/results/digits.{json,png}
    python benchmarks/digits.py --quick    # under a minute, checks the pipeline: benchmarks/results/quick/

Stage 1: every method distils the teacher shipped in flash_dmd/assets with the same data, batch, learning rates
(flash_dmd.digits.DIGITS_DEFAULTS) and number of iterations (critic updates); DMD2 updates its generator on one
iteration in five (TTUR 5), Flash-DMD on every one. The 4-step student is evaluated every EVAL_EVERY iterations on
N_EVAL samples against the held-out split, in the features of the evaluation network (not the Pixel-GAN's backbone).
Cost is counted three ways: the paper's batch x generator iterations, network passes (forward + backward, in samples,
counted by hooks) and training seconds (one CPU thread per run).

Stage 2 on the digits is benchmarks/stage2_digits.py.
"""
from __future__ import annotations
import argparse, json, os, platform, time, warnings
from pathlib import Path

from _stats import mean as _mean, std as _std, RESULTS, run_jobs, first_cost   # benchmarks/_stats.py (the script's folder is on sys.path)

RECOMMENDED = 'flash-stable'
METHODS = {   # name -> (preset, overrides on top of DIGITS_DEFAULTS, iterations); DMD2 runs twice as long, to its plateau
    'dmd2': ('dmd2', {}, 1000), 'flash': ('flash', {}, 500), RECOMMENDED: (RECOMMENDED, {}, 500)}   # split=False: stabilisers.py
SEEDS, EVAL_EVERY, N_EVAL = (0, 1, 2), 50, 1000
TARGET_TEACHER_RATIO, TARGET_COST_RATIO = 1.10, 0.10
METRICS = ('fd', 'accuracy', 'confidence', 'diversity', 'precision', 'recall', 'saturation')
N_SHOW = 40   # samples kept per run for the picture (4 per class)

def _run(job: dict) -> dict:
    "One Stage 1 run in a worker process with one thread."
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
    return out

def final_value(curve: list, key: str) -> float:
    "A run's final value of `key`: its last evaluation, at the end of the budget (never the best point)."
    return curve[-1][key]

def _ms(vals): return {'mean': _mean(vals), 'std': _std(vals)}

def summarise(runs: list, methods) -> dict:
    "Per method: final metrics, best Fréchet distance, cost at the end and cost to first reach DMD2's final Fréchet distance."
    ok = lambda m: [r for r in runs if r['method'] == m and r['curve']]
    dmd2_fd = _mean([final_value(r['curve'], 'fd') for r in ok('dmd2')])
    summary = {}
    for m in methods:
        rs = ok(m)
        row = {'n_seeds': len(rs), 'n_diverged': len([r for r in runs if r['method'] == m]) - len(rs)}
        for key in METRICS + tuple('raw_' + k for k in METRICS):
            if rs and key in rs[0]['curve'][-1]: row[key] = _ms([final_value(r['curve'], key) for r in rs])
        row['best_fd'] = _ms([min(c['fd'] for c in r['curve']) for r in rs])
        row['drift_fd'] = _ms([r['curve'][-1]['fd'] - min(c['fd'] for c in r['curve']) for r in rs])
        for ck in ('iterations', 'generator_updates', 'batch_x_iters', 'batch_x_gen_iters', 'passes', 'train_seconds'): row[ck] = _ms([r['curve'][-1][ck] for r in rs])
        row['wall_seconds'] = _ms([r['wall_seconds'] for r in rs])
        for ck in ('batch_x_iters', 'batch_x_gen_iters', 'passes', 'train_seconds'):
            costs = [first_cost(r['curve'], 'fd', dmd2_fd, cost_key=ck) for r in rs] if dmd2_fd is not None else []
            row[f'cost_to_dmd2_final_fd_{ck}'] = {'mean': None if not costs or None in costs else _mean(costs),
                                                 'reached': sum(c is not None for c in costs), 'of': len(rs)}
        summary[m] = row
    return summary

def digits_targets(summary: dict, refs: dict, method: str) -> dict:
    "The issue's targets for `method`, computed: final EMA FD within 1.10x the 50-step teacher's; DMD2's final FD at <= 0.10 of its cost."
    row, dmd2, t50 = summary[method], summary['dmd2'], refs['teacher_50_steps']['fd']
    cost = row['cost_to_dmd2_final_fd_batch_x_iters']['mean']
    ratio = None if cost is None else cost / dmd2['batch_x_iters']['mean']
    improved = dmd2['fd']['mean'] < refs['student_at_init']['fd']            # else reaching DMD2 costs nothing: no ratio
    return {'method': method, 'final_fd': row['fd']['mean'], 'teacher_50_fd': t50, 'fd_over_teacher_50': row['fd']['mean'] / t50,
            'within_teacher_target': row['fd']['mean'] <= TARGET_TEACHER_RATIO * t50, 'teacher_4_fd': refs['teacher_4_steps']['fd'],
            'beats_teacher_4_steps': row['fd']['mean'] < refs['teacher_4_steps']['fd'],
            'dmd2_improved': improved, 'cost_ratio_batch_x_iters': ratio if improved else None,
            'cost_target_met': improved and ratio is not None and ratio <= TARGET_COST_RATIO,
            'n_diverged': row['n_diverged'], 'teacher_ratio_target': TARGET_TEACHER_RATIO, 'cost_ratio_target': TARGET_COST_RATIO}

def plot(runs, refs_samples, methods, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from flash_dmd.digits import show_digits
    by_class = lambda x: torch.stack(torch.as_tensor(x).split(10), 1).flatten(0, 1)   # one row per class
    seed0 = {r['method']: r for r in runs if r['seed'] == min(r2['seed'] for r2 in runs)}
    panels = [(k, v) for k, v in refs_samples.items()] + [(f'{m} student (4 steps)', seed0[m]['samples']) for m in methods if seed0.get(m, {}).get('samples')]
    fig = plt.figure(figsize=(2.1 * max(len(panels), 4), 7.2))
    gs = fig.add_gridspec(2, len(panels))
    for i, (title, x) in enumerate(panels):
        show_digits(fig.add_subplot(gs[0, i]), by_class(x), nrow=4, title=title)
    gs2 = gs[1, :].subgridspec(1, 3)
    for j, (key, xkey, title) in enumerate([('fd', 'batch_x_iters', "FD (EMA student) vs batch x iterations (paper's unit)"),
                                            ('raw_fd', 'batch_x_iters', 'FD of the raw student'),
                                            ('saturation', 'iterations', 'saturated pixels (|x| > 1.05)')]):
        ax = fig.add_subplot(gs2[0, j])
        for k, m in enumerate(methods):
            rs = [r for r in runs if r['method'] == m and r['curve'] and key in r['curve'][0]]
            if not rs: continue
            n = min(len(r['curve']) for r in rs)
            x = np.mean([[c[xkey] for c in r['curve'][:n]] for r in rs], 0)
            y = np.array([[c[key] for c in r['curve'][:n]] for r in rs])
            ax.plot(x, y.mean(0), label=m, color=f'C{k}')
            ax.fill_between(x, y.min(0), y.max(0), color=f'C{k}', alpha=0.15)
        ax.set_title(title, fontsize=9); ax.set_xlabel(xkey.replace('_', ' ') + ' (mean, min-max over seeds)', fontsize=8)
        if j == 0: ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='tiny run (under a minute) that checks the pipeline and the file shape')
    p.add_argument('--out', default=None, help='output folder (default benchmarks/results, or benchmarks/results/quick with --quick)')
    p.add_argument('--workers', type=int, default=2, help='parallel runs, one thread each')
    p.add_argument('--only', nargs='*', default=None, help='run only these methods now (their runs are kept for the next full run)')
    a = p.parse_args(argv)
    out = Path(a.out or (RESULTS / 'quick' if a.quick else RESULTS))   # from the repository root, wherever it runs
    out.mkdir(parents=True, exist_ok=True)
    if a.quick: seeds, scale, every, n_eval = (0,), 0.012, 3, 200
    else: seeds, scale, every, n_eval = SEEDS, 1.0, EVAL_EVERY, N_EVAL
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
    jobs = [dict(method=m, preset=pre, overrides=ov, iters=max(round(it * scale), 2), eval_every=every, n_eval=n_eval, seed=s,
                 )
            for s in seeds for m, (pre, ov, it) in METHODS.items()]
    jobs.sort(key=lambda j: -j['iters'])                          # longest first: better packing
    if a.only is not None: return run_jobs(_run, [j for j in jobs if j['method'] in a.only], a.workers, out / f"digits.{'+'.join(a.only)}.partial.jsonl")
    runs = run_jobs(_run, jobs, a.workers, out / 'digits.partial.jsonl')
    methods = list(METHODS)
    summary = summarise(runs, methods)
    targets = digits_targets(summary, refs, RECOMMENDED)
    plot(runs, show, methods, out / 'digits.png')                    # the picture needs the samples; the JSON does not
    for r in runs: r.pop('samples', None)
    result = {
        'benchmark': 'digits', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
        'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(),
                    'threads_per_run': 1, 'workers': a.workers},
        'config': {'seeds': list(seeds), 'iterations': {j['method']: j['iters'] for j in jobs}, 'eval_every': every, 'n_eval': n_eval,
                   'final_value': 'the last evaluation, at the end of the budget', 'cost_unit': 'batch x training iterations',
                   'recommended': RECOMMENDED, 'digits_defaults': DIGITS_DEFAULTS,
                   'methods': {m: {'preset': pre, 'overrides': ov, 'iterations': it} for m, (pre, ov, it) in METHODS.items()},
                   'distill_configs': {m: asdict(digits_preset(pre, **ov)) for m, (pre, ov, _) in METHODS.items()},
                   'teacher': digits_teacher_meta()},
        'references': refs,
        'summary': summary,
        'targets': targets,
        'runs': runs,
    }
    (out / 'digits.json').write_text(json.dumps(result, indent=1, default=float))
    for part in out.glob('digits*.partial.jsonl'): part.unlink()              # every run is in the JSON now
    print('targets:', json.dumps(targets, default=float))
    print(f"wrote {out / 'digits.json'} and {out / 'digits.png'} in {time.time() - t0:.0f}s")
    fmt = lambda d: f"{d['mean']:.3f}±{d['std']:.3f}" if d.get('mean') is not None else 'n/a'
    for m, s in summary.items():
        print(f"{m:14s} " + ' '.join(f"{k} {fmt(s[k])}" for k in ('fd', 'raw_fd', 'best_fd', 'recall', 'saturation', 'batch_x_iters', 'train_seconds')))
    return result

if __name__ == '__main__':
    main()
