"""Do the DM and GAN gradients conflict, and does the timestep split change that? Measured on the toy grid.

The paper says Flash-DMD's timestep-aware split removes the conflict between the DM and the GAN gradients. This script
trains `flash` with the split on and off (same teacher, data, seeds and budget) and, every few iterations, measures
with `Distiller.grad_cosine` the cosine between the student's parameter gradients of the DM loss and of the GAN loss in
the generator update that draws each student timestep (with the split: the DM gradient at a high-noise step against the
GAN gradient of the second pass at 249). It also keeps the student's samples at regular iterations for the notebook's
widget. Every number written here is measured by this script in this run. Usage:

    python benchmarks/grad_conflict.py            # full run (about 3 minutes on 2 cores): benchmarks/results/grad_conflict.{json,png}
    python benchmarks/grad_conflict.py --quick    # seconds, checks the pipeline: benchmarks/results/quick/

Verdict: `conflict_found` is true when, without the split, the mean cosine at some student timestep is negative and a
one-sided t-test over seeds (each seed's mean over its measurements) puts it below zero at level `alpha`.
"""
from __future__ import annotations
import argparse, json, math, os, platform, time, warnings
from pathlib import Path

from _stats import mean as _mean, std as _std, RESULTS, run_jobs   # benchmarks/_stats.py (the script's folder is on sys.path)

PRESET, DATASET, SEEDS, ALPHA = 'flash', 'grid25', (0, 1, 2, 3, 4), 0.05
FULL = dict(iters=600, measure_every=25, n_measure=1024, snap_every=50, n_snap=300, n_eval=1000)
QUICK = dict(iters=20, measure_every=10, n_measure=64, snap_every=10, n_snap=50, n_eval=200)

def _nan_to_none(v): return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

def _run(job: dict) -> dict:
    "One run in a worker process (one thread): train, measuring gradient cosines and keeping snapshots as it goes."
    import torch
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    from flash_dmd.distill import preset, toy_distiller, student_samples
    from flash_dmd.toy import TeacherConfig, load_teacher, make_toy, toy_metrics
    teacher = load_teacher(TeacherConfig(**job['teacher']), seed=0)
    cfg = preset(PRESET, seed=job['seed'], split=job['split'])
    d, ref, t0 = toy_distiller(cfg, teacher, DATASET), make_toy(DATASET, job['n_eval'], seed=777), time.perf_counter()
    measures, snaps = [], []
    for i in range(job['iters'] + 1):
        if i % job['measure_every'] == 0 or i == job['iters']:
            r = d.grad_cosine(torch.Generator().manual_seed(100_000 * job['seed'] + i), job['n_measure'])
            measures.append({'iteration': i, 'cos': [_nan_to_none(float(v)) for v in r['cos']],
                             'dm_norm': [_nan_to_none(float(v)) for v in r['dm_norm']],
                             'adv_norm': [_nan_to_none(float(v)) for v in r['adv_norm']]})
            if i == 0: layout = {'t': r['t'], 'losses': r['losses'], 'adv_t': r['adv_t']}
        if i % job['snap_every'] == 0 or i == job['iters']:
            with d.passes.paused():
                x, y = student_samples(d.eval_student, job['n_eval'], teacher.n_classes, teacher.schedule, cfg.student_timesteps, seed=2)
            m = toy_metrics(x, y, ref)
            s = {'iteration': i, 'swd': m['swd'], 'mode_precision': m.get('mode_precision')}
            if job['keep_points']:
                s.update(x=[[round(float(a), 2) for a in p] for p in x[:job['n_snap']]], label=[int(v) for v in y[:job['n_snap']]])
            snaps.append(s)
        if i < job['iters']: d.step()
    return {'split': job['split'], 'seed': job['seed'], 'iters': job['iters'], **layout, 'measures': measures,
            'snapshots': snaps, 'train_seconds': d.train_seconds, 'wall_seconds': time.perf_counter() - t0}

