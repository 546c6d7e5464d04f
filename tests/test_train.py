"Tests of flash_dmd.train and `flash-dmd train`: config errors, resume, atomic checkpoints under a real kill, guards, smoke.sh."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from flash_dmd.train import load_config, train, build, save_checkpoint, load_checkpoint, latest_checkpoint, NonFiniteLoss, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def cli(*args, env=None):
    return subprocess.run([str(BIN / 'flash-dmd'), 'train', '--quiet', *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)

def test_yaml_and_overrides(tmp_path):
    p = tmp_path / 'c.yaml'
    p.write_text('method: dmd2\nmax_steps: 7\ndistill:\n  ttur: 3\n  batch: 16\n')
    cfg = load_config(p, ['distill.batch=8', 'seed=4'])
    d = cfg.distill_config()
    assert (cfg.max_steps, d.ttur, d.batch, d.gan, d.seed) == (7, 3, 8, 'fake_head', 4)
    with pytest.raises(KeyError, match="did you mean 'checkpoint_every'"): load_config(overrides=['checkpoint_evry=3'])
    with pytest.raises(KeyError, match="unknown DistillConfig key 'w_advv'"): load_config(overrides=['distill.w_advv=1'])
    with pytest.raises(ValueError, match='model must be one of'): load_config(overrides=['model=sdxl-huge'])
    with pytest.raises(ValueError, match='not of the form key=value'): load_config(overrides=['max_steps'])
    (tmp_path / 'list.yaml').write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='must hold a mapping'): load_config(tmp_path / 'list.yaml')

def test_cli_errors_are_clear_and_write_nothing(tmp_path):
    r = cli(f'output_dir={tmp_path / "x"}', 'distill.tttur=2')
    assert r.returncode == 2 and "did you mean 'ttur'" in r.stderr and not (tmp_path / 'x').exists()
    r = cli('--config', str(tmp_path / 'missing.yaml'))
    assert r.returncode == 2 and 'config file not found' in r.stderr

def test_resume_is_bit_exact_on_tiny_sdxl(tmp_path):
    base = ['model=tiny-sdxl', 'distill.batch=2', 'checkpoint_every=2', 'log_every=1']
    a = train(load_config(overrides=base + [f'output_dir={tmp_path / "a"}', 'max_steps=4']), progress=False)['distiller']
    train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=2']), progress=False)
    b = train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=4', 'resume=latest']), progress=False)['distiller']
    for ma, mb in ((a.student, b.student), (a.fake, b.fake), (a.disc, b.disc)):
        assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    assert a.cost()['passes'] == b.cost()['passes'] and a.gen_updates == b.gen_updates == 4
    lines = [json.loads(l) for l in (tmp_path / 'b' / 'metrics.jsonl').read_text().splitlines()]
    assert [l['it'] for l in lines] == [0, 1, 2, 3]                          # one log line per step, none repeated

def test_kill_while_checkpointing_keeps_previous(tmp_path):
    out = tmp_path / 'run'
    r = cli(f'output_dir={out}', 'max_steps=2', 'checkpoint_every=2', 'distill.batch=32')
    assert r.returncode == 0, r.stderr
    first = latest_checkpoint(out)
    # the next checkpoint pauses mid-write; kill the process while it waits there
    p = subprocess.Popen([str(BIN / 'flash-dmd'), 'train', '--quiet', f'output_dir={out}', 'max_steps=4', 'checkpoint_every=2',
                          'distill.batch=32', 'resume=latest'], env={**os.environ, 'FLASH_DMD_CHECKPOINT_PAUSE': '60'},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob('.tmp-checkpoint-*/models.safetensors')): time.sleep(0.2)
    assert list(out.glob('.tmp-checkpoint-*/models.safetensors')), 'the second checkpoint never started'
    p.send_signal(signal.SIGKILL); p.wait()
    assert latest_checkpoint(out) == first                                  # the half-written one is not a checkpoint
    d = build(load_config(overrides=['distill.batch=32'])); state = load_checkpoint(d, first)
    assert state['step'] == 2 and d.it == 2
    r = cli(f'output_dir={out}', 'max_steps=4', 'checkpoint_every=2', 'distill.batch=32', 'resume=latest')   # and the run goes on
    assert r.returncode == 0 and latest_checkpoint(out).name == 'checkpoint-0000004'

