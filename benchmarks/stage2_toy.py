"""Stage 2 on toy 2D: joint RL + distillation against its controls and baselines, and reward hacking measured.

Every number written here is measured by this script in this run. Usage:

    python benchmarks/stage2_toy.py            # full run (about 15 minutes on 2 cores): benchmarks/results/stage2_toy.{json,png}
    python benchmarks/stage2_toy.py --quick    # about a minute, checks the pipeline: benchmarks/results/quick/

Setting (see nbs/05_rewards and nbs/06_joint_rl): the 25-mode grid; the training reward is the bounded side
preference tanh(x); the policy optimises a noise-aware reward model (LRM) trained on teacher samples labelled by that
reward with Bradley-Terry noise; a held-out judge rewards samples on a mode of their own class (credit by that mode's
side) and is never trained on. Every method starts from the same Stage 1 Flash-DMD student of its seed.
"""
from __future__ import annotations
import argparse, json, os, platform, time, warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _stats import mean as _mean, std as _std, RESULTS   # benchmarks/_stats.py (the script's folder is on sys.path)

DATASET, SEEDS, STAGE1_ITERS, CYCLES, EVAL_EVERY = 'grid25', (0, 1, 2, 3, 4), 1500, 200, 25
# name -> (RL preset, RL:DM ratio, extra); a cycle is `ratio` RL updates then one distillation iteration
METHODS = {
    'flash+rl': ('flash+rl', 5, {}), 'distill-only': ('distill-only', 5, {}), 'pure-rl': ('pure-rl', 5, {}),
    'joint-no-pixelgan': ('joint-no-pixelgan', 5, {}), 'rl-all-steps': ('rl-all-steps', 5, {}),
    'post-hoc': ('post-hoc', 5, {}), 'refl': ('refl', 5, {}),
    'flash+rl@1:1': ('flash+rl', 1, {}), 'flash+rl@2:1': ('flash+rl', 2, {}), 'flash+rl@10:1': ('flash+rl', 10, {})}
RL_LR = 1e-4
RL_BETA = 200.   # DPO beta on the per-dimension log-ratio: toy points have 2 numbers, so this is the old 100 on the sum

def _setup(job):
    import torch
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    from flash_dmd.toy import TeacherConfig, load_teacher, teacher_key, teacher_samples
    from flash_dmd.rewards import side_reward, preference_pairs, train_lrm, NoiseAwareRewardModel
    tcfg = TeacherConfig(DATASET, 'vp', **job['teacher'])
    teacher = load_teacher(tcfg, 0)
    xs, cs = teacher_samples(teacher, 4000, 50, seed=100 + job['seed'])
    pairs = preference_pairs(xs, cs, side_reward(), 20000, 0.1, torch.Generator().manual_seed(job['seed']))
    lrm = train_lrm(NoiseAwareRewardModel(teacher.schedule, teacher.n_classes), pairs, steps=job['lrm_steps'], batch=256, seed=job['seed'])
    return tcfg, teacher, lrm

def _stage1(job):
    "Train (and cache) the Stage 1 student of one seed."
    import torch; torch.set_num_threads(1); warnings.filterwarnings('ignore')
    from flash_dmd.toy import TeacherConfig, load_teacher, teacher_key
    from flash_dmd.distill import preset
    from flash_dmd.rl import load_stage1
    tcfg = TeacherConfig(DATASET, 'vp', **job['teacher'])
    t0 = time.perf_counter()
    load_stage1(load_teacher(tcfg, 0), teacher_key(tcfg, 0), DATASET, preset('flash', seed=job['seed']), job['stage1_iters'])
    return {'seed': job['seed'], 'seconds': time.perf_counter() - t0}

