"""What keeps Flash-DMD's student from drifting after its best point? One stabiliser at a time on top of `flash`.

    python benchmarks/stabilisers.py            # about 15 minutes on 2 cores: benchmarks/results/stabilisers.{json,png}
    python benchmarks/stabilisers.py --quick    # seconds, checks the pipeline: benchmarks/results/quick/

Each variant changes one DistillConfig field of the `flash` preset (every preset keeps a student EMA, and the EMA
student is what is evaluated), on digits (flash_dmd.digits.DIGITS_DEFAULTS, Frechet distance in the evaluation
network's features on held-out digits), the scale where the paper's recipe drifted most. Same seeds, data
and iterations for every variant. Final = the last evaluation (the end of the budget); drift = final minus the best
value of the run. The project's recommended preset (`flash-stable`) is chosen from this file's verdict. Every number
in the JSON is measured by this script in this run.
"""
from __future__ import annotations
import argparse, json, time, warnings
from pathlib import Path

from _stats import mean as _mean, std as _std, RESULTS, run_jobs   # benchmarks/_stats.py

COSINE = {'lr_schedule': 'cosine'}         # warm-up over the first tenth of the run's budget, decay to its end (see _fill)
VARIANTS = {   # name -> overrides of the flash preset
    'flash': {}, 'no student EMA': {'student_ema': None}, 'r1=1': {'r1': 1.0}, 'lr warm-up + cosine': COSINE,
    'w_adv=0.01': {'w_adv': 0.01}, 'betas_d=(0.9, 0.999)': {'betas_d': (0.9, 0.999)},
    'split=False': {'split': False}, 'r1=1 + cosine': {'r1': 1.0, **COSINE}}
SCALES = {'digits': dict(iters=500, every=50, n_eval=500, key='fd')}   # where the paper's recipe drifted; toy rows: stage1_toy.py
SEEDS = (0, 1)

