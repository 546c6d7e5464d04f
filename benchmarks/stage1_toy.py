"""Stage 1 on toy 2D: DMD, DMD2, the paper's ablations, Flash-DMD and the project's recommended recipe on the same
teacher, data, batch and learning rates.

Every number written here is measured by this script in this run. Usage:

    python benchmarks/stage1_toy.py            # full run (about 40 minutes on 2 cores): benchmarks/results/stage1_toy.{json,png}
    python benchmarks/stage1_toy.py --quick    # under 2 minutes, checks the pipeline: benchmarks/results/quick/

Every method evaluates the EMA of its student's weights (`student_ema`, the same decay for all); the raw student is
recorded beside it. Final = the last evaluation, at the end of each method's budget (never the best point).

Cost is counted in the paper's unit, batch x training iterations (one pass of the training loop: a critic update, and
a generator update every `ttur`-th), with generator updates, network passes (forward + backward, in samples, counted
by hooks) and training seconds (one CPU thread per run) beside it. DMD2 runs twice Flash-DMD's iterations so that it
reaches its plateau (the JSON records where it got within 10% of its final SWD).
"""
from __future__ import annotations
import argparse, json, math, os, platform, sys, time, warnings
from pathlib import Path

from _stats import mean as _mean, std as _std, RESULTS, run_jobs, first_cost   # benchmarks/_stats.py (the script's folder is on sys.path)

RECOMMENDED = 'flash-stable'
METHODS = {   # name -> (preset, iterations of the full run); the DMD2 family runs longer to reach its plateau
    'dmd': ('dmd', 1500), 'dmd2': ('dmd2', 3000), 'dmd2+A': ('dmd2+A', 2000),
    'dmd2+B': ('dmd2+B', 1500), 'flash': ('flash', 1500), RECOMMENDED: (RECOMMENDED, 1500)}
DATASETS, SEEDS, EVAL_EVERY_GEN = ('grid25', 'circle8', 'moons'), (0, 1), 100
METRICS = ('swd', 'energy', 'precision', 'recall', 'mode_precision', 'coverage')
COST_UNITS = ('batch_x_iters', 'batch_x_gen_iters', 'passes', 'train_seconds')   # the paper's unit first
TARGET_TEACHER_RATIO, TARGET_COST_RATIO = 1.10, 0.10

def _run(job: dict) -> dict:
    "One distillation run in a worker process (one thread), returning its curve."
    import torch
    torch.set_num_threads(1)
    warnings.filterwarnings('ignore')
    from flash_dmd.distill import preset, run_toy
    from flash_dmd.toy import TeacherConfig, load_teacher
    teacher = load_teacher(TeacherConfig(**job['teacher']), seed=0)
    cfg = preset(job['preset'], seed=job['seed'], **job.get('overrides', {}))
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

def sharpness_key(curve_row: dict) -> str:
    "Mode precision on mixtures; k-NN precision where the data has no modes (moons)."
    return 'mode_precision' if 'mode_precision' in curve_row else 'precision'

def _runs(runs, ds, m): return [r for r in runs if r['dataset'] == ds and r['method'] == m and r['curve']]

