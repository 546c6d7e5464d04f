"What the benchmark scripts share: means and sample standard deviations that skip missing values, the cost at which a curve first reaches a target, where results go, and a job runner that keeps every finished run."
from __future__ import annotations
import math

def mean(xs):
    "Mean of the values that are not None or NaN; None when there are none."
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else None

def std(xs):
    "Sample standard deviation of the values that are not None; 0 for one value, None for none."
    xs = [x for x in xs if x is not None]
    if len(xs) < 2: return 0.0 if xs else None
    m = sum(xs) / len(xs)
    return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5

def first_cost(curve: list, key: str, target: float, lower_is_better: bool = True, cost_key: str = 'batch_x_iters'):
    "The cost at which a run's `key` first reaches `target`, or None if it never does."
    for r in curve:
        if (r[key] <= target) if lower_is_better else (r[key] >= target): return r[cost_key]
    return None

import json
from pathlib import Path
RESULTS = Path(__file__).resolve().parent / 'results'      # benchmarks/results, wherever a script is started from

def run_jobs(fn, jobs: list, workers: int, partial: Path, key=lambda j: json.dumps(j, sort_keys=True, default=str)) -> list:
    """Run `fn(job)` for every job in `workers` processes, printing each as it finishes. Each result is appended to the
    JSONL file `partial` at once, so a crash or a kill loses nothing: a rerun skips the jobs already there."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    partial = Path(partial); partial.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    for part in sorted(partial.parent.glob(partial.name.replace('.partial.jsonl', '*.partial.jsonl'))):   # also runs made with --only
        for line in part.read_text().splitlines():
            try: rec = json.loads(line); done[rec['job_key']] = rec['result']
            except (json.JSONDecodeError, KeyError): pass
    todo = [j for j in jobs if key(j) not in done]
    done = {k: v for k, v in done.items() if k in {key(j) for j in jobs}}
    if done: print(f"{len(done)} of {len(jobs)} jobs already in {partial.parent}: running the other {len(todo)}", flush=True)
    with ProcessPoolExecutor(workers) as ex, open(partial, 'a') as f:
        futs = {ex.submit(fn, j): j for j in todo}
        for i, fut in enumerate(as_completed(futs), 1):
            j, r = futs[fut], fut.result()
            done[key(j)] = r
            f.write(json.dumps({'job_key': key(j), 'result': r}, default=float) + '\n'); f.flush()
            print(f"[{i}/{len(todo)}] done: " + ', '.join(f'{k}={j[k]}' for k in ('method', 'variant', 'scale', 'dataset', 'seed') if k in j), flush=True)
    return [done[key(j)] for j in jobs]

# --- Stage 2: gains over the start and over the control, label accuracy, and the goal (stage2_toy.py, stage2_digits.py) ---

def rl_labels(rl_log: list) -> dict:
    "Per RL timestep of one run: mean label accuracy (judge and training reward), share of pairs kept, number of updates."
    out = {}
    for t in sorted({r['t'] for r in rl_log if 't' in r}, reverse=True):
        rs = [r for r in rl_log if r.get('t') == t]
        out[str(t)] = {'n_updates': len(rs), 'kept': mean([r['kept'] for r in rs]),
                       'label_acc': mean([r.get('label_acc') for r in rs]), 'label_acc_reward': mean([r.get('label_acc_reward') for r in rs])}
    return out

def final(curve: list, key: str, last: int = 2) -> float:
    "The end of the budget: the mean of the last `last` evaluations (never the best point)."
    v = [r[key] for r in curve[-last:]]
    return sum(v) / len(v)

def stage2_summary(runs: list, methods: list, control: str, keys: tuple, keep: dict, goal_keep: float) -> dict:
    """Per method over seeds: final value, gain from the start and gain over the control of the same seed for each of
    `keys`; label accuracy per RL step; and the goal: the judge rises by more than its seed std over the start and over the
    control, while each `keep` metric ('higher' or 'lower' is better) stays within `goal_keep` of its start."""
    out, ctrl = {}, {r['seed']: r for r in runs if r['method'] == control and not r['error']}
    for m in methods:
        rs = [r for r in runs if r['method'] == m and not r['error']]
        gain = lambda key: [final(r['curve'], key) - r['curve'][0][key] for r in rs]
        vs_ctrl = lambda key: [final(r['curve'], key) - final(ctrl[r['seed']]['curve'], key) for r in rs if r['seed'] in ctrl]
        row = {'n_seeds': len(rs), 'n_diverged': len([r for r in runs if r['method'] == m]) - len(rs)}
        for key in keys:
            row[f'{key}_gain_mean'], row[f'{key}_gain_std'] = mean(gain(key)), std(gain(key))
            row[f'{key}_vs_control_mean'], row[f'{key}_vs_control_std'] = mean(vs_ctrl(key)), std(vs_ctrl(key))
            row[f'{key}_final_mean'] = mean([final(r['curve'], key) for r in rs])
        kept, short = {}, {}
        for key, better in keep.items():
            ratio = mean([final(r['curve'], key) / r['curve'][0][key] for r in rs if r['curve'][0][key] > 0])
            row[f'{key}_kept_mean'] = ratio
            kept[key] = ratio is not None and (ratio >= goal_keep if better == 'higher' else ratio <= 2 - goal_keep)
            short[key] = 1.0 if ratio is None else max(0.0, goal_keep - ratio if better == 'higher' else ratio - (2 - goal_keep))
        ts = sorted({t for r in rs for t in r['labels']}, key=int, reverse=True)
        row['labels'] = {t: {k: mean([r['labels'][t][k] for r in rs if t in r['labels']]) for k in ('label_acc', 'label_acc_reward', 'kept')}
                         for t in ts}
        up = lambda key: row[f'{key}_mean'] is not None and row[f'{key}_mean'] > 0 and row[f'{key}_mean'] > (row[f'{key}_std'] or 0)
        row['judge_up_over_start'], row['judge_up_over_control'] = up('judge_gain'), (m != control and up('judge_vs_control'))
        row['distribution_kept'] = bool(rs) and all(kept.values())
        row['distribution_shortfall'] = list(short.values())           # how far each kept-ratio misses the goal (0: met)
        row['meets_goal'] = len(rs) >= 2 and row['judge_up_over_start'] and row['judge_up_over_control'] and row['distribution_kept']   # a spread needs seeds
        row['train_seconds_mean'] = mean([r['train_seconds'] for r in rs])
        out[m] = row
    return out

def stage2_verdict(summary: dict, control: str, faithful: str) -> dict:
    "Which methods meet the goal (the recommended one: the largest judge gain over the control among them), else which came closest."
    meets = [m for m, s in summary.items() if s['meets_goal']]
    kept = [m for m, s in summary.items() if m != control and s['distribution_kept'] and s['judge_vs_control_mean'] is not None]
    score = lambda m: summary[m]['judge_vs_control_mean'] if summary[m]['judge_vs_control_mean'] is not None else -1e9
    up = [m for m, s in summary.items() if m != control and s['judge_up_over_control']]
    # closest: the largest judge gain among methods that keep the distribution; if none keeps it, the method that raises
    # the judge over the control and harms the distribution least (its worst kept-ratio shortfall)
    harm = lambda m: max(summary[m].get('distribution_shortfall') or [0.0])
    closest, why = ((max(kept, key=score), 'keeps the distribution; the largest judge gain over the control') if kept else
                    (min(up, key=harm), 'raises the judge over the control and harms the distribution least') if up else
                    (max((m for m in summary if m != control), key=score), 'the largest judge gain over the control; none keeps the distribution'))
    return {'meets_goal': meets, 'faithful_meets_goal': summary.get(faithful, {}).get('meets_goal', False),
            'closest': closest, 'closest_why': why,
            'highest_judge_gain': max((m for m in summary if m != control), key=score),
            'recommended': max(meets, key=score) if meets else None}

def plot_stage2(result: dict, path, control: str, curves: tuple, panels: list):
    "Two metrics over cycles (`panels`: (key, title)), label accuracy per RL step, and every method's judge gain over the control."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    runs, summary, v = result['runs'], result['summary'], result['verdict']
    show = list(dict.fromkeys([*curves, v['closest'], *(v['meets_goal'][:2])]))
    fig, axs = plt.subplots(1, 4, figsize=(22, 4.4), gridspec_kw={'width_ratios': [1, 1, 1.2, 1.5]})
    for k, (key, title) in enumerate(panels):
        ax = axs[k]
        for i, m in enumerate(show):
            rs = [r for r in runs if r['method'] == m and not r['error']]
            if not rs: continue
            n = min(len(r['curve']) for r in rs)
            x, y = [c['cycle'] for c in rs[0]['curve'][:n]], np.array([[c[key] for c in r['curve'][:n]] for r in rs])
            ax.plot(x, y.mean(0), label=m, color=f'C{i}'); ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), color=f'C{i}', alpha=0.12)
        ax.set(title=title, xlabel='cycle (RL updates + 1 distillation iteration)')
        if k == 0: ax.legend(fontsize=7)
    ax = axs[2]
    lab = [m for m in summary if summary[m]['labels']]
    ts = sorted({t for m in lab for t in summary[m]['labels']}, key=int, reverse=True)
    w = 0.8 / len(ts)
    for j, t in enumerate(ts):
        ax.bar(np.arange(len(lab)) + j * w, [summary[m]['labels'].get(t, {}).get('label_acc') or 0 for m in lab], w, label=f't = {t}')
    ax.axhline(0.5, c='k', lw=0.8, ls='--'); ax.set_ylim(0.3, 1)
    ax.set_xticks(np.arange(len(lab)) + 0.4 - w / 2, lab, rotation=60, ha='right', fontsize=7)
    ax.set(title='DPO label accuracy (judge agrees with the winner)'); ax.legend(fontsize=7)
    ax = axs[3]
    ms = [m for m in summary if m != control]
    y = [summary[m]['judge_vs_control_mean'] or 0 for m in ms]
    e = [summary[m]['judge_vs_control_std'] or 0 for m in ms]
    ax.bar(range(len(ms)), y, yerr=e, color=['C2' if summary[m]['distribution_kept'] else 'C3' for m in ms], capsize=2)
    ax.axhline(0, c='k', lw=0.8)
    ax.set_xticks(range(len(ms)), ms, rotation=60, ha='right', fontsize=7)
    ax.set(title='judge gain over the control (green: distribution kept)', ylabel='final judge - control (mean ± std over seeds)')
    fig.tight_layout(); fig.savefig(path, dpi=80); plt.close(fig)


def merge_partials(result: dict, folder: Path, name: str) -> dict:
    """Add the runs of `folder/name*.partial.jsonl` (made with `--only` after the full run) to `result['runs']`, a run of the
    same method and seed replacing the old one, and delete those files: every run is then in the JSON."""
    parts = sorted(Path(folder).glob(f'{name}*.partial.jsonl'))
    new = [json.loads(line)['result'] for p in parts for line in p.read_text().splitlines() if line.strip()]
    key = lambda r: (r['method'], r['seed'])
    runs = {key(r): r for r in result['runs']}
    runs.update({key(r): r for r in new})
    result['runs'] = list(runs.values())
    for p in parts: p.unlink()
    return result

def stage2_parser(doc: str, seeds_help: str | None = None):
    "The command line both Stage 2 benchmarks share (`seeds_help`: also offer --seeds)."
    import argparse
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='a tiny run that checks the pipeline and the file shape')
    p.add_argument('--out', default=None, help='output folder (default benchmarks/results, or benchmarks/results/quick with --quick)')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--only', nargs='*', default=None, help='run only these methods now (their runs are kept for the next full run)')
    if seeds_help: p.add_argument('--seeds', type=int, nargs='*', default=None, help=seeds_help)
    p.add_argument('--resummarise', action='store_true', help='add the runs of later --only runs to the JSON; recompute the summary, verdict and figure')
    return p

def only_tag(only) -> str:
    "The partial file's tag for an `--only` run ('' for a full run)."
    return '' if only is None else '.' + '+'.join(x.replace(' ', '_').replace('/', '-').replace(':', '-') for x in only)

def write_stage2(result: dict, out: Path, plot, keep: tuple) -> dict:
    "Write a Stage 2 benchmark's JSON and figure; print the verdict and one line per method (`keep`: the two kept-ratio keys)."
    name = result['benchmark']
    (out / f'{name}.json').write_text(json.dumps(result, indent=1, default=float))
    plot(result, out / f'{name}.png')
    print(f"wrote {out / f'{name}.json'} and {out / f'{name}.png'}")
    print('verdict:', json.dumps(result['verdict']))
    for m, s in result['summary'].items():
        print(f"{m:18s} judge {s['judge_gain_mean']:+.4f}±{s['judge_gain_std']:.4f} vs control {s['judge_vs_control_mean'] or 0:+.4f}"
              f"±{s['judge_vs_control_std'] or 0:.4f} " + ' '.join(f"{k} kept {s[f'{k}_kept_mean']:.2f}" for k in keep)
              + ' labels ' + ' '.join(f"{t}:{v['label_acc']:.2f}" for t, v in s['labels'].items() if v['label_acc'] is not None))
    return result

def resummarise_stage2(out: Path, name: str, method_config: dict, summarise, control: str, faithful: str, plot, keep: tuple,
                       extra_config: dict | None = None) -> dict:
    "Fold later `--only` runs into `out/name.json`, then recompute its summary, verdict and figure (`extra_config`: keys to set)."
    result = merge_partials(json.loads((out / f'{name}.json').read_text()), out, name)
    result['config'].update(extra_config or {})
    result['config'].setdefault('evaluated', 'the raw student (runs made before Stage 2 kept an EMA)')
    result['config']['methods'] = {m: v for m, v in method_config.items() if any(r['method'] == m for r in result['runs'])}
    result['summary'] = summarise(result['runs'], list(result['config']['methods']))
    result['verdict'] = stage2_verdict(result['summary'], control, faithful)
    return write_stage2(result, out, plot, keep)
