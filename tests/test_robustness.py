"""Probes of the trainer and the CLI with hostile-but-fair inputs (issue 13): each asserts the message, and that nothing
written so far is lost. Toy model, a few steps: the module runs in about a minute on one core."""
import hashlib, io, json, os, shutil, signal, subprocess, sys, tarfile, time, warnings
from pathlib import Path
import pytest, torch
from flash_dmd.train import (load_config, train, build, load_checkpoint, latest_checkpoint, verify_checkpoint, NonFiniteLoss,
                             RunFolderError, CheckpointError, _FolderLock)
from flash_dmd.cli import main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BASE = ['distill.batch=8', 'report_to=none', 'log_every=1']

def run(out, *over):
    return train(load_config(overrides=[f'output_dir={out}', *BASE, *over]), progress=False)

def cli(*args, **kw):
    return subprocess.run([str(BIN / 'flash-dmd'), 'train', '--quiet', *args, *BASE], capture_output=True, text=True,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=300, **kw)

def snapshot(folder: Path) -> dict:
    "Every file under `folder` (but the lock) and a hash of its bytes: what a refused run must leave as it was."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file() and p.name != '.lock'}

def steps_logged(out: Path) -> list:
    return [json.loads(l)['step'] for l in (out / 'metrics.jsonl').read_text().splitlines()]

def rewrite_checksums(ck: Path):
    "What an attacker would do: make the manifest agree with the files they crafted."
    from flash_dmd.train import _sha256
    man = json.loads((ck / 'checksums.json').read_text())
    for f in man['files']: man['files'][f] = {'bytes': (ck / f).stat().st_size, 'sha256': _sha256(ck / f)}
    (ck / 'checksums.json').write_text(json.dumps(man))

class Payload:
    "Unpickling this calls `open(marker, 'w')`: a stand-in for any code a crafted pickle could run."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, 'w'))

@pytest.fixture(scope='module')
def one_step(tmp_path_factory):
    "A finished 2-step toy run; tests copy it before changing anything."
    out = tmp_path_factory.mktemp('base') / 'run'
    run(out, 'max_steps=2', 'checkpoint_every=1', 'keep_checkpoints=2')
    return out

def copy_run(src, tmp_path, name='run'):
    dst = tmp_path / name; shutil.copytree(src, dst); return dst

# --- security ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('victim', ['optimizers.pt', 'rng.pt'])
def test_a_pickled_payload_in_a_checkpoint_is_refused(one_step, tmp_path, capsys, victim):
    out = copy_run(one_step, tmp_path)
    ck, marker = latest_checkpoint(out), tmp_path / 'PWNED'
    torch.save({'g': Payload(marker)}, ck / victim); rewrite_checksums(ck)
    with pytest.raises(CheckpointError, match=f"{victim} holds objects other than tensors and plain values; refused"):
        load_checkpoint(build(load_config(overrides=BASE)), ck)
    assert not marker.exists()
    # through the CLI: as resume= and as Stage 2's init_from=, one line and exit code 2
    assert main(['train', '--quiet', f'output_dir={tmp_path / "r"}', f'resume={ck}', *BASE]) == 2
    assert main(['train', '--quiet', f'output_dir={tmp_path / "s"}', 'stage=2', f'init_from={out}', *BASE]) == 2
    err = capsys.readouterr().err
    assert err.count('refused') == 2 and 'Traceback' not in err and not marker.exists()

def test_reward_model_code_execution_is_documented():
    from flash_dmd.train import TrainConfig
    import inspect
    assert 'IMPORTS AND RUNS' in inspect.getsource(TrainConfig)
    assert 'imports and runs' in (ROOT / 'README.md').read_text() and 'name only code you trust' in (ROOT / 'scaled_runs' / 'README.md').read_text()

# --- the run folder belongs to its run --------------------------------------------------------------------------

