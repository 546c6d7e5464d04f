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
    assert r.returncode == 0 and 'demo' in r.stdout and 'teacher' in r.stdout
    r = run('demo', '--help')
    assert r.returncode == 0 and '--out' in r.stdout

def test_demo_writes_figure_and_metrics(tmp_path):
    out = tmp_path / 'demo'
    r = run('demo', '--out', str(out), '--dataset', 'grid25', '--n', '600', '--teacher-steps', '400')
    assert r.returncode == 0, r.stderr
    m = json.loads((out / 'metrics.json').read_text())
    assert m['job'] == 'demo' and m['teacher_config']['steps'] == 400
    assert set(m['metrics']) == {'real_vs_real', 'teacher_1_steps', 'teacher_4_steps', 'teacher_50_steps'}
    for v in m['metrics'].values():
        assert all(isinstance(v[k], float) for k in ('swd', 'energy', 'precision', 'recall', 'mode_precision', 'coverage'))
    assert m['metrics']['teacher_50_steps']['swd'] < m['metrics']['teacher_1_steps']['swd']
    assert (out / 'teacher.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'wrote' in r.stdout

def test_bad_arguments_name_the_problem(tmp_path):
    r = run('demo', '--dataset', 'swissroll', '--out', str(tmp_path))
    assert r.returncode == 2 and "invalid choice: 'swissroll'" in r.stderr
    r = run('demo', '--n', 'many')
    assert r.returncode == 2 and '--n' in r.stderr
    assert run().returncode == 2

def test_teacher_job_caches(tmp_path):
    r = run('teacher', '--dataset', 'moons', '--steps', '20', '--hidden', '16', '--seed', '2')
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.exists() and path.suffix == '.safetensors'
