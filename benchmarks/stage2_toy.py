"""Stage 2 on toy 2D: does joint RL raise a held-out judge? The faithful recipe, its levers one at a time, the controls.

Every number written here is measured by this script in this run. Usage:

    python benchmarks/stage2_toy.py                 # full run (about 40 minutes on 2 cores): benchmarks/results/stage2_toy.{json,png}
    python benchmarks/stage2_toy.py --quick         # about a minute, checks the pipeline: benchmarks/results/quick/
    python benchmarks/stage2_toy.py --only a b      # run some methods now; a later full run reuses them

Setting (see nbs/05_rewards and nbs/06_joint_rl): the 25-mode grid (each class has one mode in each column); the
training reward is the bounded side preference tanh(x); the policy optimises a noise-aware reward model (LRM) trained on
teacher samples labelled by that reward with Bradley-Terry noise; a held-out judge, never trained on, rewards samples on
a mode of their own class with credit for that mode's side. Every method starts from the same Stage 1 Flash-DMD EMA
student of its seed and runs the same number of cycles; the distillation-only control is in every table.

Each RL update also measures its DPO labels: both the winner and the loser are finished by the student with the same
noise, and the judge (and the training reward) say which clean sample is better; the share that agrees with the reward
model is the label accuracy at that RL step (0.5 is a coin flip).

The goal (beyond the paper): the judge rises by more than its seed spread, over the start and over the control, while
mode precision and coverage stay within 5% of the start.
"""
from __future__ import annotations
import json, os, platform, time, warnings
from pathlib import Path

from _stats import RESULTS, run_jobs, rl_labels, stage2_summary, stage2_verdict, plot_stage2, stage2_parser, only_tag, write_stage2, resummarise_stage2   # benchmarks/_stats.py (the script's folder is on sys.path)

DATASET, SEEDS, STAGE1_ITERS, CYCLES, EVAL_EVERY = 'grid25', (0, 1, 2, 3, 4), 1500, 200, 25
RL_LR, RL_BETA = 1e-4, 200.   # beta on the per-dimension log-ratio: toy points have 2 numbers, so the old 100 on the sum
CONTROL, FAITHFUL = 'distill-only', 'flash+rl'
LRMS = {'lrm': dict(pairs=20000, steps=800), 'lrm-strong': dict(pairs=80000, steps=3200), 'teacher-x0': {}}
# name -> (RL preset, RL:DM ratio, RLConfig overrides, reward model); a cycle is `ratio` RL updates then one distillation iteration
METHODS = {
    CONTROL: ('distill-only', 5, {}, 'lrm'),
    FAITHFUL: ('flash+rl', 5, {}, 'lrm'),                                   # the paper's recipe: DPO at 999/749, 5:1, k=4
    'pure-rl': ('pure-rl', 5, {}, 'lrm'),
    'refl': ('refl', 5, {}, 'lrm'),
    'steps 749/499': ('flash+rl', 5, {'rl_steps': (749, 499)}, 'lrm'),
    'steps 999/749/499': ('flash+rl', 5, {'rl_steps': (999, 749, 499)}, 'lrm'),
    'min_gap 1': ('flash+rl', 5, {'min_gap': 1.0}, 'lrm'),
    'k 8': ('flash+rl', 5, {'k': 8}, 'lrm'),
    'beta 50': ('flash+rl', 5, {'beta': 50.}, 'lrm'),
    'beta 800': ('flash+rl', 5, {'beta': 800.}, 'lrm'),
    'lr 3e-4': ('flash+rl', 5, {'lr': 3e-4}, 'lrm'),
    'lrm strong': ('flash+rl', 5, {}, 'lrm-strong'),
    'rm teacher-x0': ('flash+rl', 5, {}, 'teacher-x0'),
    'ratio 1:1': ('flash+rl', 1, {}, 'lrm'),
    'ratio 10:1': ('flash+rl', 10, {}, 'lrm'),
    'steps 999/749/499 + min_gap 1': ('flash+rl', 5, {'rl_steps': (999, 749, 499), 'min_gap': 1.0}, 'lrm'),
}
GOAL_KEEP = 0.95   # mode precision and coverage at least this share of the start
SHOW_SEED, N_SHOW = 0, 600   # final samples of this seed are kept, for the picture in the PNG and in nbs/06_joint_rl

def _teacher(job):
    import torch
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    from flash_dmd.toy import TeacherConfig, load_teacher, teacher_key
    tcfg = TeacherConfig(DATASET, 'vp', **job['teacher'])
    return load_teacher(tcfg, 0), teacher_key(tcfg, 0)