def summarise(runs: list, split: bool, alpha: float = ALPHA) -> dict:
    """Per student timestep: each seed's mean cosine over its measurements, then across seeds the mean, std and a one-sided
    t-test of 'mean < 0'; the share of all measurements below zero; the mean weighted gradient norms."""
    from scipy import stats
    rs = [r for r in runs if r['split'] == split]
    out = {}
    for j, t in enumerate(rs[0]['t']):
        per_seed = [_mean([m['cos'][j] for m in r['measures']]) for r in rs]
        per_seed = [v for v in per_seed if v is not None]
        allv = [m['cos'][j] for r in rs for m in r['measures'] if m['cos'][j] is not None]
        mu, sd, n = _mean(per_seed), _std(per_seed), len(per_seed)
        tstat = p = None
        if n >= 2 and sd:
            tstat = mu / (sd / math.sqrt(n)); p = float(stats.t.cdf(tstat, n - 1))     # one-sided: P(T <= t) under mean 0
        out[str(t)] = {'losses': rs[0]['losses'][j], 'adv_t': rs[0]['adv_t'][j], 'n_seeds': n, 'cos_per_seed': per_seed,
                       'cos_mean': mu, 'cos_std': sd, 't_stat': tstat, 'p_negative': p,
                       'significantly_negative': bool(mu is not None and mu < 0 and p is not None and p < alpha),
                       'significantly_positive': bool(mu is not None and mu > 0 and p is not None and 1 - p < alpha),
                       'frac_negative': (sum(v < 0 for v in allv) / len(allv)) if allv else None,
                       'dm_norm_mean': _mean([m['dm_norm'][j] for r in rs for m in r['measures']]),
                       'adv_norm_mean': _mean([m['adv_norm'][j] for r in rs for m in r['measures']]),
                       'final_swd_mean': _mean([r['snapshots'][-1]['swd'] for r in rs])}
    return out

def verdict(summary: dict, alpha: float = ALPHA) -> dict:
    "What the measurements say, computed from the summary."
    off, on = summary['no_split'], summary['split']
    neg = [t for t, s in off.items() if s['significantly_negative']]
    on_neg = [t for t, s in on.items() if s['significantly_negative']]
    pair = [t for t in off if on[t]['cos_mean'] is not None and off[t]['cos_mean'] is not None]
    return {'alpha': alpha, 'conflict_found': bool(neg), 'conflict_timesteps_no_split': neg,
            'negative_timesteps_split': on_neg,
            'positive_timesteps_no_split': [t for t, s in off.items() if s['significantly_positive']],
            'most_negative_no_split': min(off, key=lambda t: off[t]['cos_mean'] if off[t]['cos_mean'] is not None else 9),
            'split_removes_conflict': (not any(t in on_neg for t in neg)) if neg else None,
            'mean_cos_no_split': _mean([off[t]['cos_mean'] for t in off]), 'mean_cos_split': _mean([on[t]['cos_mean'] for t in on]),
            'cos_change_with_split': {t: on[t]['cos_mean'] - off[t]['cos_mean'] for t in pair},
            'final_swd_no_split': next(iter(off.values()))['final_swd_mean'], 'final_swd_split': next(iter(on.values()))['final_swd_mean']}

