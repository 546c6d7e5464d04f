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
