"FSDP (sharding=fsdp) on CPU with gloo: 2 sharded processes match 1 process with the same global batch, resume, validate, export."
import json, os, random, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONFAULTHANDLER': '1'}   # a rank that aborts prints every thread's stack

def run2(*args, launcher='torchrun', config='cpu_2proc.yaml'):
    "`flash-dmd train` in 2 processes, through torchrun or `accelerate launch` with this repo's CPU config."
    port = str(random.randint(20000, 40000))
    if launcher == 'torchrun':
        cmd = [str(BIN / 'torchrun'), '--nproc_per_node', '2', '--master_port', port]
    else:
        cmd = [str(BIN / 'accelerate'), 'launch', '--config_file', str(ROOT / 'scaled_runs' / 'accelerate' / config),
               '--main_process_port', port]
    r = subprocess.run(cmd + [str(BIN / 'flash-dmd'), 'train', '--quiet', *args], capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr[-8000:]           # room for a rank's faulthandler stacks above torchrun's summary
    return r

def one(*args):
    r = subprocess.run([str(BIN / 'flash-dmd'), 'train', '--quiet', *args], capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]

COMMON = ['max_steps=4', 'checkpoint_every=2', 'distill.batch=32', 'distill.normaliser=sample', 'report_to=none']

def test_fsdp_matches_one_process_and_resumes(tmp_path):
    one(f'output_dir={tmp_path / "one"}', *COMMON)
    r = run2(f'output_dir={tmp_path / "fsdp"}', 'validate_every=2', *COMMON, launcher='accelerate', config='cpu_2proc_fsdp.yaml')
    assert 'training with sharding=fsdp' in r.stderr                # accelerate's FSDP config switches the trainer to FSDP
    a = load_file(tmp_path / 'one' / 'checkpoint-0000004' / 'models.safetensors')
    b = load_file(tmp_path / 'fsdp' / 'checkpoint-0000004' / 'models.safetensors')
    assert a.keys() == b.keys()                                   # full (unsharded) weights, the same names as without FSDP
    for k in a: torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=0)
    # the student EMA is sharded like the student and gathered into the same names; it lags the student
    ema = [k for k in b if k.startswith('student_ema.')]
    assert ema and any(not torch.equal(b[k], b['student.' + k[len('student_ema.'):]]) for k in ema)
    assert (tmp_path / 'fsdp' / 'val-0000004.png').exists()
    # stop at 2 and resume to 4 under FSDP: the same weights and optimiser states as straight through
    run2(f'output_dir={tmp_path / "r"}', 'sharding=fsdp', *COMMON[1:], 'max_steps=2')
    run2(f'output_dir={tmp_path / "r"}', 'sharding=fsdp', *COMMON, 'resume=latest')
    c = load_file(tmp_path / 'r' / 'checkpoint-0000004' / 'models.safetensors')
    for k in b: assert torch.equal(b[k], c[k]), k
    ob = torch.load(tmp_path / 'fsdp' / 'checkpoint-0000004' / 'optimizers.pt', weights_only=False)
    oc = torch.load(tmp_path / 'r' / 'checkpoint-0000004' / 'optimizers.pt', weights_only=False)
    sb, sc = ob['g']['fsdp_full']['state'], oc['g']['fsdp_full']['state']
    assert sb.keys() == sc.keys() and all(torch.equal(sb[n]['exp_avg'], sc[n]['exp_avg']) for n in sb)
    # a sharded checkpoint resumed without sharding is refused with a message
    r = subprocess.run([str(BIN / 'flash-dmd'), 'train', '--quiet', f'output_dir={tmp_path / "r"}', *COMMON, 'max_steps=6',
                        'resume=latest'], capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode != 0 and 'written with FSDP sharding' in r.stderr

def test_fsdp_export_on_tiny_sdxl(tmp_path):
    run2(f'output_dir={tmp_path / "x"}', 'model=tiny-sdxl', 'sharding=fsdp', 'distill.batch=2', 'distill.gan=fake_head',
         'max_steps=1', 'checkpoint_every=1', 'export=true', 'report_to=none', launcher='accelerate')
    from flash_dmd.export import load_exported
    pipe = load_exported(tmp_path / 'x' / 'export')
    full = load_file(tmp_path / 'x' / 'checkpoint-0000001' / 'models.safetensors')
    w = pipe.unet.state_dict()
    assert all(torch.equal(w[n], full[f'student_ema.unet.{n}']) for n in w)  # the exported UNet is the gathered EMA student
    assert any(not torch.equal(full[f'student_ema.unet.{n}'], full[f'student.unet.{n}']) for n in w)