def reward_model(kind: str, teacher, seed: int, scale: dict):
    "The reward model DPO ranks candidates with: a Bradley-Terry LRM (`lrm`, `lrm-strong`) or the reward of the teacher's posterior mean."
    import torch
    from flash_dmd.toy import teacher_samples
    from flash_dmd.rewards import side_reward, preference_pairs, train_lrm, NoiseAwareRewardModel, x0_reward
    if kind == 'teacher-x0': return x0_reward(teacher, side_reward())
    n = LRMS[kind]
    xs, cs = teacher_samples(teacher, 4000, 50, seed=100 + seed)
    pairs = preference_pairs(xs, cs, side_reward(), int(n['pairs'] * scale['lrm']), 0.1, torch.Generator().manual_seed(seed))
    return train_lrm(NoiseAwareRewardModel(teacher.schedule, teacher.n_classes), pairs, steps=max(int(n['steps'] * scale['lrm']), 10),
                     batch=256, seed=seed)

def rm_accuracy(score, teacher, seed: int, ts=(999, 749, 499, 249)) -> dict:
    "How often the reward model orders held-out teacher pairs (noised to t) as the noiseless training reward does."
    from flash_dmd.toy import teacher_samples
    from flash_dmd.rewards import side_reward, pairwise_accuracy
    xs, cs = teacher_samples(teacher, 4000, 50, seed=900 + seed)
    same = cs[:2000] == cs[2000:]
    xa, xb, c = xs[:2000][same], xs[2000:][same], cs[:2000][same]
    return {str(t): pairwise_accuracy(score, xa, xb, c, side_reward(), teacher.schedule, t) for t in ts}

def _stage1(job):
    "Train (and cache) the Stage 1 student of one seed."
    from flash_dmd.distill import preset
    from flash_dmd.rl import load_stage1
    teacher, key = _teacher(job)
    t0 = time.perf_counter()
    load_stage1(teacher, key, DATASET, preset('flash', seed=job['seed']), job['stage1_iters'])
    return {'seed': job['seed'], 'seconds': time.perf_counter() - t0}

def _run(job):
    "One Stage 2 run from the seed's Stage 1 student: its curve of reward, judge and distribution metrics, and its label accuracy."
    import torch
    teacher, key = _teacher(job)
    from flash_dmd.toy import make_toy, toy_metrics
    from flash_dmd.distill import preset, student_samples
    from flash_dmd.rl import load_stage1, JointTrainer, rl_preset
    from flash_dmd.rewards import side_reward, judge_reward
    ref = make_toy(DATASET, job['n_eval'], seed=777)
    reward, judge = side_reward(), judge_reward(ref)
    rm = reward_model(job['rm'], teacher, job['seed'], job['scale'])
    d = load_stage1(teacher, key, DATASET, preset('flash', seed=job['seed']), job['stage1_iters'])

    def measure(net, pre=''):
        x, y = student_samples(net, job['n_eval'], teacher.n_classes, teacher.schedule, seed=1)
        m = toy_metrics(x, y, ref)
        return {pre + 'reward': reward(x, y).mean().item(), pre + 'judge': judge(x, y).mean().item(),
                **{pre + k: m[k] for k in ('swd', 'mode_precision', 'coverage', 'precision', 'recall')}}

    def evaluate(cycle, jt):                                              # the EMA student is judged; the raw one is logged beside it
        return {'cycle': cycle, 'rl_updates': jt.rl_updates, 'distill_iterations': d.it - it0, **measure(d.eval_student), **measure(d.student, 'raw_')}

    cfg = rl_preset(job['rl_preset'], rl_ratio=job['ratio'], **{'lr': RL_LR, 'beta': RL_BETA, **job['rl']}, seed=job['seed'])
    jt, it0, err, t0 = JointTrainer(cfg, d, rm, reward, judge=judge), d.it, None, time.perf_counter()
    curve = [evaluate(0, jt)]
    try:
        for c in range(1, job['cycles'] + 1):
            jt.step()
            if c % job['eval_every'] == 0: curve.append(evaluate(c, jt))
    except FloatingPointError as e:
        err = str(e)
    out = {k: job[k] for k in ('method', 'seed')} | {'curve': curve, 'error': err, 'labels': rl_labels(jt.rl_log),
                                                     'train_seconds': time.perf_counter() - t0}
    if job['seed'] == SHOW_SEED:                                          # the final samples of one seed, for the picture
        x, y = student_samples(d.eval_student, N_SHOW, teacher.n_classes, teacher.schedule, seed=1)
        out['samples'] = {'x': [[round(v, 3) for v in p] for p in x.tolist()], 'y': y.tolist()}
    return out

