"""Stage 2 on the 8x8 digits: does joint RL raise a held-out judge while the distribution stays? Controls and levers.

Every number written here is measured by this script in this run. Usage:

    python benchmarks/stage2_digits.py              # full run (about 30 minutes on 2 cores): benchmarks/results/stage2_digits.{json,png}
    python benchmarks/stage2_digits.py --quick      # under a minute, checks the pipeline: benchmarks/results/quick/
    python benchmarks/stage2_digits.py --only a b   # run some methods now; a later full run reuses them

Stage 1: per seed, the recommended Flash-DMD recipe distils the shipped digits teacher (the settings of
benchmarks/digits.py); Stage 2 starts from its EMA student, with its fake score and discriminator. The training reward is
stroke thickness (ink_reward, bounded), and DPO ranks candidates by it on the teacher's posterior mean. The held-out judge,
never trained on, is thickness times the evaluation network's probability of the requested digit: thicker strokes count
only on a digit that stays recognisable. Fréchet distance and recall (evaluation network features) watch the distribution.

The goal (beyond the paper): the judge rises by more than its seed spread, over the start and over the control, while
Fréchet distance and recall stay within 5% of the start.
"""
from __future__ import annotations
import json, os, platform, time, warnings
from pathlib import Path

from _stats import RESULTS, run_jobs, rl_labels, stage2_summary, stage2_verdict, plot_stage2, stage2_parser, only_tag, write_stage2, resummarise_stage2   # benchmarks/_stats.py (the script's folder is on sys.path)

STAGE1, STAGE1_ITERS, SEEDS, CYCLES, EVAL_EVERY, N_EVAL = 'flash-stable', 500, (0, 1, 2), 60, 20, 1000
RL_LR, RL_BETA = 1e-4, 6400.   # beta on the per-dimension log-ratio: 8x8 digits have 64 numbers, so the old 100 on the sum
CONTROL, FAITHFUL = 'distill-only', 'flash+rl'
METHODS = {   # name -> (RL preset, RL:DM ratio, RLConfig overrides)
    CONTROL: ('distill-only', 5, {}),
    FAITHFUL: ('flash+rl', 5, {}),
    'pure-rl': ('pure-rl', 5, {}),
    'steps 749/499': ('flash+rl', 5, {'rl_steps': (749, 499)}),
    'steps 999/749/499': ('flash+rl', 5, {'rl_steps': (999, 749, 499)}),
    'lr 3e-4': ('flash+rl', 5, {'lr': 3e-4}),
    'ratio 1:1': ('flash+rl', 1, {}),
    'lr 3e-5': ('flash+rl', 5, {'lr': 3e-5}),
    'steps 999/749/499, ratio 1:1': ('flash+rl', 1, {'rl_steps': (999, 749, 499)}),
    'steps 749/499, ratio 1:1': ('flash+rl', 1, {'rl_steps': (749, 499)}),
    'ratio 1:1, lr 3e-5': ('flash+rl', 1, {'lr': 3e-5}),
}
# Rows added after a first verdict in which no row met the goal: chosen after looking, so weaker evidence than the rest
ADDED_LATER = ('lr 3e-5', 'steps 999/749/499, ratio 1:1', 'steps 749/499, ratio 1:1', 'ratio 1:1, lr 3e-5')
GOAL_KEEP = 0.95   # recall at least 0.95 x start, Fréchet distance at most (2 - 0.95) x start
SHOW_SEED, N_SHOW = 0, 40
# --quick trains these rows (every RL step and both ratios); the other rows' settings are only built and checked
QUICK_METHODS = (CONTROL, FAITHFUL, 'pure-rl', 'steps 999/749/499, ratio 1:1')

def rl_config(preset: str, ratio: int, overrides: dict, **kw):
    "A row's RL settings: its preset and RL:DM ratio, this benchmark's lr and beta, then the row's own overrides."
    from flash_dmd.rl import rl_preset
    return rl_preset(preset, rl_ratio=ratio, **{'lr': RL_LR, 'beta': RL_BETA, **overrides}, **kw)

def digits_judge(evaluator, ink):
    "The held-out judge: stroke thickness times the evaluation network's probability of the requested digit."
    from flash_dmd.digits import confidence_reward
    conf = confidence_reward(evaluator.net)
    return lambda x, c: ink(x, c) * conf(x.detach().float().cpu(), c.cpu()).to(x.device)