def test_non_finite_loss_stops_with_message_and_keeps_checkpoint(tmp_path):
    out = tmp_path / 'nan'
    assert cli(f'output_dir={out}', 'max_steps=2', 'checkpoint_every=1', 'distill.batch=32').returncode == 0
    good = latest_checkpoint(out)
    r = cli(f'output_dir={out}', 'max_steps=5', 'resume=latest', 'distill.batch=32', 'distill.w_adv=.inf')
    assert r.returncode == 1 and 'non-finite generator loss' in r.stderr and str(good) in r.stderr
    assert latest_checkpoint(out) == good

def test_keep_checkpoints_and_saved_config(tmp_path):
    out = tmp_path / 'k'
    train(load_config(overrides=[f'output_dir={out}', 'max_steps=6', 'checkpoint_every=1', 'keep_checkpoints=2', 'distill.batch=16']), progress=False)
    assert [p.name for p in sorted(out.glob('checkpoint-*'))] == ['checkpoint-0000005', 'checkpoint-0000006']
    import yaml
    assert yaml.safe_load((out / 'config.yaml').read_text())['max_steps'] == 6

def test_smoke_script(tmp_path):
    r = subprocess.run(['bash', str(ROOT / 'scaled_runs' / 'smoke.sh'), str(tmp_path / 'smoke')], capture_output=True, text=True,
                       env={**os.environ, 'FLASH_DMD_BIN': str(BIN)}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'smoke: ok' in r.stdout and (tmp_path / 'smoke' / 'sdxl' / 'checkpoint-0000006' / 'models.safetensors').exists()
    assert (tmp_path / 'smoke' / 'sd3' / 'checkpoint-0000004' / 'models.safetensors').exists()
    assert 'sd3: reloaded the exported StableDiffusion3Pipeline' in r.stdout

def test_export_reloads_and_matches_student(tmp_path):
    from flash_dmd.export import load_exported, student_scheduler
    from flash_dmd.schedules import sample_student
    r = train(load_config(overrides=['model=tiny-sdxl', 'distill.batch=2', 'max_steps=2', 'export=true', f'output_dir={tmp_path}']), progress=False)
    d = r['distiller']
    pipe = load_exported(r['exported'])
    assert [int(t) for t in pipe.scheduler.timesteps] == [999, 749, 499, 249] or pipe.scheduler.config.original_inference_steps == 4
    c = d.parts.encode_prompts(['a green circle'])
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    out = pipe(prompt_embeds=c.prompt_embeds, pooled_prompt_embeds=c.pooled, num_inference_steps=4, guidance_scale=0.0, latents=z.clone(),
               height=32, width=32, output_type='latent', generator=torch.Generator().manual_seed(4)).images
    ours = sample_student(d.eval_student, z, c, d.schedule, generator=torch.Generator().manual_seed(4))
    assert d.eval_student is d.student_ema                  # the export is the EMA student
    assert torch.allclose(out, ours, atol=1e-3)
    with pytest.raises(ValueError, match="export writes a diffusers pipeline"): load_config(overrides=['export=true'])

def test_sdxl_from_a_diffusers_folder_with_real_images_and_a_broken_file(tmp_path):
    "The full-size code path (model=sdxl: load_sdxl, an image folder, a prompt file) on a tiny SDXL saved to disk."
    import warnings
    from PIL import Image
    from flash_dmd.models.sdxl import tiny_sdxl, save_sdxl
    save_sdxl(tiny_sdxl(seed=0), tmp_path / 'sdxl')
    imgs = tmp_path / 'images'; imgs.mkdir()
    for i, col in enumerate(['red', 'blue', 'yellow']): Image.new('RGB', (48, 40), col).save(imgs / f'{i}.png')
    (imgs / 'corrupt.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    (tmp_path / 'prompts.txt').write_text('a red square\n\na blue sky\n')
    over = ['model=sdxl', f'pretrained={tmp_path / "sdxl"}', f'image_dir={imgs}', f'prompts={tmp_path / "prompts.txt"}', 'resolution=32',
            'distill.gan=fake_head', 'distill.batch=2', 'distill.guidance=3.0', 'max_steps=3', 'checkpoint_every=3', f'output_dir={tmp_path / "run"}']
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        r = train(load_config(overrides=over), progress=False)
    assert r['steps'] == 3 and (tmp_path / 'run' / 'checkpoint-0000003').exists()
    # real images are VAE-encoded only for the critic's real batch (2 per iteration) and the build's 2-image probe;
    # the conditions of student samples come from the prompts alone (before: 3 real batches per iteration)
    assert r['distiller'].data_stats['images_encoded'] == 2 + 3 * 2
    assert sum('corrupt.jpg' in str(x.message) for x in w) == 1                     # skipped, counted, logged once
    # the text encoders offloaded to the CPU, or every prompt encoded once up front: the same first batch either way
    from flash_dmd.train import build as _build
    conds = [_build(load_config(overrides=over + [f'text_encoders={m}'])).real_batch(2, torch.Generator().manual_seed(0))[1]
             for m in ('device', 'cpu', 'precompute')]
    for c in conds[1:]: torch.testing.assert_close(c.prompt_embeds, conds[0].prompt_embeds)
    with pytest.raises(OSError, match='no such local path'):
        build(load_config(overrides=over[:1] + [f'pretrained={tmp_path / "nope"}'] + over[2:]))
    with pytest.raises(FileNotFoundError, match='image folder not found'):
        build(load_config(overrides=over[:2] + [f'image_dir={tmp_path / "noimgs"}'] + over[3:]))

def test_sdxl_from_webdataset_shards_and_a_datasets_prompt_column(tmp_path):
    "image_dir and prompts may name tar shards and a datasets folder instead of an image folder and a text file."
    import io, tarfile, datasets
    from PIL import Image
    from flash_dmd.models.sdxl import tiny_sdxl, save_sdxl
    save_sdxl(tiny_sdxl(seed=0), tmp_path / 'sdxl')
    for k, cols in enumerate((['red', 'blue'], ['green'])):
        with tarfile.open(tmp_path / f'part-{k:03d}.tar', 'w') as tf:
            for j, col in enumerate(cols):
                b = io.BytesIO(); Image.new('RGB', (40, 40), col).save(b, format='JPEG'); data = b.getvalue()
                info = tarfile.TarInfo(f'{k}{j}.jpg'); info.size = len(data); tf.addfile(info, io.BytesIO(data))
    datasets.Dataset.from_dict({'text': ['a red square', 'a blue sky']}).save_to_disk(str(tmp_path / 'prompts'))
    over = ['model=sdxl', f'pretrained={tmp_path / "sdxl"}', f'image_dir={tmp_path / "part-{000..001}.tar"}',
            f'prompts=hf:{tmp_path / "prompts"}', 'resolution=32', 'distill.batch=2', 'distill.gan=fake_head', 'max_steps=1', f'output_dir={tmp_path / "run"}']
    r = train(load_config(overrides=over), progress=False)
    assert r['steps'] == 1 and (tmp_path / 'run' / 'checkpoint-0000001').exists()

def test_validation_images_and_loggers(tmp_path):
    from PIL import Image
    train(load_config(overrides=['max_steps=4', 'validate_every=2', 'distill.batch=32', f'output_dir={tmp_path / "toy"}']), progress=False)
    assert sorted(p.name for p in (tmp_path / 'toy').glob('val-*.png')) == ['val-0000002.png', 'val-0000004.png']
    train(load_config(overrides=['model=tiny-sdxl', 'distill.batch=2', 'max_steps=2', 'validate_every=2', f'output_dir={tmp_path / "sdxl"}',
                                 'validation_prompts=[a red square, a blue circle, a red circle]']), progress=False)
    assert Image.open(tmp_path / 'sdxl' / 'val-0000002.png').size == (3 * 32, 32)                    # one image per prompt
    with pytest.raises(ValueError, match='report_to must be'): load_config(overrides=['report_to=mlflow'])
    try: import wandb  # noqa: F401
    except ImportError:
        r = cli(f'output_dir={tmp_path / "w"}', 'report_to=wandb', 'max_steps=1', 'distill.batch=8')
        assert r.returncode == 2 and 'pip install wandb' in r.stderr

def test_bf16_and_gradient_checkpointing_on_tiny_sdxl(tmp_path):
    r = train(load_config(overrides=['model=tiny-sdxl', 'distill.batch=2', 'max_steps=2', 'mixed_precision=bf16', 'gradient_checkpointing=true', 'log_every=1',
                                     f'output_dir={tmp_path}']), progress=False)
    d = r['distiller']
    assert d.student.unet.is_gradient_checkpointing and d.fake.unet.is_gradient_checkpointing
    assert all(p.dtype == torch.float32 for p in d.student.parameters())                        # weights stay fp32
    rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
    assert all(all(v == v for v in row.values() if isinstance(v, float)) for row in rows) and len(rows) == 2
    with pytest.raises(ValueError, match="not 'toy'"): load_config(overrides=['gradient_checkpointing=true'])
    with pytest.raises(ValueError, match="mixed_precision must be"): load_config(overrides=['mixed_precision=fp8'])

def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    "Data parallel on CPU (gloo via torchrun): 2 processes x batch 16 give the parameters of 1 process x batch 32."
    import random
    from safetensors.torch import load_file
    common = ['max_steps=3', 'checkpoint_every=3', 'distill.batch=32', 'distill.normaliser=sample']   # tau_bins mixes samples
    assert cli(f'output_dir={tmp_path / "one"}', *common).returncode == 0
    r = subprocess.run([str(BIN / 'torchrun'), '--nproc_per_node', '2', '--master_port', str(random.randint(20000, 40000)),
                        str(BIN / 'flash-dmd'), 'train', '--quiet', f'output_dir={tmp_path / "two"}', *common],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONFAULTHANDLER': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_file(tmp_path / 'one' / 'checkpoint-0000003' / 'models.safetensors')
    b = load_file(tmp_path / 'two' / 'checkpoint-0000003' / 'models.safetensors')
    assert a.keys() == b.keys() and any(k.startswith('student_ema.') for k in a)      # the student EMA too, on every rank alike
    for k in a: torch.testing.assert_close(a[k], b[k], atol=1e-4 if not k.startswith('student.') else 1e-5, rtol=0)
    st = json.loads((tmp_path / 'two' / 'checkpoint-0000003' / 'state.json').read_text())
    assert st['distill_config']['batch'] == 16                               # per process; the cost counts the world's batch
    assert not (tmp_path / 'two' / 'checkpoint-0000003-rank1').exists() and len(list((tmp_path / 'two').glob('checkpoint-*'))) == 1

def test_tiny_sd3_with_lora_trains_and_resumes_bit_exactly(tmp_path):
    base = ['model=tiny-sd3', 'lora_rank=4', 'distill.batch=2', 'distill.ttur=2', 'checkpoint_every=2', 'validate_every=4',
            'validation_prompts=[a red square, a blue circle]']
    a = train(load_config(overrides=base + [f'output_dir={tmp_path / "a"}', 'max_steps=4']), progress=False)['distiller']
    train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=2']), progress=False)
    b = train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=4', 'resume=latest']), progress=False)['distiller']
    trainable = {n for n, p in a.student.named_parameters() if p.requires_grad}
    assert trainable and all('lora_' in n for n in trainable)                        # LoRA only; the base stays the teacher's
    for ma, mb in ((a.student, b.student), (a.student_ema, b.student_ema), (a.fake, b.fake), (a.disc, b.disc)):
        assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    assert (tmp_path / 'a' / 'val-0000004.png').exists() and a.gen_updates == 2
    # the student EMA averages the adapters only: its frozen base is the student's (the teacher's) very tensors, not a copy
    sp, ep = dict(a.student.named_parameters()), dict(a.student_ema.named_parameters())
    assert all(ep[n] is p for n, p in sp.items() if not p.requires_grad) and all(ep[n] is not p for n, p in sp.items() if p.requires_grad)
    assert any(not torch.equal(ep[n], p) for n, p in sp.items() if p.requires_grad)
    ck = __import__('safetensors.torch', fromlist=['load_file']).load_file(tmp_path / 'a' / 'checkpoint-0000004' / 'models.safetensors')
    saved = {k[len('student_ema.'):] for k in ck if k.startswith('student_ema.')}    # adapters (and buffers), never the frozen base
    assert {n for n, p in sp.items() if p.requires_grad} <= saved and not saved & {n for n, p in sp.items() if not p.requires_grad}
    with pytest.raises(ValueError, match='lora_rank is for the SDXL and SD3'): load_config(overrides=['lora_rank=4'])

def test_sd3_from_a_diffusers_folder_with_lora(tmp_path):
    from PIL import Image
    from flash_dmd.models.sd3 import tiny_sd3, save_sd3
    save_sd3(tiny_sd3(seed=0), tmp_path / 'sd3')
    imgs = tmp_path / 'images'; imgs.mkdir()
    for i, col in enumerate(['red', 'blue']): Image.new('RGB', (40, 40), col).save(imgs / f'{i}.png')
    (tmp_path / 'prompts.jsonl').write_text('{"prompt": "a red square"}\n{"caption": "a blue sky"}\n')
    r = train(load_config(overrides=['model=sd3', f'pretrained={tmp_path / "sd3"}', f'image_dir={imgs}', f'prompts={tmp_path / "prompts.jsonl"}',
                                     'resolution=32', 'lora_rank=4', 'distill.batch=2', 'distill.gan=fake_head', 'max_steps=2',
                                     'checkpoint_every=2', f'output_dir={tmp_path / "run"}', 'export=true']), progress=False)
    assert r['steps'] == 2 and (tmp_path / 'run' / 'checkpoint-0000002').exists()
    assert all('lora_' in n for n, p in r['distiller'].student.named_parameters() if p.requires_grad)
    # the export: a plain SD3 pipeline (LoRA fused) that, with the recorded sigmas, reproduces the student's 4 steps
    from flash_dmd.export import load_exported, student_call_kwargs
    from flash_dmd.schedules import sample_student
    d, pipe, kw = r['distiller'], load_exported(r['exported']), student_call_kwargs(r['exported'])
    c = d.parts.encode_prompts(['a red square'])
    z = torch.randn(1, *d.x_shape, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    out = pipe(prompt_embeds=c.prompt_embeds, pooled_prompt_embeds=c.pooled, latents=z.clone(), height=32, width=32,
               output_type='latent', **kw).images
    torch.manual_seed(3)
    torch.testing.assert_close(out, sample_student(d.student, z, c, d.schedule, d.cfg.student_timesteps), atol=1e-4, rtol=1e-4)

def test_a_registered_model_kind_is_accepted_and_builds_the_run(tmp_path):
    "A new model kind is one registration: the config accepts its name, build goes through its build, its undeclared options are refused."
    from flash_dmd.train import MODEL_KINDS, ModelKind, register_model_kind
    with pytest.raises(ValueError, match=r"model must be one of \['toy', 'digits', 'tiny-sdxl', 'sdxl', 'tiny-sd3', 'sd3'\], got 'mykind'"):
        TrainConfig(model='mykind')
    toy, calls = MODEL_KINDS['toy'], []
    def my_build(cfg, dcfg, device, rank, world):
        calls.append((cfg.model, dcfg.batch, rank, world))
        d = toy.build(cfg, dcfg, device, rank, world); d.built_by = 'mykind'; return d
    register_model_kind('mykind', ModelKind(build=my_build, validation_image=toy.validation_image, points=True))
    try:
        assert TrainConfig(model='mykind').model == 'mykind'
        assert build(load_config(overrides=['model=mykind', 'distill.batch=8'])).built_by == 'mykind'
        r = train(load_config(overrides=['model=mykind', f'output_dir={tmp_path}', 'max_steps=2', 'distill.batch=8', 'validate_every=2',
                                         'report_to=none']), progress=False)
        assert r['distiller'].built_by == 'mykind' and r['steps'] == 2 and (tmp_path / 'val-0000002.png').exists()
        assert calls == [('mykind', 8, 0, 1)] * 2
        with pytest.raises(ValueError, match="lora_rank is for the SDXL and SD3 models, not 'mykind'"): TrainConfig(model='mykind', lora_rank=4)
        with pytest.raises(ValueError, match="model 'mykind' has no export"): TrainConfig(model='mykind', export=True)
    finally: MODEL_KINDS.pop('mykind', None)
    with pytest.raises(ValueError, match='model must be one of'): TrainConfig(model='mykind')
