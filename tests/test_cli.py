"Tests of the console entry point and of the package import."
import json, os, subprocess, sys
from pathlib import Path
import pytest

BIN = Path(sys.executable).parent

def run(*args, **kw):
    return subprocess.run([str(BIN / 'flash-dmd'), *args], capture_output=True, text=True, env=os.environ.copy(), **kw)

def test_import_is_silent_and_light():
    code = "import sys, flash_dmd, flash_dmd.schedules, flash_dmd.toy; print(sorted(m for m in ('diffusers','transformers') if m in sys.modules))"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == '' and r.stdout.strip() == '[]'

def test_help_lists_jobs():
    r = run('--help')
    assert r.returncode == 0 and all(j in r.stdout for j in ('demo', 'distill', 'teacher'))
    r = run('distill', '--help')
    assert r.returncode == 0 and '--method' in r.stdout and 'key=value' in r.stdout

def test_demo_distils_and_writes_figure_and_metrics(tmp_path):
    out = tmp_path / 'demo'
    r = run('demo', '--out', str(out), '--dataset', 'grid25', '--iters', '40', '--teacher-steps', '400', '--n-eval', '500',
            '--digits-iters', '8')
    assert r.returncode == 0, r.stderr
    dg = json.loads((out / 'digits.json').read_text())                 # then the digits: references, curve, final metrics
    assert dg['iterations'] == 8 and dg['curve'][-1]['iterations'] == 8 and dg['cost']['generator_updates'] == 8
    assert dg['references']['teacher_50_steps']['fd'] < dg['references']['student_at_init']['fd']
    assert (out / 'digits.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and 'digits: flash-stable student' in r.stdout
    assert isinstance(dg['beats_teacher_4_steps'], bool) and dg['student_over_teacher_50_fd'] > 0 and 'raw_fd' in dg['student']
    m = json.loads((out / 'metrics.json').read_text())
    # the demo runs the recommended preset and reports its EMA student, with the raw one and the ratio to the teacher beside it
    assert m['method'] == 'flash-stable' and m['distill_config']['split'] is True and m['teacher_config']['steps'] == 400
    assert m['distill_config']['student_ema'] is not None and m['student'] != m['student_raw']
    assert m['student_over_teacher_50_swd'] == m['student']['swd'] / m['teacher']['teacher_50_steps']['swd']
    assert m['cost']['generator_updates'] == 40 and m['cost']['batch_x_iters'] == 40 * m['distill_config']['batch']
    for block in (m['student'], m['student_at_init'], *m['teacher'].values()):
        assert all(isinstance(block[k], float) and block[k] == block[k] for k in ('swd', 'energy', 'precision', 'recall', 'mode_precision', 'coverage'))
    assert m['teacher']['teacher_50_steps']['swd'] < m['teacher']['teacher_4_steps']['swd']
    assert [c['iterations'] for c in m['curve']][0] == 0 and m['curve'][-1]['iterations'] == 40
    assert (out / 'demo.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'wrote' in r.stdout and 'student' in r.stdout and "x the 50-step teacher's" in r.stdout

def test_distill_with_method_and_overrides(tmp_path):
    r = run('distill', '--method', 'dmd2', '--iters', '10', '--teacher-steps', '100', '--n-eval', '300',
            '--dataset', 'moons', '--out', str(tmp_path), 'ttur=2', 'w_adv=0.05')
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / 'metrics.json').read_text())
    assert m['distill_config']['ttur'] == 2 and m['distill_config']['w_adv'] == 0.05 and m['distill_config']['gan'] == 'fake_head'
    assert m['cost']['generator_updates'] == 5 and 'mode_precision' not in m['student']   # moons has no modes

def test_bad_arguments_name_the_problem(tmp_path):
    r = run('demo', '--dataset', 'swissroll', '--out', str(tmp_path))
    assert r.returncode == 2 and "invalid choice: 'swissroll'" in r.stderr
    r = run('demo', '--n-eval', 'many')
    assert r.returncode == 2 and '--n-eval' in r.stderr
    r = run('distill', '--iters', '1', '--teacher-steps', '20', '--out', str(tmp_path / 'x'), 'tau_rnge=(0.1,0.9)')
    assert r.returncode == 2 and "unknown DistillConfig key 'tau_rnge'" in r.stderr and "tau_range" in r.stderr
    assert not (tmp_path / 'x' / 'metrics.json').exists()
    r = run('distill', '--iters', '1', '--teacher-steps', '20', '--out', str(tmp_path / 'y'), 'gan=sam')
    assert r.returncode == 2 and 'gan must be' in r.stderr
    assert run().returncode == 2

def test_teacher_job_caches(tmp_path):
    r = run('teacher', '--dataset', 'moons', '--steps', '20', '--hidden', '16', '--seed', '2')
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.exists() and path.suffix == '.safetensors'

def test_eval_job_forwards_to_the_evaluation_cli(tmp_path):
    import subprocess, sys
    from pathlib import Path
    exe = Path(sys.executable).parent / 'flash-dmd'
    r = subprocess.run([str(exe), 'eval', 'run', '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '--prompts' in r.stdout
    r = subprocess.run([str(exe), 'eval', 'run', '--model', 'no/such/model', '--prompts', 'nope.txt', '--out', str(tmp_path / 'out')], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'nope.txt' in r.stderr and not (tmp_path / 'out').exists()
