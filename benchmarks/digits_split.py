"""Digits: what keeps Flash-DMD's timestep split from drifting? One change at a time on top of the `flash` preset.

    python benchmarks/digits_split.py            # about 12 minutes on 2 cores: benchmarks/results/digits_split.{json,png}
    python benchmarks/digits_split.py --quick    # seconds, checks the pipeline: benchmarks/results/quick/

benchmarks/digits.py found that with the split (DM loss at 999/749/499, Pixel-GAN alone at 249) Flash-DMD reaches a
good digits student early and then drifts toward saturated images, while `split=False` does not. Each variant here
changes one DistillConfig field of `flash` (with flash_dmd.digits.DIGITS_DEFAULTS), same seeds, data and iterations;
the 4-step student is evaluated on held-out digits in the evaluation network's features. Every number in the JSON
is measured by this script in this run.
"""
from __future__ import annotations
import argparse, json, time, warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _stats import mean as _mean, std as _std   # benchmarks/_stats.py

VARIANTS = {   # name -> overrides of the flash preset (on top of DIGITS_DEFAULTS)
    'flash': {}, 'lr_g=1e-5': {'lr_g': 1e-5}, 'w_adv=0.1': {'w_adv': 0.1}, 'r1=1': {'r1': 1.0}, 'ttur=2': {'ttur': 2},
    'no EMA injection': {'ema_inject': None}, 'normaliser=sample': {'normaliser': 'sample'}, 'split=False': {'split': False}}
SEEDS, ITERS, EVAL_EVERY, N_EVAL = (0, 1), 500, 50, 500

def _run(job: dict) -> dict:
    import torch
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    from flash_dmd.digits import digits_preset, run_digits, load_digits_teacher, DigitsEvaluator
    cfg = digits_preset('flash', seed=job['seed'], **job['overrides'])
    t0, err, curve = time.perf_counter(), None, []
    try: _, curve = run_digits(cfg, job['iters'], eval_every=job['every'], n_eval=job['n_eval'], teacher=load_digits_teacher(), evaluator=DigitsEvaluator())
    except FloatingPointError as e: err = str(e)
    keep = ('iterations', 'fd', 'saturation', 'recall', 'accuracy', 'train_seconds')
    return {'variant': job['variant'], 'seed': job['seed'], 'error': err, 'wall_seconds': time.perf_counter() - t0,
            'curve': [{k: r[k] for k in keep} for r in curve]}

def summarise(runs: list) -> dict:
    out = {}
    for v in VARIANTS:
        rs = [r for r in runs if r['variant'] == v and not r['error'] and r['curve']]
        if not rs: out[v] = {'n_seeds': 0}; continue
        final = lambda r, k: sum(c[k] for c in r['curve'][-2:]) / len(r['curve'][-2:])      # mean of the last 2 evaluations
        best = [min(c['fd'] for c in r['curve']) for r in rs]
        # drift: how far the final FD is above the best FD reached during the run
        out[v] = {'n_seeds': len(rs), 'n_diverged': sum(1 for r in runs if r['variant'] == v and r['error']),
                  'final_fd': {'mean': _mean([final(r, 'fd') for r in rs]), 'std': _std([final(r, 'fd') for r in rs])},
                  'best_fd': {'mean': _mean(best), 'std': _std(best)},
                  'drift': {'mean': _mean([final(r, 'fd') - b for r, b in zip(rs, best)]), 'std': _std([final(r, 'fd') - b for r, b in zip(rs, best)])},
                  'final_saturation': {'mean': _mean([final(r, 'saturation') for r in rs]), 'std': _std([final(r, 'saturation') for r in rs])},
                  'overrides': VARIANTS[v]}
    return out

def plot(runs: list, path: Path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axs = plt.subplots(1, 2, figsize=(13, 4.2))
    for k, v in enumerate(VARIANTS):
        rs = [r for r in runs if r['variant'] == v and r['curve']]
        if not rs: continue
        n = min(len(r['curve']) for r in rs)
        x = [c['iterations'] for c in rs[0]['curve'][:n]]
        for ax, key in zip(axs, ('fd', 'saturation')):
            ax.plot(x, np.mean([[c[key] for c in r['curve'][:n]] for r in rs], 0), label=v, color=f'C{k}', ls='-' if v != 'split=False' else '--')
    axs[0].set(xlabel='iterations', ylabel='Frechet distance (held out, eval net)', title='flash on digits: one change at a time (mean over seeds)')
    axs[1].set(xlabel='iterations', ylabel='share of pixels beyond +-1.05', title='saturation')
    axs[0].legend(fontsize=7); fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true'); p.add_argument('--out', default=None); p.add_argument('--workers', type=int, default=2)
    a = p.parse_args(argv)
    out = Path(a.out or ('benchmarks/results/quick' if a.quick else 'benchmarks/results')); out.mkdir(parents=True, exist_ok=True)
    seeds, iters, every, n_eval = ((0,), 4, 2, 100) if a.quick else (SEEDS, ITERS, EVAL_EVERY, N_EVAL)
    jobs = [{'variant': v, 'overrides': o, 'seed': s, 'iters': iters, 'every': every, 'n_eval': n_eval} for v, o in VARIANTS.items() for s in seeds]
    t0 = time.time()
    with ProcessPoolExecutor(a.workers) as ex: runs = list(ex.map(_run, jobs))
    res = {'benchmark': 'digits_split', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
           'config': {'base': 'flash preset + DIGITS_DEFAULTS', 'seeds': list(seeds), 'iterations': iters, 'eval_every': every,
                      'n_eval': n_eval, 'final_value': 'mean of the last 2 evaluations', 'drift': 'final FD minus the best FD of the run'},
           'summary': summarise(runs), 'runs': runs}
    (out / 'digits_split.json').write_text(json.dumps(res, indent=1))
    plot(runs, out / 'digits_split.png')
    for v, s in res['summary'].items():
        if s['n_seeds']: print(f"{v:<20} final FD {s['final_fd']['mean']:6.1f} ± {s['final_fd']['std']:4.1f}  best {s['best_fd']['mean']:5.1f}  drift {s['drift']['mean']:5.1f}  saturation {s['final_saturation']['mean']:.3f}")
    print('wrote', out / 'digits_split.json', f"in {res['wall_seconds']:.0f}s")

if __name__ == '__main__':
    main()
