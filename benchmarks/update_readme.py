"""Fill the README's results tables from the benchmark JSON files (never by hand).

    python benchmarks/update_readme.py           # rewrite the tables
    python benchmarks/update_readme.py --check   # exit 1 if a table differs from what the JSON says (the tests run this)

Each table lives between `<!-- results:NAME -->` and `<!-- /results:NAME -->` in README.md.
"""
from __future__ import annotations
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _f(v, nd=3):
    if v is None: return 'not reached'
    if isinstance(v, float): return f'{v:.{nd}f}' if abs(v) < 1000 else f'{v:,.0f}'
    return str(v)

def stage1_table(res: dict) -> str:
    cfg = res['config']
    lines = [f"Stage 1 on toy 2D (`benchmarks/stage1_toy.py`, {len(cfg['seeds'])} seeds per dataset, the same teacher, batch and "
             f"learning rates; final = mean of the last 3 evaluations; cost = batch x generator iterations, as the paper counts it; "
             f"the run took {res['wall_seconds'] / 60:.0f} minutes on {res['machine']['workers']} workers):"]
    for ds, d in res['by_dataset'].items():
        t4, t50 = res['teacher_references'][ds]['teacher_4_steps'], res['teacher_references'][ds]['teacher_50_steps']
        lines += ['', f"`{ds}`: teacher SWD {_f(t50['swd'])} / mode precision {_f(t50['mode_precision'])} at 50 steps, "
                      f"{_f(t4['swd'])} / {_f(t4['mode_precision'])} at 4 steps; the student starts at SWD {_f(d['student_at_init_swd'])}.", '',
                  "| method | iterations | final SWD (lower better) | mode precision | recall | coverage | cost to DMD2's final SWD (runs) | cost to DMD2's final precision (runs) | network passes | seconds | diverged |",
                  '|---|---|---|---|---|---|---|---|---|---|---|']
        for m, r in d['methods'].items():
            lines.append(f"| `{m}` | {cfg['methods'][m]['iterations']} | {_f(r['final_swd_mean'])} ± {_f(r['final_swd_std'])} | "
                         f"{_f(r['final_mode_precision_mean'])} | {_f(r['final_recall_mean'])} | {_f(r['final_coverage_mean'], 2)} | "
                         f"{_f(r['cost_to_dmd2_final_mean'])} ({r['reached_dmd2_final']}/{r['n_seeds']}) | "
                         f"{_f(r['cost_to_dmd2_precision_mean'])} ({r['reached_dmd2_precision']}/{r['n_seeds']}) | "
                         f"{_f(r['budget_passes'])} | {_f(r['budget_seconds'], 0)} | {r['n_diverged']} |")
        lines.append('')
        lines.append(f"DMD2 spent {_f(d['dmd2_budget_cost'])} and was within 10% of its final SWD from {_f(d['dmd2_plateau_cost'])}.")
        if d['dmd2_improved_swd']:
            v = res['flash_over_dmd2_cost_ratios'][ds]
            lines.append(f"Flash-DMD's cost to reach DMD2's final SWD, over DMD2's whole budget: {_f(v['swd_batch_x_gen_iters_vs_dmd2_budget'])} "
                         f"in batch x generator iterations, {_f(v['swd_passes_vs_dmd2_budget'])} in network passes, "
                         f"{_f(v['swd_train_seconds_vs_dmd2_budget'])} in seconds (mode precision: {_f(v['mode_precision_batch_x_gen_iters_vs_dmd2_budget'])}, "
                         f"{_f(v['mode_precision_passes_vs_dmd2_budget'])}, {_f(v['mode_precision_train_seconds_vs_dmd2_budget'])}).")
        else:
            lines.append("DMD2 ended worse than the student it started from here, so reaching its final value costs nothing and no cost ratio is reported.")
    return '\n'.join(lines)

def stage2_table(res: dict) -> str:
    cfg = res['config']
    lines = [f"Stage 2 on toy 2D (`benchmarks/stage2_toy.py`, {len(cfg['seeds'])} seeds, `{cfg['dataset']}`, {cfg['cycles']} cycles from "
             f"the same Stage 1 student; gains are final minus start; 'vs control' is final minus the distillation-only run of the same seed):", '',
             '| method | RL:DM | reward gain | judge gain | reward vs control | judge vs control | mode precision | SWD drift | coverage | diverged |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for m, s in res['summary'].items():
        ratio = cfg['methods'][m]['rl_dm_ratio']
        lines.append(f"| `{m}` | {ratio}:1 | {_f(s['reward_gain_mean'])} ± {_f(s['reward_gain_std'])} | {_f(s['judge_gain_mean'])} ± {_f(s['judge_gain_std'])} | "
                     f"{_f(s['reward_vs_control_mean'])} | {_f(s['judge_vs_control_mean'])} | {_f(s['precision_mean'])} | "
                     f"{_f(s['swd_drift_mean'])} | {_f(s['coverage_mean'], 2)} | {s['n_diverged']} |")
    return '\n'.join(lines)

TABLES = {'stage1': ('benchmarks/results/stage1_toy.json', stage1_table),
          'stage2': ('benchmarks/results/stage2_toy.json', stage2_table)}

def main():
    check = '--check' in sys.argv[1:]
    original = readme = (ROOT / 'README.md').read_text()
    for name, (path, fn) in TABLES.items():
        p = ROOT / path
        body = fn(json.loads(p.read_text())) if p.exists() else f'No result yet: run `python {path.replace("results/", "").replace(".json", ".py")}`.'
        pat = re.compile(rf'(<!-- results:{name} -->\n).*?(\n<!-- /results:{name} -->)', re.S)
        if not pat.search(readme): sys.exit(f"README.md has no <!-- results:{name} --> block")
        readme = pat.sub(lambda mt: mt.group(1) + body + mt.group(2), readme)
    if check:
        if readme != original: sys.exit('README.md results differ from benchmarks/results/*.json: run python benchmarks/update_readme.py')
        print('README.md results match the benchmark JSON'); return
    (ROOT / 'README.md').write_text(readme)
    print('README.md results updated')

if __name__ == '__main__':
    main()