def _run(job):
    "One Stage 2 run from the seed's Stage 1 student; its curve of reward, judge and distribution metrics."
    import torch
    tcfg, teacher, lrm = _setup(job)
    from flash_dmd.toy import teacher_key, make_toy, toy_metrics
    from flash_dmd.distill import preset, student_samples
    from flash_dmd.rl import load_stage1, JointTrainer, rl_preset
    from flash_dmd.rewards import side_reward, judge_reward
    ref = make_toy(DATASET, job['n_eval'], seed=777)
    reward, judge = side_reward(), judge_reward(ref)
    d = load_stage1(teacher, teacher_key(tcfg, 0), DATASET, preset('flash', seed=job['seed']), job['stage1_iters'])

    def evaluate(cycle, phase_cycles):
        x, y = student_samples(d.student, job['n_eval'], teacher.n_classes, teacher.schedule, seed=1)
        m = toy_metrics(x, y, ref)
        with torch.no_grad(): lrm_score = lrm(x, torch.zeros(len(x)), y).mean().item()
        return {'cycle': cycle, 'rl_updates': phase_cycles['rl'], 'distill_iterations': phase_cycles['dm'],
                'reward': reward(x, y).mean().item(), 'judge': judge(x, y).mean().item(), 'lrm_clean': lrm_score,
                'swd': m['swd'], 'mode_precision': m['mode_precision'], 'coverage': m['coverage'],
                'precision': m['precision'], 'recall': m['recall']}

    phases = ([('distill-only', job['cycles']), ('pure-rl', job['cycles'])] if job['rl_preset'] == 'post-hoc'
              else [(job['rl_preset'], job['cycles'])])
    curve, cyc, counts, err, t0 = [], 0, {'rl': 0, 'dm': 0}, None, time.perf_counter()
    curve.append(evaluate(0, counts))
    try:
        for name, n in phases:
            jt = JointTrainer(rl_preset(name, rl_ratio=job['ratio'], lr=RL_LR, beta=RL_BETA, seed=job['seed']), d, lrm, reward)
            for i in range(n):
                jt.step(); cyc += 1
                counts = {'rl': counts['rl'] + (jt.cfg.rl_ratio if jt.cfg.rl != 'none' else 0), 'dm': counts['dm'] + int(jt.cfg.distill)}
                if cyc % job['eval_every'] == 0: curve.append(evaluate(cyc, counts))
    except FloatingPointError as e:
        err = str(e)
    return {k: job[k] for k in ('method', 'seed', 'ratio')} | {'curve': curve, 'error': err, 'train_seconds': time.perf_counter() - t0}

def _final(curve, key, last=2):
    v = [r[key] for r in curve[-last:]]
    return sum(v) / len(v)


def summarise(runs, methods):
    out = {}
    control = {r['seed']: r for r in runs if r['method'] == 'distill-only' and r['curve']}
    for m in methods:
        rs = [r for r in runs if r['method'] == m and len(r['curve']) > 1]
        g = lambda key: [_final(r['curve'], key) - r['curve'][0][key] for r in rs]
        vs_ctrl = lambda key: [_final(r['curve'], key) - _final(control[r['seed']]['curve'], key) for r in rs if r['seed'] in control]
        out[m] = {'n_seeds': len(rs), 'n_diverged': len([r for r in runs if r['method'] == m]) - len(rs),
                  'reward_gain_mean': _mean(g('reward')), 'reward_gain_std': _std(g('reward')),
                  'judge_gain_mean': _mean(g('judge')), 'judge_gain_std': _std(g('judge')),
                  'precision_mean': _mean([_final(r['curve'], 'mode_precision') for r in rs]),
                  'swd_drift_mean': _mean(g('swd')), 'coverage_mean': _mean([_final(r['curve'], 'coverage') for r in rs]),
                  'reward_vs_control_mean': _mean(vs_ctrl('reward')), 'judge_vs_control_mean': _mean(vs_ctrl('judge')),
                  'swd_vs_control_mean': _mean(vs_ctrl('swd')), 'precision_vs_control_mean': _mean(vs_ctrl('mode_precision')),
                  'train_seconds_mean': _mean([r['train_seconds'] for r in rs])}
    return out