def summarise(runs: list, methods: list) -> dict:
    "Per method over seeds (see `_stats.stage2_summary`): the judge's gain over the start and the control, mode precision and coverage kept."
    return stage2_summary(runs, methods, CONTROL, ('reward', 'judge', 'swd', 'mode_precision', 'coverage', 'recall'),
                          {'mode_precision': 'higher', 'coverage': 'higher'}, GOAL_KEEP)

def _method_config() -> dict:
    "METHODS as JSON: each method's RL preset, RL:DM ratio, overrides and reward model."
    return {m: {'rl_preset': pre, 'rl_dm_ratio': ratio, 'overrides': {k: list(v) if isinstance(v, tuple) else v for k, v in ov.items()},
                'reward_model': rm} for m, (pre, ratio, ov, rm) in METHODS.items()}

CURVES = (CONTROL, FAITHFUL, 'pure-rl', 'refl')

def plot(result: dict, path):
    "Judge and mode precision over cycles, label accuracy per RL step, and every method's judge gain over the control."
    plot_stage2(result, path, CONTROL, CURVES, [('judge', 'held-out judge (never trained on)'), ('mode_precision', 'mode precision')])

def main(argv=None):
    a = stage2_parser(__doc__, 'seeds (default 0-4)').parse_args(argv)
    out = Path(a.out or (RESULTS / 'quick' if a.quick else RESULTS)); out.mkdir(parents=True, exist_ok=True)
    if a.resummarise: return resummarise_stage2(out, 'stage2_toy', _method_config(), summarise, CONTROL, FAITHFUL, plot, ('mode_precision', 'coverage'))
    if a.quick: seeds, base = (0,), dict(teacher={'steps': 300}, stage1_iters=30, cycles=8, eval_every=4, n_eval=500, scale={'lrm': 0.05})
    else: seeds, base = SEEDS, dict(teacher={}, stage1_iters=STAGE1_ITERS, cycles=CYCLES, eval_every=EVAL_EVERY, n_eval=1500, scale={'lrm': 1.0})
    if a.seeds is not None: seeds = tuple(a.seeds)
    t0 = time.time()
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(a.workers) as ex:
        s1 = list(ex.map(_stage1, [dict(seed=s, **base) for s in seeds]))
    print('Stage 1 students ready:', [round(r['seconds']) for r in s1], 's', flush=True)
    methods = [m for m in METHODS if a.only is None or m in a.only]
    jobs = [dict(method=m, rl_preset=pre, ratio=ratio, rl=ov, rm=rm, seed=s, **base)
            for s in seeds for m, (pre, ratio, ov, rm) in METHODS.items() if m in methods]
    tag = only_tag(a.only)
    runs = run_jobs(_run, jobs, a.workers, out / f'stage2_toy{tag}.partial.jsonl')
    if a.only is not None: return runs
    import torch
    from flash_dmd.rl import RL_PRESETS
    teacher, _ = _teacher(dict(seed=0, **base))
    rm_acc = {kind: rm_accuracy(reward_model(kind, teacher, 0, base['scale']), teacher, 0) for kind in LRMS}
    summary = summarise(runs, list(METHODS))
    result = {'benchmark': 'stage2_toy', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
              'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(), 'workers': a.workers},
              'config': {'dataset': DATASET, 'seeds': list(seeds), **base, 'rl_lr': RL_LR, 'rl_beta': RL_BETA, 'stage1_preset': 'flash',
                         'stage2_start': 'the EMA student of the Stage 1 run', 'control': CONTROL, 'faithful': FAITHFUL,
                         'evaluated': 'the EMA of the student (decay as in Stage 1, following RL and distillation updates); raw_* keys: the raw student',
                         'methods': _method_config(),
                         'rl_presets': {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()} for k, v in RL_PRESETS.items()},
                         'reward_models': {**LRMS, 'teacher-x0': 'the training reward of the teacher posterior mean'},
                         'training_reward': 'tanh(x[:, 0])', 'judge': 'tanh(nearest own-class mode x) * exp(-d^2 / (2 (2 std)^2))',
                         'final_value': 'mean of the last 2 evaluations (the end of the budget)',
                         'goal': f'judge gain > its seed std over the start and over the control, mode precision and coverage >= {GOAL_KEEP} x start',
                         'label_accuracy': 'winner and loser finished by the student with the same noise; share the judge orders as the reward model did'},
              'reward_model_accuracy': rm_acc, 'stage1_seconds': s1, 'summary': summary, 'verdict': stage2_verdict(summary, CONTROL, FAITHFUL), 'runs': runs}
    for part in out.glob('stage2_toy*.partial.jsonl'): part.unlink()          # every run is in the JSON now
    return write_stage2(result, out, plot, ('mode_precision', 'coverage'))

if __name__ == '__main__':
    main()