def test_a_fresh_run_refuses_a_folder_that_holds_a_run_and_overwrite_replaces_it(one_step, tmp_path):
    out = copy_run(one_step, tmp_path)
    (out / 'my-notes.txt').write_text('mine')
    before = snapshot(out)
    with pytest.raises(RunFolderError, match=r"holds a run \(2 checkpoint\(s\), the newest checkpoint-0000002, metrics.jsonl\).*overwrite=true"):
        run(out, 'max_steps=1')
    assert snapshot(out) == before                                                  # nothing lost, nothing written
    old_id = json.loads((out / 'run.json').read_text())['run_id']
    run(out, 'max_steps=1', 'overwrite=true')
    assert json.loads((out / 'run.json').read_text())['run_id'] != old_id
    assert sorted(p.name for p in out.glob('checkpoint-*')) == ['checkpoint-0000001'] and steps_logged(out) == [1]
    assert (out / 'my-notes.txt').read_text() == 'mine'                             # only the trainer's own files go

def test_foreign_checkpoint_folders_are_never_latest_nor_pruned(tmp_path):
    out = tmp_path / 'run'
    for name, f in (('checkpoint-0000080-best', 'state.json'), ('checkpoint-old-backup', 'x'), ('checkpoint-500', 'pytorch_model.bin'),
                    ('checkpoint-0000099', 'notes.txt')):
        (out / name).mkdir(parents=True); (out / name / f).write_text('{}')
    users = snapshot(out)
    r = run(out, 'max_steps=3', 'checkpoint_every=1', 'keep_checkpoints=1')
    assert r['checkpoint'].endswith('checkpoint-0000003') and latest_checkpoint(out).name == 'checkpoint-0000003'
    assert {k: v for k, v in snapshot(out).items() if k in users} == users           # the user's folders, untouched
    ours = [p.name for p in out.glob('checkpoint-*') if (p / 'checksums.json').exists()]
    assert ours == ['checkpoint-0000003']
    assert run(out, 'max_steps=4', 'resume=latest')['resumed_from'].endswith('checkpoint-0000003')
    for bad in ('keep_checkpoints=0', 'keep_checkpoints=-1'):
        with pytest.raises(ValueError, match='keep_checkpoints must be >= 1'): load_config(overrides=[bad])

def test_a_second_run_is_refused_while_the_folder_is_locked_and_a_stale_lock_is_taken_over(one_step, tmp_path, capsys):
    out = copy_run(one_step, tmp_path)
    before = snapshot(out)
    with _FolderLock(out):
        with pytest.raises(RunFolderError, match=f"is in use by pid {os.getpid()} on .* since"):
            run(out, 'max_steps=3', 'resume=latest')
    assert snapshot(out) == before
    (out / '.lock').write_text('pid 999999 on elsewhere since 2020-01-01 00:00:00\n')  # left by a process that died
    assert run(out, 'max_steps=3', 'resume=latest')['steps'] == 3
    assert 'a stale lock (pid 999999 on elsewhere' in capsys.readouterr().err
    assert (out / '.lock').read_text() == ''                                         # released on exit

def test_kill_9_mid_checkpoint_then_resume(tmp_path):
    "A second run while the first writes is refused by name; after kill -9: orphans cleaned, the lock taken over, each step logged once."
    out = tmp_path / 'run'
    assert cli(f'output_dir={out}', 'max_steps=2', 'checkpoint_every=2').returncode == 0
    first = latest_checkpoint(out)
    p = subprocess.Popen([str(BIN / 'flash-dmd'), 'train', '--quiet', f'output_dir={out}', 'max_steps=4', 'checkpoint_every=2',
                          'resume=latest', *BASE], env={**os.environ, 'FLASH_DMD_CHECKPOINT_PAUSE': '60', 'OMP_NUM_THREADS': '1'},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob('.tmp-checkpoint-*/models.safetensors')): time.sleep(0.2)
    assert list(out.glob('.tmp-checkpoint-*/models.safetensors')), 'the second checkpoint never started'
    r = cli(f'output_dir={out}', 'max_steps=6', 'resume=latest')
    assert r.returncode == 2 and f'is in use by pid {p.pid}' in r.stderr and r.stderr.count('\n') == 1
    p.send_signal(signal.SIGKILL); p.wait()
    assert latest_checkpoint(out) == first and steps_logged(out) == [1, 2, 3, 4]   # the killed run logged 3 and 4
    r = cli(f'output_dir={out}', 'max_steps=4', 'checkpoint_every=2', 'resume=latest')
    assert r.returncode == 0, r.stderr
    assert 'stale lock' in r.stderr and 'removed .tmp-checkpoint-' in r.stderr and not list(out.glob('.tmp-checkpoint-*'))
    assert steps_logged(out) == [1, 2, 3, 4] and latest_checkpoint(out).name == 'checkpoint-0000004'
    verify_checkpoint(latest_checkpoint(out))