def plot(runs, methods, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    main = [m for m in ('distill-only', 'flash+rl', 'pure-rl', 'joint-no-pixelgan', 'rl-all-steps', 'refl', 'post-hoc') if m in methods]
    fig, axs = plt.subplots(1, 5, figsize=(24, 4.2))
    for k, (key, title) in enumerate([('reward', 'training reward (side)'), ('judge', 'held-out judge'),
                                      ('mode_precision', 'mode precision'), ('swd', 'SWD to data')]):
        ax = axs[k]
        for i, m in enumerate(main):
            rs = [r for r in runs if r['method'] == m and len(r['curve']) > 1]
            if not rs: continue
            n = min(len(r['curve']) for r in rs)
            x = [c['cycle'] for c in rs[0]['curve'][:n]]
            y = np.array([[c[key] for c in r['curve'][:n]] for r in rs])
            ax.plot(x, y.mean(0), label=m, color=f'C{i}'); ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), color=f'C{i}', alpha=0.12)
        ax.set(title=title, xlabel='cycle (RL updates + 1 distillation iteration)')
        if k == 0: ax.legend(fontsize=7)
    ax = axs[4]
    for i, m in enumerate(methods):
        rs = [r for r in runs if r['method'] == m and len(r['curve']) > 1]
        ax.scatter([_final(r['curve'], 'swd') - r['curve'][0]['swd'] for r in rs],
                   [_final(r['curve'], 'reward') - r['curve'][0]['reward'] for r in rs], label=m, color=f'C{i % 10}',
                   marker='o' if '@' not in m else 'x')
    ax.axvline(0, c='k', lw=0.6); ax.axhline(0, c='k', lw=0.6)
    ax.set(xlabel='SWD drift (final - start)', ylabel='reward gain (final - start)', title='reward gain against distribution drift')
    ax.legend(fontsize=6)
    fig.tight_layout(); fig.savefig(path, dpi=85); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='a tiny run that checks the pipeline and the file shape')
    p.add_argument('--out', default=None)
    p.add_argument('--workers', type=int, default=2)
    a = p.parse_args(argv)
    out = Path(a.out or (RESULTS / 'quick' if a.quick else RESULTS)); out.mkdir(parents=True, exist_ok=True)   # results/ beside this script, wherever it runs
    if a.quick: seeds, base = (0,), dict(teacher={'steps': 300}, stage1_iters=30, cycles=8, eval_every=4, lrm_steps=100, n_eval=500)
    else: seeds, base = SEEDS, dict(teacher={}, stage1_iters=STAGE1_ITERS, cycles=CYCLES, eval_every=EVAL_EVERY, lrm_steps=800, n_eval=1500)
    t0 = time.time()
    with ProcessPoolExecutor(a.workers) as ex:
        s1 = list(ex.map(_stage1, [dict(seed=s, **base) for s in seeds]))
        print('Stage 1 students ready:', [round(r['seconds']) for r in s1], 's', flush=True)
        jobs = [dict(method=m, rl_preset=pre, ratio=ratio, seed=s, **base) for s in seeds for m, (pre, ratio, _) in METHODS.items()]
        runs = []
        for i, r in enumerate(ex.map(_run, jobs), 1):
            runs.append(r); c = r['curve'][-1]
            print(f"[{i}/{len(jobs)}] {r['method']:18s} seed {r['seed']}: reward {c['reward']:+.3f} judge {c['judge']:+.3f} "
                  f"swd {c['swd']:.3f} precision {c['mode_precision']:.3f}" + (f" DIVERGED {r['error']}" if r['error'] else ''), flush=True)
    summary = summarise(runs, list(METHODS))
    import torch
    from flash_dmd.rl import RL_PRESETS
    result = {'benchmark': 'stage2_toy', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
              'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(), 'workers': a.workers},
              'config': {'dataset': DATASET, 'seeds': list(seeds), **base, 'rl_lr': RL_LR, 'rl_beta': RL_BETA, 'stage1_preset': 'flash',
                         'methods': {m: {'rl_preset': pre, 'rl_dm_ratio': ratio} for m, (pre, ratio, _) in METHODS.items()},
                         'rl_presets': {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()} for k, v in RL_PRESETS.items()},
                         'training_reward': 'tanh(x[:, 0])', 'judge': 'tanh(nearest own-class mode x) * exp(-d^2 / (2 (2 std)^2))',
                         'post_hoc': 'distill-only for `cycles`, then pure-rl for `cycles`',
                         'final_value': 'mean of the last 2 evaluations'},
              'stage1_seconds': s1, 'summary': summary, 'runs': runs}
    (out / 'stage2_toy.json').write_text(json.dumps(result, indent=1))
    plot(runs, list(METHODS), out / 'stage2_toy.png')
    print(f"wrote {out / 'stage2_toy.json'} and {out / 'stage2_toy.png'} in {time.time() - t0:.0f}s")
    print(json.dumps({m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()} for m, s in summary.items()}, indent=1))
    return result

if __name__ == '__main__':
    main()
