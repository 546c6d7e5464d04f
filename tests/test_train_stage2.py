"Tests of Stage 2 in the trainer (init_from, resume, rewards at image scale) and of the speed options (8-bit Adam, compile)."
import json
from pathlib import Path
import pytest, torch
from flash_dmd.train import load_config, train, build, load_checkpoint, latest_checkpoint, make_reward

def _state(d):
    "Every tensor a Stage 2 run owns: models (with the RL reference) and optimiser states."
    from flash_dmd.train import _modules, _optimizers
    out = {f'{k}.{n}': t for k, m in _modules(d).items() for n, t in m.state_dict().items()}
    for k, o in _optimizers(d).items():
        for i, s in o.state_dict()['state'].items():
            out.update({f'opt.{k}.{i}.{n}': v for n, v in s.items() if torch.is_tensor(v)})
    return out

def _equal(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not bad, bad[:5]

@pytest.fixture(scope='module')
def stage1(tmp_path_factory):
    out = tmp_path_factory.mktemp('stage1')
    train(load_config(overrides=[f'output_dir={out}', 'max_steps=10', 'checkpoint_every=10', 'distill.batch=64', 'report_to=none']),
          progress=False)
    return out

def test_stage2_resume_is_bit_exact(stage1, tmp_path):
    base = ['stage=2', f'init_from={stage1}', 'checkpoint_every=2', 'distill.batch=64', 'rl.batch=64', 'rl.rl_ratio=2',
            'report_to=none', 'log_every=1']
    a = train(load_config(overrides=base + [f'output_dir={tmp_path / "a"}', 'max_steps=4']), progress=False)['distiller']
    train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=2']), progress=False)
    r = train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=4', 'resume=latest']), progress=False)
    b = r['distiller']
    assert r['resumed_from'].endswith('checkpoint-0000002')
    assert (a.joint.cycles, a.joint.rl_updates, a.it) == (b.joint.cycles, b.joint.rl_updates, b.it) == (4, 8, 14)
    _equal(a, b)
    # Stage 2 starts from the Stage 1 EMA student: it is the RL reference policy, and the student has moved away from it
    s1 = build(load_config(overrides=['distill.batch=64'])); load_checkpoint(s1, latest_checkpoint(stage1))
    assert all(torch.equal(x, y) for x, y in zip(s1.student_ema.state_dict().values(), b.joint.ref.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(s1.student.state_dict().values(), s1.student_ema.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(s1.student_ema.state_dict().values(), b.student.state_dict().values()))
    rows = [json.loads(l) for l in (tmp_path / 'b' / 'metrics.jsonl').read_text().splitlines()]
    assert [r_['cycle'] for r_ in rows] == [0, 1, 2, 3] and all('rl' in r_ and 'score_gap' in r_ for r_ in rows)

def test_stage2_errors_are_clear(stage1, tmp_path):
    with pytest.raises(FileNotFoundError, match='no checkpoint there'):
        train(load_config(overrides=['stage=2', f'init_from={tmp_path / "nowhere"}', f'output_dir={tmp_path / "o"}']), progress=False)
    # resuming a Stage 2 run from a Stage 1 checkpoint is a mistake the message names
    with pytest.raises(ValueError, match='is a Stage 1 checkpoint: give it as init_from'):
        train(load_config(overrides=['stage=2', f'resume={latest_checkpoint(stage1)}', f'output_dir={tmp_path / "o"}',
                                     'distill.batch=64']), progress=False)
    # a Stage 1 checkpoint of another method does not fit: say which parts it holds
    with pytest.raises(ValueError, match="does not fit this run's models"):
        train(load_config(overrides=['stage=2', f'init_from={stage1}', f'output_dir={tmp_path / "p"}', 'method=dmd2',
                                     'distill.batch=64']), progress=False)
    with pytest.raises(ValueError, match="cannot load 'no_such_pkg:f'"): make_reward('x0:no_such_pkg:f', None)
    with pytest.raises(KeyError, match="unknown Stage 2 preset"): load_config(overrides=['stage=2', 'rl_method=grpo'])

def test_stage2_on_tiny_sdxl_with_an_image_reward(tmp_path):
    "The image path: SDXL conditions tiled for the DPO candidates, latents decoded by the VAE, scored by an image reward."
    base = ['model=tiny-sdxl', 'distill.batch=2', 'report_to=none']
    train(load_config(overrides=base + [f'output_dir={tmp_path / "s1"}', 'max_steps=2', 'checkpoint_every=2']), progress=False)
    r = train(load_config(overrides=base + [f'output_dir={tmp_path / "s2"}', 'stage=2', f'init_from={tmp_path / "s1"}',
                                            'max_steps=2', 'checkpoint_every=2', 'rl.batch=2', 'rl.k=3', 'rl.rl_ratio=1',
                                            'reward_model=x0:brightness']), progress=False)
    j = r['distiller'].joint
    assert (j.cycles, j.rl_updates) == (2, 2) and all(t in (999, 749) for t in j.rl_t)
    d = r['distiller']
    # the noise-aware reward scores each candidate with its own prompt: tiling keeps candidate j of sample b at j * B + b
    c = d.sample_cond(2, torch.Generator().manual_seed(0))
    x = d.noise(2, torch.Generator().manual_seed(1))
    rm, _ = make_reward('x0:brightness', d.teacher, d.disc.decode)
    from flash_dmd.rl import tile_cond
    s_pair = rm(torch.cat([x, x]), torch.full((4,), 749.), tile_cond(c, 2))
    torch.testing.assert_close(s_pair[:2], s_pair[2:])
    torch.testing.assert_close(s_pair[:2], rm(x, torch.full((2,), 749.), c))

def test_adam8bit_trains_and_resumes(tmp_path):
    bnb = pytest.importorskip('bitsandbytes')
    base = ['optimizer=adam8bit', 'distill.batch=64', 'checkpoint_every=2', 'report_to=none']
    a = train(load_config(overrides=base + [f'output_dir={tmp_path / "a"}', 'max_steps=4']), progress=False)['distiller']
    assert isinstance(a.opt_g, bnb.optim.Adam8bit) and isinstance(a.opt_d, bnb.optim.Adam8bit)
    st = next(iter(a.opt_g.state.values()))
    assert st['state1'].dtype == torch.uint8                      # the moments are stored in 8 bits
    train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=2']), progress=False)
    b = train(load_config(overrides=base + [f'output_dir={tmp_path / "b"}', 'max_steps=4', 'resume=latest']), progress=False)['distiller']
    _equal(a, b)

def test_compile_matches_eager(tmp_path):
    "torch.compile changes how the networks run, not what they compute: the same losses to float tolerance, the same names."
    base = ['distill.batch=64', 'max_steps=3', 'checkpoint_every=3', 'report_to=none', 'method=dmd2', 'log_every=1']
    eager = train(load_config(overrides=base + [f'output_dir={tmp_path / "e"}']), progress=False)['distiller']
    comp = train(load_config(overrides=base + [f'output_dir={tmp_path / "c"}', 'compile=true']),
                 progress=False)['distiller']
    compared = 0
    for re_, rc in zip(eager.log, comp.log):
        assert re_.keys() == rc.keys()
        for k in ('dm', 'fake', 'd'):
            if isinstance(re_.get(k), float):
                assert abs(re_[k] - rc[k]) <= 1e-4 * max(1., abs(re_[k])), (k, re_[k], rc[k]); compared += 1
    assert compared >= 4
    from flash_dmd.train import _network
    assert getattr(_network(comp.student), '_compiled_call_impl', None) is not None          # it did compile
    assert getattr(_network(eager.student), '_compiled_call_impl', None) is None
    assert [n for n, _ in eager.student.named_parameters()] == [n for n, _ in comp.student.named_parameters()]

def test_frozen_weights_in_bf16_with_lora(tmp_path):
    "frozen_dtype=bf16: teacher, VAE, SAM and the LoRA bases in bf16, the adapters in fp32; trains, validates and exports."
    r = train(load_config(overrides=['model=tiny-sd3', 'lora_rank=4', 'frozen_dtype=bf16', 'mixed_precision=bf16', 'distill.batch=2',
                                     'max_steps=2', 'checkpoint_every=2', f'output_dir={tmp_path}', 'report_to=none', 'validate_every=2',
                                     'validation_prompts=[a red square]', 'export=true']), progress=False)
    d = r['distiller']
    assert {p.dtype for p in d.teacher.parameters()} == {p.dtype for p in d.parts.vae.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in d.disc.backbone.parameters()} == {torch.bfloat16}
    assert {(p.requires_grad, p.dtype) for p in d.student.parameters()} == {(False, torch.bfloat16), (True, torch.float32)}
    assert all(isinstance(v, float) and v == v for k, v in d.log[-1].items() if k in ('fake', 'dm', 'adv'))
    assert (tmp_path / 'val-0000002.png').exists() and r['exported']
    with pytest.raises(ValueError, match='frozen_dtype=bf16 needs mixed_precision=bf16'): load_config(overrides=['frozen_dtype=bf16'])

def test_sdxl_lora_trains_and_exports_fused(tmp_path):
    "LoRA on the SDXL UNet (the 24 GB plan): only adapters train; the export is a plain UNet that reproduces the student."
    from flash_dmd.export import load_exported
    from flash_dmd.schedules import sample_student
    r = train(load_config(overrides=['model=tiny-sdxl', 'lora_rank=4', 'distill.batch=2', 'max_steps=2', 'checkpoint_every=2',
                                     f'output_dir={tmp_path}', 'report_to=none', 'export=true']), progress=False)
    d = r['distiller']
    trainable = [n for n, p in d.student.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable)
    pipe = load_exported(r['exported'])
    assert not any('lora' in n for n, _ in pipe.unet.named_parameters())
    c = d.parts.encode_prompts(['a red square'])
    z = torch.randn(1, *d.x_shape, generator=torch.Generator().manual_seed(0))
    out = pipe(prompt_embeds=c.prompt_embeds, pooled_prompt_embeds=c.pooled, num_inference_steps=4, guidance_scale=0.0, latents=z.clone(),
               height=32, width=32, output_type='latent', generator=torch.Generator().manual_seed(1)).images
    ours = sample_student(d.student, z, c, d.schedule, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, ours, atol=1e-3, rtol=1e-3)

def _brightness_prefs(root, n=16, seed=0):
    "A preference file where the brighter image of each pair is chosen."
    from PIL import Image
    g = torch.Generator().manual_seed(seed); rows = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a, b = torch.randint(150, 255, (3,), generator=g).tolist(), torch.randint(0, 100, (3,), generator=g).tolist()
        Image.new('RGB', (32, 32), tuple(a)).save(root / f'{i}w.png'); Image.new('RGB', (32, 32), tuple(b)).save(root / f'{i}l.png')
        rows.append({'prompt': f'a bright image {i}', 'chosen': f'{i}w.png', 'rejected': f'{i}l.png'})
    (root / 'prefs.jsonl').write_text('\n'.join(json.dumps(r) for r in rows))
    return root / 'prefs.jsonl'

def test_latent_reward_model_from_preferences_drives_stage2(tmp_path):
    "`flash-dmd lrm` trains an LPO-style reward on the teacher's features from a preference file; Stage 2 uses it as lrm:<folder>."
    import subprocess, sys
    from flash_dmd.train import load_reward_model
    from flash_dmd.data import read_preferences, preference_sampler
    from flash_dmd.models.sdxl import vae_encode
    exe = Path(sys.executable).parent / 'flash-dmd'
    r = subprocess.run([str(exe), 'lrm', '--prefs', str(_brightness_prefs(tmp_path / 'prefs')), '--out', str(tmp_path / 'lrm'),
                        '--steps', '60', '--batch', '8', '--lr', '1e-3', '--quiet', 'model=tiny-sdxl'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((tmp_path / 'lrm' / 'lrm.json').read_text())
    assert meta['train_backbone'] is False and meta['skipped_images'] == 0
    # held-out pairs (other colours): ordered like the preference at low noise, near chance at t=999
    d = build(load_config(overrides=['model=tiny-sdxl', 'distill.batch=2']))
    lrm = load_reward_model(tmp_path / 'lrm', d.teacher.model)
    assert lrm.backbone is d.teacher.model                             # frozen backbone: shared with the teacher, not copied
    pairs = preference_sampler(read_preferences(_brightness_prefs(tmp_path / 'held', seed=1)), 32,
                               lambda x: vae_encode(d.parts.vae, x), d.parts.encode_prompts)
    w, l, c = pairs(16, torch.Generator().manual_seed(5))
    t0 = torch.zeros(16)
    assert (lrm(w, t0, c) > lrm(l, t0, c)).float().mean() >= 0.9
    # Stage 2 with it
    base = ['model=tiny-sdxl', 'distill.batch=2', 'report_to=none']
    train(load_config(overrides=base + [f'output_dir={tmp_path / "s1"}', 'max_steps=1', 'checkpoint_every=1']), progress=False)
    out = train(load_config(overrides=base + [f'output_dir={tmp_path / "s2"}', 'stage=2', f'init_from={tmp_path / "s1"}', 'max_steps=1',
                                              'rl.batch=2', 'rl.rl_ratio=1', f'reward_model=lrm:{tmp_path / "lrm"}']), progress=False)
    assert out['distiller'].joint.rl_updates == 1
    with pytest.raises(FileNotFoundError, match='no reward model in'):
        load_reward_model(tmp_path / 'nowhere', d.teacher.model)
    with pytest.raises(FileNotFoundError, match="no reward model at 'someone/no-such-lrm'"):       # a hub id, offline in the tests
        load_reward_model('someone/no-such-lrm', d.teacher.model)

def test_lora_bases_are_the_teachers_weights(tmp_path):
    "LoRA students and fake scores keep no copy of the network: their frozen weights are the teacher's own tensors."
    for model in ('tiny-sdxl', 'tiny-sd3'):
        d = build(load_config(overrides=[f'model={model}', 'lora_rank=4', 'distill.batch=2']))
        teacher = {id(p) for p in d.teacher.parameters()}
        for m in (d.student, d.fake):
            frozen = [p for p in m.parameters() if not p.requires_grad]
            assert frozen and all(id(p) in teacher for p in frozen)
        d.step()                                                # and it trains, the teacher unchanged by it
        assert all(not p.requires_grad for p in d.teacher.parameters())

def test_stage2_with_lora_keeps_one_copy_and_resumes(tmp_path):
    "Stage 2 on a LoRA student: the RL reference shares the teacher's frozen base too, and the run resumes bit-exactly."
    base = ['model=tiny-sd3', 'lora_rank=4', 'distill.batch=2', 'report_to=none', 'checkpoint_every=1']
    train(load_config(overrides=base + [f'output_dir={tmp_path / "s1"}', 'max_steps=1']), progress=False)
    s2 = base + ['stage=2', f'init_from={tmp_path / "s1"}', 'rl.batch=2', 'rl.rl_ratio=1', 'reward_model=x0:brightness']
    a = train(load_config(overrides=s2 + [f'output_dir={tmp_path / "a"}', 'max_steps=2']), progress=False)['distiller']
    teacher = {id(p) for p in a.teacher.parameters()}
    assert all(id(p) in teacher for n, p in a.joint.ref.named_parameters() if 'lora_' not in n)
    train(load_config(overrides=s2 + [f'output_dir={tmp_path / "b"}', 'max_steps=1']), progress=False)
    b = train(load_config(overrides=s2 + [f'output_dir={tmp_path / "b"}', 'max_steps=2', 'resume=latest']), progress=False)['distiller']
    _equal(a, b)

def test_stage2_two_processes_match_one(tmp_path):
    "Stage 2 data parallel (gloo via torchrun): 2 processes with half the RL and distillation batch each reproduce 1 process."
    import os, random, subprocess, sys
    from safetensors.torch import load_file
    bin_ = Path(sys.executable).parent
    common = ['distill.batch=32', 'distill.normaliser=sample', 'report_to=none']
    train(load_config(overrides=common + [f'output_dir={tmp_path / "s1"}', 'max_steps=4', 'checkpoint_every=4']), progress=False)
    s2 = common + ['stage=2', f'init_from={tmp_path / "s1"}', 'max_steps=2', 'checkpoint_every=2', 'rl.batch=32', 'rl.rl_ratio=2',
          'rl.lr=1e-3']                            # RL moves the student well beyond the tolerance below
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONFAULTHANDLER': '1'}
    r = subprocess.run([str(bin_ / 'flash-dmd'), 'train', '--quiet', f'output_dir={tmp_path / "one"}', *s2], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(bin_ / 'torchrun'), '--nproc_per_node', '2', '--master_port', str(random.randint(20000, 40000)),
                        str(bin_ / 'flash-dmd'), 'train', '--quiet', f'output_dir={tmp_path / "two"}', *s2],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_file(tmp_path / 'one' / 'checkpoint-0000002' / 'models.safetensors')
    b = load_file(tmp_path / 'two' / 'checkpoint-0000002' / 'models.safetensors')
    assert a.keys() == b.keys() and any(k.startswith('rl_ref.') for k in a)
    for k in a: torch.testing.assert_close(a[k], b[k], atol=1e-4 if not k.startswith('student.') else 2e-5, rtol=0)
    st = json.loads((tmp_path / 'two' / 'checkpoint-0000002' / 'state.json').read_text())
    assert st['rl_updates'] == 4 and st['rl_cycles'] == 2