def _cache(job) -> Path:
    return Path(job['cache']) / f"stage2-digits-stage1-{STAGE1}-{job['stage1_iters']}-seed{job['seed']}.safetensors"

def _stage1(job):
    "Train one seed's Stage 1 student (or find it) and save its EMA student, fake score and discriminator."
    import torch
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    from safetensors.torch import save_file
    from flash_dmd.digits import digits_preset, run_digits, load_digits_teacher, DigitsEvaluator
    path, t0 = _cache(job), time.perf_counter()
    if path.exists(): return {'seed': job['seed'], 'seconds': 0.0, 'cached': True}
    d, curve = run_digits(digits_preset(STAGE1, seed=job['seed']), job['stage1_iters'], job['stage1_iters'], job['n_eval'],
                          load_digits_teacher(), DigitsEvaluator())
    state = {f'{k}.{n}': v.contiguous() for k, src in (('student', d.eval_student), ('fake', d.fake), ('disc', d.disc)) if src is not None
             for n, v in src.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True); save_file(state, str(path))
    return {'seed': job['seed'], 'seconds': time.perf_counter() - t0, 'cached': False, 'fd': curve[-1]['fd']}

def _run(job):
    "One Stage 2 run from the seed's Stage 1 state: a curve of reward, judge, Fréchet distance and recall; label accuracy."
    import torch
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    from safetensors.torch import load_file
    from flash_dmd.digits import digits_preset, digits_distiller, load_digits_teacher, DigitsEvaluator, student_digits, ink_reward
    from flash_dmd.rewards import x0_reward
    from flash_dmd.rl import JointTrainer
    teacher, evaluator, reward = load_digits_teacher(), DigitsEvaluator(), ink_reward()
    judge, cfg = digits_judge(evaluator, reward), digits_preset(STAGE1, seed=job['seed'])
    d, state = digits_distiller(cfg, teacher), load_file(str(_cache(job)))
    for k in ('student', 'fake', 'disc'):
        part = {n[len(k) + 1:]: v for n, v in state.items() if n.startswith(k + '.')}
        if part: getattr(d, k).load_state_dict(part)
    if d.student_ema is not None: d.make_student_ema()                   # the Stage 2 EMA starts from the student it refines
    rl = rl_config(job['rl_preset'], job['ratio'], job['rl'], batch=cfg.batch, seed=job['seed'])
    jt, t0, err = JointTrainer(rl, d, x0_reward(teacher, reward), reward, judge=judge), time.perf_counter(), None

    def measure(net, pre=''):
        x, y = student_digits(net, job['n_eval'], seed=1)
        m = evaluator(x, y)
        return {pre + 'reward': reward(x, y).mean().item(), pre + 'judge': judge(x, y).mean().item(),
                **{pre + k: m[k] for k in ('fd', 'recall', 'precision', 'accuracy', 'saturation')}}

    def evaluate(cycle):                                                 # the EMA student is judged; the raw one is logged beside it
        return {'cycle': cycle, 'rl_updates': jt.rl_updates, **measure(d.eval_student), **measure(d.student, 'raw_')}
    curve = [evaluate(0)]
    try:
        for c in range(1, job['cycles'] + 1):
            jt.step()
            if c % job['eval_every'] == 0: curve.append(evaluate(c))
    except FloatingPointError as e:
        err = str(e)
    out = {k: job[k] for k in ('method', 'seed')} | {'curve': curve, 'error': err, 'labels': rl_labels(jt.rl_log),
                                                     'train_seconds': time.perf_counter() - t0}
    if job['seed'] == SHOW_SEED: out['samples'] = [[round(v, 3) for v in im.flatten().tolist()] for im in student_digits(d.eval_student, N_SHOW, seed=1)[0]]
    return out

def summarise(runs: list, methods: list) -> dict:
    "Per method over seeds (see `_stats.stage2_summary`): the judge's gain over the start and the control, FD and recall kept."
    return stage2_summary(runs, methods, CONTROL, ('reward', 'judge', 'fd', 'recall', 'accuracy', 'saturation'),
                          {'fd': 'lower', 'recall': 'higher'}, GOAL_KEEP)

def _method_config() -> dict:
    "METHODS as JSON: each method's RL preset, RL:DM ratio and overrides."
    return {m: {'rl_preset': pre, 'rl_dm_ratio': ratio, 'overrides': {k: list(v) if isinstance(v, tuple) else v for k, v in ov.items()}}
            for m, (pre, ratio, ov) in METHODS.items()}