def summarise_dataset(runs: list, ds: str, methods) -> dict:
    "Final (end of budget) metrics per method, raw and EMA; DMD2's final quality and plateau; each method's cost to reach it."
    dmd2 = _runs(runs, ds, 'dmd2')
    sk = sharpness_key(dmd2[0]['curve'][0]) if dmd2 else 'precision'
    tgt_swd, tgt_sharp = _mean([r['curve'][-1]['swd'] for r in dmd2]), _mean([r['curve'][-1][sk] for r in dmd2])
    start_swd, start_sharp = _mean([r['curve'][0]['swd'] for r in dmd2]), _mean([r['curve'][0][sk] for r in dmd2])
    out = {'sharpness_metric': sk, 'dmd2_final_swd': tgt_swd, 'dmd2_final_sharpness': tgt_sharp, 'student_at_init_swd': start_swd,
           'student_at_init_sharpness': start_sharp,
           'dmd2_improved_swd': tgt_swd is not None and tgt_swd < start_swd,      # else reaching DMD2 costs nothing
           'dmd2_plateau_cost': _mean([first_cost(r['curve'], 'swd', 1.1 * r['curve'][-1]['swd'], True) for r in dmd2]),
           'dmd2_budget': {u: _mean([r['curve'][-1][u] for r in dmd2]) for u in COST_UNITS}, 'methods': {}}
    for m in methods:
        rs, n_all = _runs(runs, ds, m), len([r for r in runs if r['dataset'] == ds and r['method'] == m])
        row = {'n_seeds': len(rs), 'n_diverged': n_all - len(rs)}
        for key in METRICS + tuple('raw_' + k for k in METRICS):
            vals = [r['curve'][-1][key] for r in rs if key in r['curve'][-1]]
            row[f'final_{key}_mean'], row[f'final_{key}_std'] = _mean(vals), _std(vals)
        row['best_swd_mean'] = _mean([min(c['swd'] for c in r['curve']) for r in rs])
        row['drift_swd_mean'] = _mean([r['curve'][-1]['swd'] - min(c['swd'] for c in r['curve']) for r in rs])
        for u in COST_UNITS:
            row[f'budget_{u}'] = _mean([r['curve'][-1][u] for r in rs])
            c_swd = [first_cost(r['curve'], 'swd', tgt_swd, True, u) for r in rs] if tgt_swd is not None else []
            row[f'cost_to_dmd2_swd_{u}'] = None if not c_swd or any(c is None for c in c_swd) else _mean(c_swd)
            c_sh = [first_cost(r['curve'], sk, tgt_sharp, False, u) for r in rs] if tgt_sharp is not None else []
            row[f'cost_to_dmd2_sharpness_{u}'] = None if not c_sh or any(c is None for c in c_sh) else _mean(c_sh)
        row['reached_dmd2_swd'] = sum(first_cost(r['curve'], 'swd', tgt_swd, True) is not None for r in rs) if tgt_swd is not None else 0
        out['methods'][m] = row
    return out

def cost_ratios(d: dict, method: str) -> dict:
    "`method`'s cost to first reach DMD2's final SWD (all seeds), over DMD2's whole budget, in each unit (None: not reached)."
    row = d['methods'].get(method)
    if row is None: return {}
    return {u: (None if row[f'cost_to_dmd2_swd_{u}'] is None or not d['dmd2_budget'][u] else row[f'cost_to_dmd2_swd_{u}'] / d['dmd2_budget'][u])
            for u in COST_UNITS}

def targets(by_ds: dict, refs: dict, method: str) -> dict:
    "The issue's targets for `method`, computed: final EMA SWD within 1.10x the 50-step teacher; DMD2's final SWD at <= 0.10 of its cost."
    per = {}
    for ds, d in by_ds.items():
        row, t50 = d['methods'].get(method), refs[ds]['teacher_50_steps']['swd']
        if row is None: continue
        ratio = cost_ratios(d, method).get('batch_x_iters')
        per[ds] = {'final_swd': row['final_swd_mean'], 'teacher_50_swd': t50,
                   'swd_over_teacher_50': None if row['final_swd_mean'] is None else row['final_swd_mean'] / t50,
                   'within_teacher_target': row['final_swd_mean'] is not None and row['final_swd_mean'] <= TARGET_TEACHER_RATIO * t50,
                   'dmd2_improved': d['dmd2_improved_swd'], 'cost_ratio_batch_x_iters': ratio,
                   'cost_target_met': bool(d['dmd2_improved_swd'] and ratio is not None and ratio <= TARGET_COST_RATIO)}
    return {'method': method, 'teacher_ratio_target': TARGET_TEACHER_RATIO, 'cost_ratio_target': TARGET_COST_RATIO, 'per_dataset': per,
            'teacher_target_met_on': [ds for ds, v in per.items() if v['within_teacher_target']],
            'cost_target_met_on': [ds for ds, v in per.items() if v['cost_target_met']],
            'n_diverged': sum(by_ds[ds]['methods'][method]['n_diverged'] for ds in per)}

