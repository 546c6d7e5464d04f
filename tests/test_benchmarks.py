"The benchmark scripts run end to end in --quick mode and write files of the documented shape."
import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def run_quick(name: str, out: Path) -> dict:
    "Run `benchmarks/<name>.py --quick` into `out`; check it wrote its PNG; return its JSON."
    r = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / f'{name}.py'), '--quick', '--out', str(out), '--workers', '2'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / f'{name}.png').read_bytes()[:4] == b'\x89PNG'
    return json.loads((out / f'{name}.json').read_text())

def test_stage1_quick_writes_json_and_png(tmp_path):
    res = run_quick('stage1_toy', tmp_path)
    methods = {'dmd', 'dmd2', 'dmd2+A', 'dmd2+B', 'flash', 'flash-stable'}
    assert set(res['config']['methods']) == methods and res['config']['recommended'] == 'flash-stable'
    d = res['by_dataset']['grid25']
    for m, s in d['methods'].items():
        assert {'n_seeds', 'final_swd_mean', 'final_raw_swd_mean', 'final_mode_precision_mean', 'cost_to_dmd2_swd_batch_x_iters',
                'cost_to_dmd2_swd_passes', 'budget_batch_x_iters', 'drift_swd_mean'} <= set(s)
        assert s['n_seeds'] + s['n_diverged'] == 1
    # the faithful DMD2 trains its critics per step; the cost unit is the paper's (batch x training iterations)
    assert res['config']['distill_configs']['dmd2']['fake_train_on'] == 'per_step' and res['config']['cost_unit'] == 'batch x training iterations'
    assert {'teacher_4_steps', 'teacher_50_steps'} == set(res['teacher_references']['grid25'])
    assert set(res['targets']['per_dataset']) == {'grid25'} and 'cost_ratio_batch_x_iters' in res['targets']['per_dataset']['grid25']
    assert len(res['runs']) == len(methods)
    for run in res['runs']:
        if run['curve']:
            c = run['curve']
            assert c[0]['iterations'] == 0 and c[-1]['iterations'] == run['iters'] and 'raw_swd' in c[-1] and 'health' in c[-1]
            assert all(a['passes'] <= b['passes'] and a['train_seconds'] <= b['train_seconds'] for a, b in zip(c, c[1:]))
            # final is the end of the budget, never the best point
            s = d['methods'][run['method']]
            assert s['final_swd_mean'] == c[-1]['swd']
    # DMD2's generator steps on one iteration in five; the paper's unit counts every iteration
    d2 = next(r for r in res['runs'] if r['method'] == 'dmd2')['curve'][-1]
    assert d2['generator_updates'] == d2['iterations'] // 5 and d2['batch_x_iters'] == 5 * d2['batch_x_gen_iters']
    assert (tmp_path / 'stage1_toy_health.png').read_bytes()[:4] == b'\x89PNG' and res['health_examples']['drifting']['curve']

def test_readme_table_is_generated_from_json():
    r = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'update_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_stage2_quick_writes_json_and_png(tmp_path):
    res = run_quick('stage2_toy', tmp_path)
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    import stage2_toy
    assert set(res['summary']) == set(stage2_toy.METHODS) and {'distill-only', 'flash+rl', 'pure-rl', 'refl'} <= set(res['summary'])
    for s in res['summary'].values():
        assert {'n_seeds', 'judge_gain_mean', 'judge_vs_control_mean', 'mode_precision_kept_mean', 'coverage_kept_mean', 'labels', 'meets_goal'} <= set(s)
        assert not s['meets_goal']                                   # one seed has no spread: never a claim
    runs = {r['method']: r for r in res['runs']}
    c = res['config']['cycles']
    assert runs['pure-rl']['curve'][-1]['distill_iterations'] == 0 and runs['pure-rl']['curve'][-1]['rl_updates'] == 5 * c
    assert runs['distill-only']['curve'][-1]['rl_updates'] == 0 and runs['distill-only']['curve'][-1]['distill_iterations'] == c
    assert runs['ratio 10:1']['curve'][-1]['rl_updates'] == 10 * c
    assert res['summary']['distill-only']['judge_vs_control_mean'] == 0 and res['summary']['distill-only']['labels'] == {}
    # label accuracy is measured at exactly the RL steps of each method, as a share
    assert set(res['summary']['flash+rl']['labels']) == {'999', '749'} and set(res['summary']['steps 749/499']['labels']) == {'749', '499'}
    assert all(0 <= v['label_acc'] <= 1 for v in res['summary']['flash+rl']['labels'].values())
    assert set(res['reward_model_accuracy']) == set(stage2_toy.LRMS) and {'meets_goal', 'closest', 'recommended'} <= set(res['verdict'])
    assert len(runs['flash+rl']['samples']['x']) == stage2_toy.N_SHOW

