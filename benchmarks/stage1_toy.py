"""Stage 1 on toy 2D: DMD, DMD2, the paper's ablations and Flash-DMD on the same teacher, data, batch and learning rates.

Every number written here is measured by this script in this run. Usage:

    python benchmarks/stage1_toy.py            # full run (about 25 minutes on 2 cores): benchmarks/results/stage1_toy.{json,png}
    python benchmarks/stage1_toy.py --quick    # under 2 minutes, checks the pipeline: benchmarks/results/quick/

Cost is counted three ways, all measured in the same run: the paper's batch x generator iterations, network passes
(forward + backward, in samples, counted by hooks), and training wall-clock seconds (one CPU thread per run).
"""
from __future__ import annotations
import argparse, json, math, os, platform, sys, time, warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _stats import mean as _mean, std as _std   # benchmarks/_stats.py (the script's folder is on sys.path)

METHODS = {   # name -> (preset, iterations of the full run); DMD2-family runs longer to reach its plateau
    'dmd': ('dmd', 1500), 'dmd2': ('dmd2', 5000), 'dmd2+A': ('dmd2+A', 4000), 'dmd2+B': ('dmd2+B', 2500),
    'flash': ('flash', 1500), 'flash-noema': ('flash-noema', 1500)}
DATASETS, SEEDS, EVAL_EVERY_GEN = ('grid25', 'circle8'), (0, 1, 2, 3, 4), 100
METRICS = ('swd', 'energy', 'precision', 'recall', 'mode_precision', 'coverage')