def plot(result: dict, path):
    "Judge and Fréchet distance over cycles, label accuracy per RL step, and every method's judge gain over the control."
    plot_stage2(result, path, CONTROL, (CONTROL, FAITHFUL, 'pure-rl'), [('judge', 'held-out judge (ink x recognisable)'), ('fd', 'Fréchet distance')])

def main(argv=None):
    a = stage2_parser(__doc__, 'seeds (default 0 1 2; fresh seeds with another --out replicate the table)').parse_args(argv)
    out = Path(a.out or (RESULTS / 'quick' if a.quick else RESULTS)); out.mkdir(parents=True, exist_ok=True)
    if a.resummarise: return resummarise_stage2(out, 'stage2_digits', _method_config(), summarise, CONTROL, FAITHFUL, plot, ('fd', 'recall'),
                                                  {'rows_added_after_a_verdict': list(ADDED_LATER)})
    from flash_dmd.toy import cache_dir
    if a.quick: seeds, base = (0, 1), dict(stage1_iters=6, cycles=2, eval_every=1, n_eval=200)
    else: seeds, base = SEEDS, dict(stage1_iters=STAGE1_ITERS, cycles=CYCLES, eval_every=EVAL_EVERY, n_eval=N_EVAL)
    if a.seeds is not None: seeds = tuple(a.seeds)
    base['cache'] = str(cache_dir())
    t0 = time.time()
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(a.workers) as ex:
        s1 = list(ex.map(_stage1, [dict(seed=s, **base) for s in seeds]))
    print('Stage 1 students ready:', [round(r['seconds']) for r in s1], 's', flush=True)
    methods = [m for m in METHODS if (a.only is None or m in a.only) and (not a.quick or m in QUICK_METHODS)]
    if a.quick:                                          # the rows not trained: their RL settings must still build
        for pre, ratio, ov in METHODS.values(): rl_config(pre, ratio, ov)
    jobs = [dict(method=m, rl_preset=pre, ratio=ratio, rl=ov, seed=s, **base) for s in seeds for m, (pre, ratio, ov) in METHODS.items() if m in methods]
    tag = only_tag(a.only)
    runs = run_jobs(_run, jobs, a.workers, out / f'stage2_digits{tag}.partial.jsonl', key=lambda j: json.dumps({k: v for k, v in j.items() if k != 'cache'}, sort_keys=True))
    if a.only is not None: return runs
    import torch
    summary = summarise(runs, methods)
    result = {'benchmark': 'stage2_digits', 'quick': a.quick, 'wall_seconds': round(time.time() - t0, 1),
              'machine': {'python': platform.python_version(), 'torch': torch.__version__, 'cpu_count': os.cpu_count(), 'workers': a.workers},
              'config': {'seeds': list(seeds), **{k: v for k, v in base.items() if k != 'cache'}, 'rl_lr': RL_LR, 'rl_beta': RL_BETA,
                         'stage1_preset': STAGE1, 'rows_added_after_a_verdict': list(ADDED_LATER), 'stage2_start': 'the EMA student of the Stage 1 run',
                         'evaluated': 'the EMA of the student (decay as in Stage 1, following RL and distillation updates); raw_* keys: the raw student', 'control': CONTROL, 'faithful': FAITHFUL,
                         'methods': {m: v for m, v in _method_config().items() if m in methods},
                         'training_reward': 'ink_reward(0.1); DPO ranks candidates by it on the teacher posterior mean',
                         'judge': 'ink_reward(0.1) x evaluation-network probability of the requested digit',
                         'final_value': 'mean of the last 2 evaluations (the end of the budget)',
                         'goal': f'judge gain > its seed std over the start and over the control, FD <= {2 - GOAL_KEEP:.2f} x start, recall >= {GOAL_KEEP} x start',
                         'label_accuracy': 'winner and loser finished by the student with the same noise; share the judge orders as the reward model did'},
              'stage1': s1, 'summary': summary, 'verdict': stage2_verdict(summary, CONTROL, FAITHFUL), 'runs': runs}
    for part in out.glob('stage2_digits*.partial.jsonl'): part.unlink()       # every run is in the JSON now
    return write_stage2(result, out, plot, ('fd', 'recall'))

if __name__ == '__main__':
    main()
