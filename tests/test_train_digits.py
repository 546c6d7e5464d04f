"Digits through the scaled trainer (model=digits, scaled_runs/digits.sh): resume, validation grids, export."
import os, subprocess, sys
from pathlib import Path
import torch
from flash_dmd.train import load_config, train

ROOT = Path(__file__).resolve().parents[1]

def test_digits_resume_is_bit_exact_and_exports(tmp_path):
    base = ['model=digits', 'distill.batch=16', 'checkpoint_every=2', 'report_to=none', 'validate_every=4']
    a = train(load_config(overrides=base + [f'output_dir={tmp_path / "a"}', 'max_steps=4', 'export=true']), progress=False)
    train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=2']), progress=False)
    b = train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=4', 'resume=latest']), progress=False)
    da, db = a['distiller'], b['distiller']
    for ma, mb in ((da.student, db.student), (da.student_ema, db.student_ema), (da.fake, db.fake), (da.disc, db.disc)):   # the EMA resumes exactly too
        assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    assert (tmp_path / 'a' / 'val-0000004.png').exists()
    from flash_dmd.digits import load_digits_teacher, digits_teacher_meta
    exported = load_digits_teacher(a['exported'])
    assert all(torch.equal(x, y) for x, y in zip(exported.state_dict().values(), da.student_ema.state_dict().values()))   # the EMA student is exported
    assert digits_teacher_meta(a['exported'])['role'] == 'student'

def test_digits_script_runs_both_methods(tmp_path):
    bin_ = Path(sys.executable).parent
    r = subprocess.run(['bash', str(ROOT / 'scaled_runs' / 'digits.sh'), 'max_steps=2', 'checkpoint_every=2', 'validate_every=2',
                        'report_to=none', '--quiet'], capture_output=True, text=True, timeout=600,
                       env={**os.environ, 'FLASH_DMD_BIN': str(bin_), 'OUT_ROOT': str(tmp_path), 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    for m in ('flash', 'dmd2'):
        assert (tmp_path / f'digits-{m}' / 'export' / 'student.safetensors').exists()
        assert (tmp_path / f'digits-{m}' / 'checkpoint-0000002').exists()