def _run(job: dict) -> dict:
    "One distillation run in a worker process (one thread), returning its curve."
    import torch
    torch.set_num_threads(1)
    warnings.filterwarnings('ignore')
    from flash_dmd.distill import preset, run_toy
    from flash_dmd.toy import TeacherConfig, load_teacher
    teacher = load_teacher(TeacherConfig(**job['teacher']), seed=0)
    cfg = preset(job['preset'], seed=job['seed'])
    ev = EVAL_EVERY_GEN * cfg.ttur if not job['quick'] else max(job['iters'] // 4, 1)
    try:
        _, curve = run_toy(cfg, teacher, job['dataset'], job['iters'], eval_every=ev, n_eval=job['n_eval'])
        err = None
    except FloatingPointError as e:        # a diverged run is a result, not a crash
        curve, err = [], str(e)
    return {**{k: job[k] for k in ('method', 'dataset', 'seed', 'iters')}, 'curve': curve, 'error': err}

def _teacher_refs(teacher_cfg: dict, dataset: str, n_eval: int) -> dict:
    "The teacher at 4 and 50 steps, evaluated exactly like the students."
    from flash_dmd.toy import TeacherConfig, load_teacher, teacher_samples, make_toy, toy_metrics
    teacher = load_teacher(TeacherConfig(**teacher_cfg), seed=0)
    ref = make_toy(dataset, n_eval, seed=777)
    out = {}
    for k in (4, 50):
        m = toy_metrics(*teacher_samples(teacher, n_eval, k, seed=1), ref); m.pop('coverage_per_class', None)
        out[f'teacher_{k}_steps'] = m
    return out

def final_value(curve: list, key: str, last: int = 3) -> float:
    "A run's final value of `key`: the mean of its last `last` evaluations (curves are noisy)."
    vals = [r[key] for r in curve[-last:]]
    return sum(vals) / len(vals)

def first_cost(curve: list, key: str, target: float, lower_is_better: bool, cost_key: str = 'batch_x_gen_iters'):
    "The cost at which a run's `key` first reaches `target`, or None if it never does."
    for r in curve:
        if (r[key] <= target) if lower_is_better else (r[key] >= target): return r[cost_key]
    return None


def _cost_mean(by_ds, m, metric, key):
    vals = [d['methods'][m][key] for d in by_ds.values() if d[f'dmd2_improved_{metric}']]
    return None if not vals or any(v is None for v in vals) else _mean(vals)

def summarise(runs: list, datasets, methods) -> dict:
    "Per dataset and method: final metrics, and the cost (three ways) to first reach DMD2's final SWD and mode precision."
    by_ds = {}
    for ds in datasets:
        ok = lambda m: [r for r in runs if r['dataset'] == ds and r['method'] == m and r['curve']]
        dmd2 = ok('dmd2')
        tgt_swd = _mean([final_value(r['curve'], 'swd') for r in dmd2])
        tgt_prec = _mean([final_value(r['curve'], 'mode_precision') for r in dmd2])
        # how long DMD2 took to get within 10% of its own final SWD (its plateau), and its whole budget
        plateau = _mean([first_cost(r['curve'], 'swd', 1.1 * final_value(r['curve'], 'swd'), True) for r in dmd2])
        budget = _mean([r['curve'][-1]['batch_x_gen_iters'] for r in dmd2])
        start_swd = _mean([r['curve'][0]['swd'] for r in dmd2])
        start_prec = _mean([r['curve'][0]['mode_precision'] for r in dmd2])
        by_ds[ds] = {'dmd2_final_swd': tgt_swd, 'dmd2_final_mode_precision': tgt_prec, 'student_at_init_swd': start_swd,
                     'student_at_init_mode_precision': start_prec,
                     # a cost ratio only means something where DMD2 improved on the student it started from
                     'dmd2_improved_swd': tgt_swd is not None and tgt_swd < start_swd,
                     'dmd2_improved_mode_precision': tgt_prec is not None and tgt_prec > start_prec,
                     'dmd2_plateau_cost': plateau, 'dmd2_budget_cost': budget, 'methods': {}}
        for m in methods:
            rs = ok(m)
            n_all = len([r for r in runs if r['dataset'] == ds and r['method'] == m])
            row = {'n_seeds': len(rs), 'n_diverged': n_all - len(rs)}
            for key in METRICS:
                vals = [final_value(r['curve'], key) for r in rs]
                row[f'final_{key}_mean'], row[f'final_{key}_std'] = _mean(vals), _std(vals)
            for ck in ('batch_x_gen_iters', 'passes', 'train_seconds'):
                sfx = '' if ck == 'batch_x_gen_iters' else f'_{ck}'
                c_swd = [first_cost(r['curve'], 'swd', tgt_swd, True, ck) for r in rs] if tgt_swd is not None else []
                c_prec = [first_cost(r['curve'], 'mode_precision', tgt_prec, False, ck) for r in rs] if tgt_prec is not None else []
                row[f'cost_to_dmd2_final{sfx}_mean'] = _mean(c_swd)
                row[f'cost_to_dmd2_precision{sfx}_mean'] = _mean(c_prec)
                if not sfx: row['reached_dmd2_final'], row['reached_dmd2_precision'] = sum(c is not None for c in c_swd), sum(c is not None for c in c_prec)
            row['budget_cost'] = _mean([r['curve'][-1]['batch_x_gen_iters'] for r in rs])
            row['budget_passes'] = _mean([r['curve'][-1]['passes'] for r in rs])
            row['budget_seconds'] = _mean([r['curve'][-1]['train_seconds'] for r in rs])
            by_ds[ds]['methods'][m] = row
    summary = {}
    for m in methods:   # across datasets: means of the per-dataset means (each dataset weighs the same)
        rows = [by_ds[ds]['methods'][m] for ds in datasets]
        summary[m] = {'n_seeds': min(r['n_seeds'] for r in rows), 'n_diverged': sum(r['n_diverged'] for r in rows),
                      'final_swd_mean': _mean([r['final_swd_mean'] for r in rows]),
                      'final_swd_std': _mean([r['final_swd_std'] for r in rows]),
                      'precision_mean': _mean([r['final_mode_precision_mean'] for r in rows]),
                      'knn_precision_mean': _mean([r['final_precision_mean'] for r in rows]),
                      'recall_mean': _mean([r['final_recall_mean'] for r in rows]),
                      'coverage_mean': _mean([r['final_coverage_mean'] for r in rows]),
                      # costs: only over datasets where DMD2 improved on its start (elsewhere reaching it is free)
                      'cost_to_dmd2_final_mean': _cost_mean(by_ds, m, 'swd', 'cost_to_dmd2_final_mean'),
                      'cost_to_dmd2_precision_mean': _cost_mean(by_ds, m, 'mode_precision', 'cost_to_dmd2_precision_mean'),
                      'cost_datasets': [ds for ds in datasets if by_ds[ds]['dmd2_improved_swd']]}
    return summary, by_ds

def cost_ratios(by_ds: dict) -> dict:
    "Flash-DMD's cost to reach DMD2's final quality over DMD2's cost, per dataset and metric, in the three units."
    out = {}
    for ds, d in by_ds.items():
        f, b = d['methods'].get('flash'), d['methods'].get('dmd2')
        if not f or not b: continue
        r = {}
        for metric, key in (('swd', 'cost_to_dmd2_final'), ('mode_precision', 'cost_to_dmd2_precision')):
            for unit, sfx, budget in (('batch_x_gen_iters', '', b['budget_cost']), ('passes', '_passes', b['budget_passes']),
                                      ('train_seconds', '_train_seconds', b['budget_seconds'])):
                num = f[f'{key}{sfx}_mean']
                r[f'{metric}_{unit}_vs_dmd2_budget'] = None if num is None or not budget else num / budget
            num = f[f'{key}_mean']
            r[f'{metric}_batch_x_gen_iters_vs_dmd2_plateau'] = None if num is None or not d['dmd2_plateau_cost'] else num / d['dmd2_plateau_cost']
        out[ds] = r
    return out

def headline_ratio(ratios: dict, by_ds: dict):
    """Flash-DMD's cost (batch x generator iterations) to reach DMD2's final SWD over DMD2's budget, averaged over the
    datasets where DMD2 improved on its starting student (elsewhere 'reaching DMD2' is free and the ratio says nothing);
    None when Flash-DMD never reached it on such a dataset."""
    vals = [r['swd_batch_x_gen_iters_vs_dmd2_budget'] for ds, r in ratios.items() if by_ds[ds]['dmd2_improved_swd']]
    return None if not vals or any(v is None for v in vals) else _mean(vals)

def plot(runs, refs, datasets, methods, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axs = plt.subplots(len(datasets), 3, figsize=(15, 4 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        for j, (key, xkey, title) in enumerate([('swd', 'batch_x_gen_iters', 'SWD (lower is better)'),
                                                 ('mode_precision', 'batch_x_gen_iters', 'mode precision (sharpness)'),
                                                 ('swd', 'passes', 'SWD against network passes')]):
            ax = axs[i, j]
            for k, m in enumerate(methods):
                rs = [r for r in runs if r['dataset'] == ds and r['method'] == m and r['curve']]
                if not rs: continue
                n = min(len(r['curve']) for r in rs)
                x = np.mean([[c[xkey] for c in r['curve'][:n]] for r in rs], 0)
                y = np.array([[c[key] for c in r['curve'][:n]] for r in rs])
                ax.plot(x, y.mean(0), label=m, color=f'C{k}')
                ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), color=f'C{k}', alpha=0.15)
            for steps, ls in (('4', ':'), ('50', '--')):
                ax.axhline(refs[ds][f'teacher_{steps}_steps'][key], color='k', ls=ls, lw=1, label=f'teacher {steps} steps')
            ax.set(title=f'{ds}: {title}', xlabel='batch x generator iterations' if xkey == 'batch_x_gen_iters' else 'network passes (samples)')
            ax.set_xscale('symlog', linthresh=1e4); ax.set_xlim(left=0)
            if key == 'swd': ax.set_yscale('log')
            if i == 0 and j == 0: ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='tiny run (under 2 minutes) that checks the pipeline and the file shape')
    p.add_argument('--out', default=None, help='output folder (default benchmarks/results, or benchmarks/results/quick with --quick)')
    p.add_argument('--workers', type=int, default=2, help='parallel runs, one thread each')
    p.add_argument('--resummarise', action='store_true',
                   help='recompute summary, ratios and figure from the runs stored in an existing JSON (no training)')
    a = p.parse_args(argv)
    if a.resummarise: return resummarise(Path(a.out or 'benchmarks/results') / 'stage1_toy.json')
    out = Path(a.out or ('benchmarks/results/quick' if a.quick else 'benchmarks/results'))
    out.mkdir(parents=True, exist_ok=True)
    if a.quick:
        datasets, seeds, teacher = ('grid25',), (0,), dict(steps=300)
        methods = {m: (pre, 8 * (5 if 'dmd2' in m and m != 'dmd2+B' else 2 if m == 'dmd2+B' else 1)) for m, (pre, _) in METHODS.items()}
        n_eval = 500
    else:
        datasets, seeds, teacher, methods, n_eval = DATASETS, SEEDS, {}, METHODS, 1500
    t0 = time.time()
    teacher_cfgs = {ds: {'dataset': ds, 'schedule': 'vp', **teacher} for ds in datasets}
    refs = {}
    for ds in datasets: refs[ds] = _teacher_refs(teacher_cfgs[ds], ds, n_eval)   # also trains and caches each teacher once
    jobs = [dict(method=m, preset=pre, iters=it, dataset=ds, seed=s, teacher=teacher_cfgs[ds], quick=a.quick, n_eval=n_eval)
            for ds in datasets for s in seeds for m, (pre, it) in methods.items()]
    jobs.sort(key=lambda j: -j['iters'])                                            # longest first: better packing
    runs = []
    with ProcessPoolExecutor(a.workers) as ex:
        for i, r in enumerate(ex.map(_run, jobs), 1):
            runs.append(r)
            last = r['curve'][-1] if r['curve'] else {}
            print(f"[{i}/{len(jobs)}] {r['method']:12s} {r['dataset']:8s} seed {r['seed']}: "
                  + (f"swd {last['swd']:.3f} mode precision {last['mode_precision']:.3f} ({last['train_seconds']:.0f}s)" if last else f"DIVERGED: {r['error']}"),
                  flush=True)
    summary, by_ds = summarise(runs, datasets, list(methods))
    ratios = cost_ratios(by_ds)
    flash_ratio = headline_ratio(ratios, by_ds)
    import torch
    result = {
        'benchmark': 'stage1_toy', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
        'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(),
                    'threads_per_run': 1, 'workers': a.workers},
        'config': {'datasets': list(datasets), 'seeds': list(seeds), 'methods': {m: {'preset': pre, 'iterations': it} for m, (pre, it) in methods.items()},
                   'teacher': teacher_cfgs, 'n_eval': n_eval, 'eval_every_generator_updates': EVAL_EVERY_GEN,
                   'final_value': 'mean of the last 3 evaluations',
                   'distill_configs': {m: __import__('dataclasses').asdict(__import__('flash_dmd.distill', fromlist=['preset']).preset(pre)) for m, (pre, _) in methods.items()}},
        'teacher_references': refs,
        'summary': summary,
        'by_dataset': by_ds,
        'flash_over_dmd2_cost_ratio': flash_ratio,
        'flash_over_dmd2_cost_ratios': ratios,
        'runs': runs,
    }
    (out / 'stage1_toy.json').write_text(json.dumps(result, indent=1, default=float))
    plot(runs, refs, datasets, list(methods), out / 'stage1_toy.png')
    print(f"wrote {out / 'stage1_toy.json'} and {out / 'stage1_toy.png'} in {time.time() - t0:.0f}s")
    print(json.dumps({m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()} for m, s in summary.items()}, indent=1))
    print('flash_over_dmd2_cost_ratio:', flash_ratio)
    return result

def resummarise(path: Path) -> dict:
    "Rewrite the summary, ratios and figure of a finished run from its stored per-run curves."
    res = json.loads(path.read_text())
    datasets, methods = res['config']['datasets'], list(res['config']['methods'])
    res['summary'], res['by_dataset'] = summarise(res['runs'], datasets, methods)
    res['flash_over_dmd2_cost_ratios'] = cost_ratios(res['by_dataset'])
    res['flash_over_dmd2_cost_ratio'] = headline_ratio(res['flash_over_dmd2_cost_ratios'], res['by_dataset'])
    path.write_text(json.dumps(res, indent=1, default=float))
    plot(res['runs'], res['teacher_references'], datasets, methods, path.with_suffix('.png'))
    print(f"resummarised {path}; flash_over_dmd2_cost_ratio: {res['flash_over_dmd2_cost_ratio']}")
    return res

if __name__ == '__main__':
    main()