def _fill(over: dict, iters: int) -> dict:
    "A cosine schedule's warm-up and horizon from the run's budget `iters`."
    return {**over, 'lr_warmup': iters // 10, 'lr_horizon': iters} if over.get('lr_schedule') == 'cosine' else over

def _run(job: dict) -> dict:
    import torch
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    over, t0, err, curve = _fill(job['overrides'], job['iters']), time.perf_counter(), None, []
    from flash_dmd.digits import digits_preset, run_digits, load_digits_teacher, DigitsEvaluator
    try: _, curve = run_digits(digits_preset('flash', seed=job['seed'], **over), job['iters'], eval_every=job['every'],
                               n_eval=job['n_eval'], teacher=load_digits_teacher(), evaluator=DigitsEvaluator())
    except FloatingPointError as e: err = str(e)
    keep = ('iterations', 'fd', 'saturation', 'recall', 'train_seconds')
    return {'variant': job['variant'], 'scale': job['scale'], 'seed': job['seed'], 'error': err, 'overrides': over,
            'wall_seconds': time.perf_counter() - t0, 'curve': [{k: r[k] for k in keep if k in r} for r in curve]}

def summarise(runs: list, scale: str, key: str) -> dict:
    out = {}
    for v in VARIANTS:
        rs = [r for r in runs if r['scale'] == scale and r['variant'] == v and not r['error'] and r['curve']]
        n_div = sum(1 for r in runs if r['scale'] == scale and r['variant'] == v and r['error'])
        if not rs: out[v] = {'n_seeds': 0, 'n_diverged': n_div}; continue
        ms = lambda xs: {'mean': _mean(xs), 'std': _std(xs)}
        final, best = [r['curve'][-1][key] for r in rs], [min(c[key] for c in r['curve']) for r in rs]
        out[v] = {'n_seeds': len(rs), 'n_diverged': n_div, 'final': ms(final), 'best': ms(best),
                  'drift': ms([f - b for f, b in zip(final, best)]), 'overrides': VARIANTS[v]}
        if 'saturation' in rs[0]['curve'][-1]: out[v]['final_saturation'] = ms([r['curve'][-1]['saturation'] for r in rs])
    return out

NOT_A_RECIPE = ('split=False', 'no student EMA')    # measured for the lesson; a Flash-DMD recipe keeps the split and the EMA

def verdict(summary: dict) -> dict:
    """Per scale: variants whose final value beats flash's by more than both seed spreads, the lowest final value, the least
    drift, and `recommended`: the stabiliser (not in NOT_A_RECIPE) with the lowest mean final value, or 'flash' if none beats it."""
    out = {}
    for scale, S in summary.items():
        base = S['flash']
        ok = {v: s for v, s in S.items() if s.get('n_seeds') and not s['n_diverged']}
        better = [v for v, s in ok.items() if v != 'flash' and s['final']['mean'] + s['final']['std'] < base['final']['mean'] - base['final']['std']]
        cands = {v: s for v, s in ok.items() if v not in NOT_A_RECIPE}
        out[scale] = {'clearly_better_than_flash': better, 'lowest_final': min(ok, key=lambda v: ok[v]['final']['mean']),
                      'least_drift': min(ok, key=lambda v: ok[v]['drift']['mean']),
                      'recommended': min(cands, key=lambda v: cands[v]['final']['mean'])}
    return out

def plot(runs: list, path: Path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axs = plt.subplots(1, len(SCALES), figsize=(7 * len(SCALES), 4.4), squeeze=False)
    for ax, (scale, sc) in zip(axs[0], SCALES.items()):
        for k, v in enumerate(VARIANTS):
            rs = [r for r in runs if r['scale'] == scale and r['variant'] == v and r['curve']]
            if not rs: continue
            n = min(len(r['curve']) for r in rs)
            ax.plot([c['iterations'] for c in rs[0]['curve'][:n]], np.mean([[c[sc['key']] for c in r['curve'][:n]] for r in rs], 0),
                    label=v, color=f'C{k % 10}', ls='-' if k < 10 else '--', lw=2 if v == 'flash' else 1.2)
        ax.set(xlabel='iterations', ylabel=f"{sc['key'].upper()} of the EMA student (mean over seeds)", title=f'{scale}: one change at a time on flash')
        ax.set_yscale('log')
    axs[0, 0].legend(fontsize=7); fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true'); p.add_argument('--out', default=None); p.add_argument('--workers', type=int, default=2)
    p.add_argument('--resummarise', action='store_true', help='recompute summary, verdict and figure from the stored runs')
    a = p.parse_args(argv)
    if a.resummarise:
        path = Path(a.out or RESULTS) / 'stabilisers.json'; res = json.loads(path.read_text())
        res['summary'] = {sc: summarise(res['runs'], sc, c['key']) for sc, c in res['config']['scales'].items()}
        res['verdict'] = verdict(res['summary']); path.write_text(json.dumps(res, indent=1)); plot(res['runs'], path.with_suffix('.png'))
        return print('verdict:', res['verdict'])
    out = Path(a.out or (RESULTS / 'quick' if a.quick else RESULTS)); out.mkdir(parents=True, exist_ok=True)   # results/ beside this script, wherever it runs
    scales = {s: (dict(c, iters=4, every=2, n_eval=100) if a.quick else c) for s, c in SCALES.items()}
    seeds = (0,) if a.quick else SEEDS
    jobs = [{'variant': v, 'overrides': o, 'seed': s, 'scale': sc, **{k: c[k] for k in ('iters', 'every', 'n_eval')}}
            for sc, c in scales.items() for v, o in VARIANTS.items() for s in seeds]
    t0 = time.time()
    runs = run_jobs(_run, jobs, a.workers, out / 'stabilisers.partial.jsonl')
    summary = {sc: summarise(runs, sc, c['key']) for sc, c in scales.items()}
    res = {'benchmark': 'stabilisers', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
           'config': {'base': 'flash preset (digits: + DIGITS_DEFAULTS)', 'seeds': list(seeds), 'scales': scales,
                      'variants': VARIANTS, 'final_value': 'the last evaluation', 'drift': 'final minus the best value of the run'},
           'summary': summary, 'verdict': verdict(summary), 'runs': runs}
    (out / 'stabilisers.json').write_text(json.dumps(res, indent=1))
    for part in out.glob('stabilisers*.partial.jsonl'): part.unlink()         # every run is in the JSON now
    plot(runs, out / 'stabilisers.png')
    for sc, S in summary.items():
        for v, s in S.items():
            if s.get('n_seeds'): print(f"{sc:7s} {v:<22} final {s['final']['mean']:7.3f} ± {s['final']['std']:6.3f}  best {s['best']['mean']:7.3f}  drift {s['drift']['mean']:7.3f}")
    print('verdict:', res['verdict'])
    print('wrote', out / 'stabilisers.json', f"in {res['wall_seconds']:.0f}s")

if __name__ == '__main__':
    main()