def test_checkpoints_written_before_checksums_resume_by_path_with_a_warning(one_step, tmp_path):
    out = copy_run(one_step, tmp_path)
    for ck in out.glob('checkpoint-*'): (ck / 'checksums.json').unlink()           # as an older version wrote them
    (out / 'run.json').unlink()
    before = snapshot(out)
    with pytest.raises(RunFolderError, match=r"checkpoints without checksums .*resume=.*checkpoint-0000002.*no checkpoint resume=latest can use"):
        run(out, 'max_steps=3', 'resume=latest')
    assert snapshot(out) == before
    with pytest.warns(UserWarning, match='has no checksums'):
        r = run(out, 'max_steps=3', f'resume={out / "checkpoint-0000002"}')
    assert r['steps'] == 3 and verify_checkpoint(latest_checkpoint(out))['step'] == 3

# --- checkpoints you can trust ----------------------------------------------------------------------------------

def test_a_corrupted_newest_checkpoint_is_named_and_the_previous_one_used(one_step, tmp_path, capsys):
    out = copy_run(one_step, tmp_path)
    newest, prev = out / 'checkpoint-0000002', out / 'checkpoint-0000001'
    data = bytearray((newest / 'models.safetensors').read_bytes()); data[-100] ^= 0xFF
    (newest / 'models.safetensors').write_bytes(bytes(data))                         # one flipped byte: same size
    with pytest.raises(CheckpointError, match=r"checkpoint-0000002'?: models.safetensors is corrupted"):
        load_checkpoint(build(load_config(overrides=BASE)), newest)
    r = run(out, 'max_steps=3', 'checkpoint_every=1', 'resume=latest')
    assert r['resumed_from'] == str(prev)
    err = capsys.readouterr().err
    assert 'checkpoint-0000002' in err and 'corrupted' in err and 'trying the previous checkpoint' in err
    # the run went on (the bad checkpoint-0000002 replaced by a sound one); a truncated file is named too, and a missing one
    ck = latest_checkpoint(out); assert ck.name == 'checkpoint-0000003'
    verify_checkpoint(out / 'checkpoint-0000002')
    with open(ck / 'optimizers.pt', 'r+b') as f: f.truncate(100)
    with pytest.raises(CheckpointError, match=r"optimizers.pt is truncated or missing \(100 of \d+ bytes\)"): verify_checkpoint(ck)
    (ck / 'rng.pt').unlink()
    with pytest.raises(CheckpointError, match=r"incomplete or missing: no \['rng.pt'\]"): load_checkpoint(build(load_config(overrides=BASE)), ck)