def plot(res: dict, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axs = plt.subplots(1, 4, figsize=(20, 3.9))
    for ax, split, name in ((axs[0], False, 'no split: DM and GAN on the same output'),
                            (axs[1], True, 'split: DM at t, GAN on the second pass at 249')):
        rs = [r for r in res['runs'] if r['split'] == split]
        it = [m['iteration'] for m in rs[0]['measures']]
        for j, t in enumerate(rs[0]['t']):
            y = np.array([[np.nan if m['cos'][j] is None else m['cos'][j] for m in r['measures']] for r in rs])
            if np.isnan(y).all(): continue                        # the adversarial step with the split: one loss, no cosine
            with warnings.catch_warnings():                       # iteration 0: the DM gradient is zero (fake = real), no cosine
                warnings.simplefilter('ignore', RuntimeWarning); mu, sd = np.nanmean(y, 0), np.nanstd(y, 0)
            ax.plot(it, mu, label=f't = {t}', color=f'C{j}'); ax.fill_between(it, mu - sd, mu + sd, color=f'C{j}', alpha=0.12)
        ax.axhline(0, c='k', lw=0.8); ax.set(title=name, xlabel='iteration', ylabel='cos(grad DM, grad GAN)', ylim=(-1, 1))
        ax.legend(fontsize=7)
    ts = list(res['summary']['no_split'])
    w = 0.38
    for k, (key, label) in enumerate((('no_split', 'no split'), ('split', 'split'))):
        S = res['summary'][key]
        y = [S[t]['cos_mean'] if S[t]['cos_mean'] is not None else np.nan for t in ts]
        e = [S[t]['cos_std'] or 0 for t in ts]
        axs[2].bar(np.arange(len(ts)) + (k - 0.5) * w, y, w, yerr=e, capsize=3, label=label, color=f'C{k + 5}')
        dm = [S[t]['dm_norm_mean'] or np.nan for t in ts]; adv = [S[t]['adv_norm_mean'] or np.nan for t in ts]
        axs[3].plot(ts, dm, 'o-' if k == 0 else 's--', color='C0', label=f'DM ({label})')
        axs[3].plot(ts, adv, 'o-' if k == 0 else 's--', color='C3', label=f'GAN ({label})')
    axs[2].axhline(0, c='k', lw=0.8); axs[2].set_xticks(range(len(ts)), [f't = {t}' for t in ts])
    axs[2].set(title='mean cosine per timestep (± seed std)', ylabel='cosine'); axs[2].legend(fontsize=7)
    axs[3].set(title='gradient norms (weighted as in the update)', xlabel='student timestep', yscale='log'); axs[3].legend(fontsize=7)
    axs[3].invert_xaxis()
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='tiny run (seconds) that checks the pipeline and the file shape')
    p.add_argument('--out', default=None, help='output folder (default benchmarks/results, or benchmarks/results/quick with --quick)')
    p.add_argument('--workers', type=int, default=2, help='parallel runs, one thread each')
    a = p.parse_args(argv)
    out = Path(a.out or (RESULTS / 'quick' if a.quick else RESULTS)); out.mkdir(parents=True, exist_ok=True)
    knobs, seeds, teacher = (QUICK, SEEDS[:2], {'dataset': DATASET, 'schedule': 'vp', 'steps': 300}) if a.quick else \
                            (FULL, SEEDS, {'dataset': DATASET, 'schedule': 'vp'})
    t0 = time.time()
    from flash_dmd.toy import TeacherConfig, load_teacher
    load_teacher(TeacherConfig(**teacher), seed=0)                          # train and cache the teacher once, before the pool
    jobs = [dict(split=s, seed=sd, teacher=teacher, keep_points=sd == seeds[0], **knobs) for s in (False, True) for sd in seeds]
    runs = run_jobs(_run, jobs, a.workers, out / 'grad_conflict.partial.jsonl')
    import torch
    from dataclasses import asdict
    from flash_dmd.distill import preset
    res = {'benchmark': 'grad_conflict', 'quick': a.quick, 'wall_seconds': None,
           'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(),
                       'threads_per_run': 1, 'workers': a.workers},
           'config': {'preset': PRESET, 'dataset': DATASET, 'seeds': list(seeds), 'teacher': teacher, 'alpha': ALPHA, **knobs,
                      'split_values': [False, True], 'distill_config': asdict(preset(PRESET)),
                      'measure': 'Distiller.grad_cosine on a fresh batch of n_measure, its own seeded generator (training untouched)',
                      'snapshots': 'the EMA student (what evaluation uses), 4 steps, fixed noise; points kept for the first seed only'},
           'runs': runs}
    res['summary'] = {'no_split': summarise(runs, False), 'split': summarise(runs, True)}
    res['verdict'] = verdict(res['summary'])
    res['wall_seconds'] = round(time.time() - t0, 1)
    (out / 'grad_conflict.json').write_text(json.dumps(res, indent=1, default=float))
    (out / 'grad_conflict.partial.jsonl').unlink(missing_ok=True)           # every run is in the JSON now
    plot(res, out / 'grad_conflict.png')
    print(f"wrote {out / 'grad_conflict.json'} and its figure in {res['wall_seconds']} s")
    print(json.dumps(res['verdict'], indent=1, default=float))
    return res

if __name__ == '__main__':
    main()