def health_examples(runs: list, dataset: str, methods: list) -> dict:
    "A healthy and a drifting run on `dataset`, picked by measured drift (final minus best SWD) among `methods`' seeds."
    cands = [r for r in runs if r['dataset'] == dataset and r['method'] in methods and r['curve']]
    if not cands: return {}
    drift = lambda r: r['curve'][-1]['swd'] - min(c['swd'] for c in r['curve'])
    pick = lambda r: {'method': r['method'], 'seed': r['seed'], 'drift': drift(r),
                      'curve': [{'iterations': c['iterations'], 'swd': c['swd'], **c.get('health', {})} for c in r['curve']]}
    return {'dataset': dataset, 'healthy': pick(min(cands, key=drift)), 'drifting': pick(max(cands, key=drift))}

def plot(runs, refs, datasets, methods, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axs = plt.subplots(len(datasets), 3, figsize=(16, 4 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        for j, (key, xkey, title) in enumerate([('swd', 'batch_x_iters', 'SWD of the EMA student'),
                                                 ('raw_swd', 'batch_x_iters', 'SWD of the raw student'),
                                                 ('swd', 'passes', 'SWD (EMA) against network passes')]):
            ax = axs[i, j]
            for k, m in enumerate(methods):
                rs = [r for r in _runs(runs, ds, m) if key in r['curve'][0]]
                if not rs: continue
                n = min(len(r['curve']) for r in rs)
                x = np.mean([[c[xkey] for c in r['curve'][:n]] for r in rs], 0)
                y = np.array([[c[key] for c in r['curve'][:n]] for r in rs])
                ax.plot(x, y.mean(0), label=m, color=f'C{k}', lw=2.2 if m == RECOMMENDED else 1.2)
                ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), color=f'C{k}', alpha=0.12)
            for steps, ls in (('4', ':'), ('50', '--')):
                ax.axhline(refs[ds][f'teacher_{steps}_steps']['swd'], color='k', ls=ls, lw=1, label=f'teacher {steps} steps')
            ax.set(title=f'{ds}: {title}', xlabel='batch x training iterations (the paper\'s unit)' if xkey == 'batch_x_iters' else 'network passes (samples)')
            ax.set_xscale('symlog', linthresh=1e5); ax.set_xlim(left=0); ax.set_yscale('log')
            if i == 0 and j == 0: ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)