def test_exploding_weights_are_never_checkpointed(one_step, tmp_path, capsys):
    out = copy_run(one_step, tmp_path)
    good = latest_checkpoint(out)
    # the learning rates of a resumed run are this run's (the saved optimiser state would keep the old ones)
    # lr_g=1e6: the losses stay finite for a step, the student's weights reach 1e6; that state is not saved
    with pytest.raises(NonFiniteLoss, match=r"step 3: student\.\S+ holds \|w\| = 1e\+06 > weight_limit=10000 \(the weights are exploding\); "
                                            f"no checkpoint written. The last sound checkpoint is {good}"):
        run(out, 'max_steps=6', 'checkpoint_every=1', 'resume=latest', 'distill.lr_g=1e6')
    assert 'lr_g 0.0001 -> 1e+06' in capsys.readouterr().err
    assert latest_checkpoint(out) == good and not (out / 'checkpoint-0000003').exists()
    # the guard on weights by itself: a limit no weight meets
    with pytest.raises(NonFiniteLoss, match=r"\|w\| = .* > weight_limit=0.001 \(the weights are exploding\); no checkpoint written. No checkpoint"):
        run(tmp_path / 'fresh', 'max_steps=1', 'weight_limit=1e-3')
    assert not list((tmp_path / 'fresh').glob('checkpoint-*'))

def test_resume_refuses_a_changed_method_or_batch(one_step, tmp_path):
    out = copy_run(one_step, tmp_path)
    before = snapshot(out)
    with pytest.raises(RunFolderError, match=r"distill.batch 8 -> 16"): run(out, 'max_steps=3', 'resume=latest', 'distill.batch=16')
    with pytest.raises(RunFolderError, match=r"method 'flash' -> 'dmd2'"): run(out, 'max_steps=3', 'resume=latest', 'method=dmd2')
    assert snapshot(out) == before

# --- typed, checked configuration ---------------------------------------------------------------------------------

@pytest.mark.parametrize('item,field,value', [('max_steps=1e4', 'max_steps', 10000), ('distill.batch=1.6e1', 'batch', 16),
                                              ('seed=3.0', 'seed', 3), ('weight_limit=5', 'weight_limit', 5.0),
                                              ('distill.ema_inject=None', 'ema_inject', None)])
def test_integral_floats_are_ints(item, field, value):
    cfg = load_config(overrides=[item])
    v = getattr(cfg.distill_config(), field) if field in ('batch', 'ema_inject') else getattr(cfg, field)
    assert v == value and type(v) is type(value)

@pytest.mark.parametrize('item,msg', [('seed=abc', "seed must be an integer, got 'abc'"), ('max_steps=2.5', 'max_steps must be an integer'),
                                      ('distill.batch=0', 'distill.batch must be >= 1'), ('log_every=0', 'log_every must be >= 1'),
                                      ('distill.grad_clip=-1', 'distill.grad_clip must be > 0'), ('validate_every=-1', 'validate_every must be >= 0'),
                                      ('checkpoint_every=0', 'checkpoint_every must be >= 1'), ('export=maybe', 'export must be true/false'),
                                      ('distill=5', 'distill must be a mapping'), ('rl.batch=0', 'rl.batch must be > 0')])
def test_bad_values_are_rejected_in_one_line_naming_the_key(item, msg, tmp_path, capsys):
    with pytest.raises(ValueError, match=msg): load_config(overrides=[item])
    assert main(['train', '--quiet', f'output_dir={tmp_path / "x"}', item]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and msg in err and not (tmp_path / 'x').exists()   # before anything is written

def test_a_method_key_at_the_top_level_is_pointed_to_its_section():
    with pytest.raises(KeyError, match="did you mean 'distill.batch'"): load_config(overrides=['batch=0'])
    with pytest.raises(KeyError, match="did you mean 'rl.rl_ratio'"): load_config(overrides=['rl_ratio=2'])

@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    assert main(['train', '--quiet', f'output_dir={tmp_path / "x"}', 'device=cuda', *BASE]) == 2
    assert 'torch sees no CUDA device' in capsys.readouterr().err and not (tmp_path / 'x').exists()

def test_yaml_mapping_and_home_expansion(tmp_path):
    (tmp_path / 'c.yaml').write_text('distill: 5\n')
    with pytest.raises(ValueError, match='distill must be a mapping'): load_config(tmp_path / 'c.yaml')
    (tmp_path / 'd.yaml').write_text('max_steps: [1\n')
    with pytest.raises(ValueError, match='is not valid YAML'): load_config(tmp_path / 'd.yaml')
    assert load_config(overrides=['output_dir=~/x']).output_dir == os.path.expanduser('~/x')

# --- one error path -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('argv,msg', [(['distill', '--iters', '-5'], 'must be >= 1, got -5'), (['distill', '--n-eval', '0'], 'must be >= 10'),
                                      (['lrm', '--prefs', 'p', '--out', 'o', '--batch', '0'], 'must be >= 1, got 0'),
                                      (['teacher', '--steps', '-1'], 'must be >= 1, got -1')])