def test_stage2_digits_quick(tmp_path, monkeypatch):
    monkeypatch.setenv('FLASH_DMD_CACHE', str(tmp_path / 'cache'))
    res = run_quick('stage2_digits', tmp_path)
    assert res['config']['stage1_preset'] == 'flash-stable' and len(res['config']['seeds']) == 2
    s = res['summary']
    assert {'fd_kept_mean', 'recall_kept_mean', 'judge_vs_control_mean', 'labels'} <= set(s['flash+rl'])
    assert set(s['flash+rl']['labels']) == {'999', '749'} and s['distill-only']['labels'] == {}
    assert all(r['curve'][0]['rl_updates'] == 0 for r in res['runs'])

def test_gpu_iteration_runs_on_tiny_models(tmp_path):
    "The full-size iteration benchmark, on the tiny SDXL (CPU here): every pass timed, shares and a projection written."
    r = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'gpu_iteration.py'), '--model', 'tiny-sdxl', '--steps', '2',
                        '--warmup', '1', '--reps', '1', '--out', str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / 'gpu_iteration.json').read_text())
    assert (tmp_path / 'gpu_iteration.png').read_bytes()[:4] == b'\x89PNG'
    assert res['tiny_models'] and res['sec_per_iter'] > 0 and len(res['sec_per_iter_all']) == 2
    assert {'teacher_fwd', 'student_fwd_bwd', 'fake_fwd_bwd', 'vae_decode_fwd', 'sam_fwd', 'disc_fwd_bwd'} <= set(res['isolated_pass_seconds'])
    assert {'student', 'fake', 'teacher', 'disc', 'disc.sam_fwd', 'disc.vae_decode_fwd'} <= set(res['share_of_iteration'])
    f = res['passes_per_iter_in_batches']['forward']
    assert f['teacher'] > 0 and f['student'] >= 1 and res['passes_per_iter_in_batches']['backward']['student'] >= 1
    assert res['projection']['gpu_hours'] > 0 and res['iteration_over_essential'] > 0

def test_memory_plan_counts_sdxl_exactly(tmp_path):
    "The plan's parameter counts come from SDXL's architecture built on the meta device: the UNet has its known 2,567,463,684."
    r = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'memory_plan.py'), '--out', str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / 'memory_plan.json').read_text())
    assert res['estimate'] is True and res['param_counts']['unet'] == 2_567_463_684 and res['param_counts']['vae'] == 83_653_863
    fp32, eight_bit = res['plans'][0], res['plans'][1]
    assert fp32['fits'] == 'no' and eight_bit['fits'] == 'yes' and eight_bit['total_gib'] < fp32['total_gib']
    assert (tmp_path / 'memory_plan.png').read_bytes()[:4] == b'\x89PNG'

def test_stabilisers_quick(tmp_path):
    "The stabiliser ablation on digits and the toy grid: one run per variant and scale, its summary, verdict and picture."
    res = run_quick('stabilisers', tmp_path)
    for scale in ('digits',):
        S = res['summary'][scale]
        assert {'flash', 'r1=1', 'lr warm-up + cosine', 'w_adv=0.01', 'no student EMA'} <= set(S)
        assert all(s['n_seeds'] == 1 and s['drift']['mean'] >= 0 for s in S.values())
        assert res['verdict'][scale]['lowest_final'] in S
    cos = next(r for r in res['runs'] if r['variant'] == 'lr warm-up + cosine')
    assert cos['overrides']['lr_horizon'] == 4 and cos['overrides']['lr_schedule'] == 'cosine'

def test_grad_conflict_quick(tmp_path):
    "The gradient-conflict benchmark: split on and off, cosines per timestep from Distiller.grad_cosine, snapshots, a verdict."
    res = run_quick('grad_conflict', tmp_path)
    assert {r['split'] for r in res['runs']} == {False, True} and len(res['runs']) == 2 * len(res['config']['seeds'])
    for run in res['runs']:
        assert run['t'] == [999, 749, 499, 249] and run['measures'][-1]['iteration'] == run['iters']
        for m in run['measures']:
            assert all(c is None or -1 <= c <= 1 for c in m['cos'])
        if run['split']: assert run['losses'][-1] == ['GAN'] and all(m['cos'][-1] is None for m in run['measures'])
        else: assert all(l == ['DM', 'GAN'] for l in run['losses'])
    first = [r for r in res['runs'] if r['seed'] == res['config']['seeds'][0]]
    assert all('x' in s and len(s['x']) == len(s['label']) for r in first for s in r['snapshots'])
    assert set(res['summary']) == {'no_split', 'split'} and set(res['summary']['no_split']) == {'999', '749', '499', '249'}
    v = res['verdict']
    assert isinstance(v['conflict_found'], bool) and v['conflict_found'] == bool(v['conflict_timesteps_no_split'])
    assert v['conflict_found'] == any(s['significantly_negative'] for s in res['summary']['no_split'].values())