def plot_health(ex: dict, path):
    "The health signals of a healthy and a drifting run, side by side."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = ['swd', 'dm_grad', 'g_grad_norm', 'fake', 'd_acc', 'adv']
    fig, axs = plt.subplots(1, len(keys), figsize=(3.1 * len(keys), 2.9))
    for label, ls in (('healthy', '-'), ('drifting', '--')):
        r = ex[label]
        for ax, k in zip(axs, keys):
            pts = [(c['iterations'], c[k]) for c in r['curve'] if c.get(k) is not None]
            if pts: ax.plot(*zip(*pts), ls, label=f"{label}: {r['method']} seed {r['seed']} (drift {r['drift']:.3f})")
            ax.set(title=k, xlabel='iteration')
    axs[0].set_yscale('log'); axs[0].legend(fontsize=6)
    fig.suptitle(f"Health signals on {ex['dataset']} (means between evaluations)", fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='tiny run (under 2 minutes) that checks the pipeline and the file shape')
    p.add_argument('--out', default=None, help='output folder (default benchmarks/results, or benchmarks/results/quick with --quick)')
    p.add_argument('--workers', type=int, default=2, help='parallel runs, one thread each')
    p.add_argument('--only', nargs='*', default=None, help='run only these methods now (their runs are kept for the next full run)')
    p.add_argument('--resummarise', action='store_true',
                   help='recompute summary, ratios and figures from the runs stored in an existing JSON (no training)')
    a = p.parse_args(argv)
    out = Path(a.out or (RESULTS / 'quick' if a.quick else RESULTS))   # from the repository root, wherever it runs
    if a.resummarise:
        res = json.loads((out / 'stage1_toy.json').read_text())
        return finish(res, out)
    out.mkdir(parents=True, exist_ok=True)
    if a.quick:
        datasets, seeds, teacher, n_eval = ('grid25',), (0,), dict(steps=300), 500
        methods = {m: (pre, 8 * (5 if m in ('dmd2', 'dmd2+A') else 2 if m == 'dmd2+B' else 1)) for m, (pre, _) in METHODS.items()}
    else:
        datasets, seeds, teacher, methods, n_eval = DATASETS, SEEDS, {}, METHODS, 1000
    t0 = time.time()
    teacher_cfgs = {ds: {'dataset': ds, 'schedule': 'vp', **teacher} for ds in datasets}
    refs = {ds: _teacher_refs(teacher_cfgs[ds], ds, n_eval) for ds in datasets}   # also trains and caches each teacher once
    jobs = [dict(method=m, preset=pre, iters=it, dataset=ds, seed=s, teacher=teacher_cfgs[ds], quick=a.quick, n_eval=n_eval)
            for ds in datasets for s in seeds for m, (pre, it) in methods.items()]
    jobs.sort(key=lambda j: -j['iters'])                                            # longest first: better packing
    if a.only is not None: return run_jobs(_run, [j for j in jobs if j['method'] in a.only], a.workers, out / f"stage1_toy.{'+'.join(a.only)}.partial.jsonl")
    runs = run_jobs(_run, jobs, a.workers, out / 'stage1_toy.partial.jsonl')
    import torch
    from dataclasses import asdict
    from flash_dmd.distill import preset
    res = {'benchmark': 'stage1_toy', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
           'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(),
                       'threads_per_run': 1, 'workers': a.workers},
           'config': {'datasets': list(datasets), 'seeds': list(seeds), 'recommended': RECOMMENDED,
                      'methods': {m: {'preset': pre, 'iterations': it} for m, (pre, it) in methods.items()},
                      'teacher': teacher_cfgs, 'n_eval': n_eval, 'eval_every_generator_updates': EVAL_EVERY_GEN,
                      'final_value': 'the last evaluation, at the end of the budget', 'cost_unit': 'batch x training iterations',
                      'distill_configs': {m: asdict(preset(pre)) for m, (pre, _) in methods.items()}},
           'teacher_references': refs, 'runs': runs}
    return finish(res, out)

def finish(res: dict, out: Path) -> dict:
    "Summaries, cost ratios, targets and figures from the stored runs (also what --resummarise recomputes)."
    datasets, methods, runs = res['config']['datasets'], list(res['config']['methods']), res['runs']
    res['by_dataset'] = {ds: summarise_dataset(runs, ds, methods) for ds in datasets}
    res['cost_ratios'] = {m: {ds: cost_ratios(res['by_dataset'][ds], m) for ds in datasets} for m in ('flash', RECOMMENDED) if m in methods}
    res['targets'] = targets(res['by_dataset'], res['teacher_references'], RECOMMENDED) if RECOMMENDED in methods else None
    res['health_examples'] = health_examples(runs, datasets[0], [m for m in methods if m.startswith('flash')])
    (out / 'stage1_toy.json').write_text(json.dumps(res, indent=1, default=float))
    for part in out.glob('stage1_toy*.partial.jsonl'): part.unlink()          # every run is in the JSON now
    plot(runs, res['teacher_references'], datasets, methods, out / 'stage1_toy.png')
    if res['health_examples']: plot_health(res['health_examples'], out / 'stage1_toy_health.png')
    print(f"wrote {out / 'stage1_toy.json'} and its figures")
    print(json.dumps(res['targets'], indent=1, default=float))
    return res

if __name__ == '__main__':
    main()