def test_cli_numbers_are_checked(argv, msg, capsys):
    cache = Path(os.environ['FLASH_DMD_CACHE'])
    before = sorted(cache.rglob('*')) if cache.exists() else []
    with pytest.raises(SystemExit) as e: main(argv)
    assert e.value.code == 2 and msg in capsys.readouterr().err
    assert (sorted(cache.rglob('*')) if cache.exists() else []) == before            # no untrained teacher cached

def test_user_errors_are_one_line_and_exit_2_with_a_traceback_only_with_debug(one_step, tmp_path, capsys):
    cases = [(['--config', str(tmp_path / 'missing.yaml')], 'config file not found'),
             ([f'resume={tmp_path / "nope"}'], 'incomplete or missing'),
             (['stage=2', f'init_from={tmp_path / "nope"}'], 'no checkpoint there'),
             (['method=nope'], 'method must be one of')]
    for extra, msg in cases:
        assert main(['train', '--quiet', f'output_dir={tmp_path / "o"}', *BASE, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith('flash-dmd train: error: ') and msg in err and err.count('\n') == 1, err
    with pytest.raises(ValueError, match="seed must be an integer"): main(['train', '--debug', 'seed=abc'])
    with pytest.raises(ValueError, match="seed must be an integer"): main(['--debug', 'train', 'seed=abc'])
    # a checkpoint of another model does not fit: named, exit 2, the run folder untouched
    out = copy_run(one_step, tmp_path)
    before = snapshot(out)
    assert main(['train', '--quiet', f'output_dir={out}', 'resume=latest', 'model=digits', 'max_steps=3', *BASE]) == 2
    assert "does not fit this run's models" in capsys.readouterr().err and snapshot(out) == before

@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_a_read_only_folder_is_one_line(tmp_path, capsys):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    try: assert main(['train', '--quiet', f'output_dir={ro / "run"}', *BASE]) == 2
    finally: ro.chmod(0o755)
    assert 'Permission denied' in capsys.readouterr().err

# --- data that changes silently -----------------------------------------------------------------------------------

def _png(color='red', size=40):
    from PIL import Image
    b = io.BytesIO(); Image.new('RGB', (size, size), color).save(b, format='PNG'); return b.getvalue()

def test_a_truncated_shard_keeps_its_readable_images_and_warns(tmp_path):
    from flash_dmd.data import TarShards
    path = tmp_path / 'whole.tar'
    with tarfile.open(path, 'w') as tf:
        for j in range(3):
            data = _png(); info = tarfile.TarInfo(f'{j}.png'); info.size = len(data); tf.addfile(info, io.BytesIO(data))
    raw = path.read_bytes()
    with tarfile.open(path) as tf: third = tf.getmembers()[2]
    with warnings.catch_warnings(): warnings.simplefilter('error'); assert len(TarShards(str(path), 16)) == 3   # whole: no warning
    for name, cut in (('at-header', third.offset), ('mid-member', third.offset_data + 50)):
        (tmp_path / f'{name}.tar').write_bytes(raw[:cut])
        with pytest.warns(UserWarning, match=f"{name}.tar is truncated or corrupted.*kept the 2 images"):
            s = TarShards(str(tmp_path / f'{name}.tar'), 16)
        assert len(s) == 2 and s.sample(4, torch.Generator().manual_seed(0)).shape == (4, 3, 16, 16)

def test_16_bit_png_is_scaled_not_white(tmp_path):
    import numpy as np
    from PIL import Image
    from flash_dmd.data import ImageFiles
    a = np.full((32, 32), 65535 // 4, dtype=np.uint16); a[:, 16:] = 65535 // 2           # a quarter and half grey
    Image.fromarray(a).save(tmp_path / 'g16.png')
    assert Image.open(tmp_path / 'g16.png').mode.startswith('I')
    x = ImageFiles([tmp_path / 'g16.png'], 32).load(0)                                  # in [-1, 1]
    assert abs(x[:, :, :16].mean().item() - (-0.5)) < 0.02 and abs(x[:, :, 16:].mean().item()) < 0.02

# --- scripts for real environments; results that say where they ran ------------------------------------------------

def test_scripts_use_flash_dmd_on_path_without_a_venv(tmp_path):
    repo = tmp_path / 'repo'; shutil.copytree(ROOT / 'scaled_runs', repo / 'scaled_runs')   # a checkout without .venv
    fake = tmp_path / 'env' / 'bin'; fake.mkdir(parents=True)
    (fake / 'flash-dmd').write_text('#!/bin/sh\necho "ran flash-dmd $*"\n'); (fake / 'flash-dmd').chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != 'FLASH_DMD_BIN'}
    r = subprocess.run(['bash', str(repo / 'scaled_runs' / 'launch.sh'), 'scaled_runs/toy.yaml', 'max_steps=1'], capture_output=True,
                       text=True, env={**env, 'PATH': f'{fake}:/usr/bin:/bin'})
    assert r.returncode == 0 and 'ran flash-dmd train --config scaled_runs/toy.yaml max_steps=1' in r.stdout, r.stderr
    r = subprocess.run(['bash', str(repo / 'scaled_runs' / 'launch.sh'), 'scaled_runs/toy.yaml'], capture_output=True, text=True,
                       env={**env, 'PATH': '/usr/bin:/bin'})
    assert r.returncode == 2 and 'set FLASH_DMD_BIN' in r.stderr

def test_gpu_smoke_asserts_the_device_of_every_tensor():
    import importlib.util
    from flash_dmd.distill import preset, toy_distiller
    from flash_dmd.toy import TeacherConfig, train_teacher
    spec = importlib.util.spec_from_file_location('gpu_smoke', ROOT / 'benchmarks' / 'gpu_smoke.py')
    gs = importlib.util.module_from_spec(spec); spec.loader.exec_module(gs)
    d = toy_distiller(preset('flash', batch=8), train_teacher(TeacherConfig('grid25', 'vp', steps=2)), 'grid25')
    gs._assert_on(d, torch.device('cpu'), 'cpu row')
    with pytest.raises(AssertionError, match=r"gpu row: student\.\S+ is on cpu, not meta"): gs._assert_on(d, torch.device('meta'), 'gpu row')
    src = (ROOT / 'benchmarks' / 'gpu_smoke.py').read_text()
    assert 'teacher.to(dev)' not in src and 'copy.deepcopy(teacher).to(rdev)' in src

def test_resume_under_a_schedule_reports_no_change(tmp_path, capsys):
    "A learning-rate schedule moves the optimisers' rates every step; resuming with the same config changes nothing, and says nothing."
    sched = ['distill.lr_schedule=cosine', 'distill.lr_horizon=4']
    run(tmp_path / 'r', 'max_steps=2', 'checkpoint_every=1', *sched)
    capsys.readouterr()
    d = run(tmp_path / 'r', 'max_steps=3', 'checkpoint_every=1', 'resume=latest', *sched)['distiller']
    assert 'replace the saved ones' not in capsys.readouterr().err
    from flash_dmd.distill import lr_factor
    assert d.opt_g.param_groups[0]['lr'] == pytest.approx(d.cfg.lr_g * lr_factor(d.cfg, 2))   # the rate of the last step taken
