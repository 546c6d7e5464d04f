"Tests of flash_dmd.models.sd3 on tiny models built in code (offline, CPU, batch 2)."
import copy, re, sys, pytest, torch
from functools import partial
from flash_dmd.distill import Distiller, preset
from flash_dmd.schedules import FlowSchedule, VPSchedule, sample_student, sample_teacher, with_cfg, STUDENT_TIMESTEPS
from flash_dmd.models.sdxl import shape_images, shape_pool, vae_encode, vae_decode, tiny_clip_tokenizer
from flash_dmd.models.sam import tiny_sam, SamFeatures, conv_head
from flash_dmd.models.sd3 import (SD3Cond, SD3Denoiser, encode_sd3_prompts, tiny_sd3_text_encoders, tiny_t5, tiny_sd3_vae,
                                  tiny_sd3, load_sd3, save_sd3, sd3_pipeline, add_lora, use_lora, lora_parameters, SD3_TIMESTEP_SCALE)

snap = lambda m: [p.detach().clone() for p in m.parameters()]
same = lambda ps, m: all(torch.equal(p, q) for p, q in zip(ps, m.parameters()))
TINY_HEAD = partial(conv_head, hidden=32, n_down=1, groups=8)

@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)

@pytest.fixture(scope='module')
def parts(): return tiny_sd3(seed=0)

@pytest.fixture(scope='module')
def real_batch(parts): return shape_pool(parts, n=16)

@pytest.fixture(scope='module')
def batch(parts):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 16, 16, 16, generator=g), torch.tensor([999., 249.]), parts.encode_prompts(['a red square', 'a blue circle'])

# --- conditioning -----------------------------------------------------------------------------------------------------
def test_cond_batching(batch):
    c = batch[2]
    assert c.prompt_embeds.shape == (2, 77 + 8, 64) and c.pooled.shape == (2, 64)
    assert len(c[0]) == 1 and len(c[-1]) == 1 and torch.equal(c[-1].pooled, c.pooled[1:])
    idx = torch.tensor([1, 1, 0])
    assert torch.equal(c[idx].prompt_embeds, c.prompt_embeds[idx]) and torch.equal(c[idx].pooled, c.pooled[idx])
    assert len(SD3Cond.cat([c, c[0]])) == 3 and torch.equal(c.repeat(2).pooled[1], c.pooled[0])
    assert c[0].expand(4).prompt_embeds.shape == (4, 85, 64) and c.to(torch.float64).pooled.dtype == torch.float64
    with pytest.raises(ValueError, match='batch size'): SD3Cond(torch.zeros(2, 85, 64), torch.zeros(3, 64))
    with pytest.raises(ValueError, match=r'prompt_embeds \[B, L, D\]'): SD3Cond(torch.zeros(2, 64), torch.zeros(2, 64))

def test_encode_prompts_layout(parts):
    tok, clips = parts.tokenizers[0], parts.text_encoders
    c = parts.encode_prompts(['a red square', 'a red circle'])
    ids = tok(['a red square'], padding='max_length', max_length=77, return_tensors='pt').input_ids
    o1, o2 = clips[0](ids, output_hidden_states=True), clips[1](ids, output_hidden_states=True)
    torch.testing.assert_close(c.prompt_embeds[0, :77], torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1)[0])  # CLIP-L ++ CLIP-G
    torch.testing.assert_close(c.pooled[0], torch.cat([o1.text_embeds, o2.text_embeds], -1)[0])                       # both pooled
    assert (c.prompt_embeds[:, 77:] == 0).all() and not torch.allclose(c.pooled[0], c.pooled[1])                     # no T5: zero tokens
    t5 = tiny_t5(tok, d_model=96)
    c5 = encode_sd3_prompts(['a red square'], parts.tokenizers, clips, tok, t5, t5_tokens=5)
    t5_ids = tok(['a red square'], padding='max_length', max_length=5, truncation=True, return_tensors='pt').input_ids
    assert c5.prompt_embeds.shape == (1, 82, 96) and (c5.prompt_embeds[:, :77, 64:] == 0).all()                      # CLIP padded to T5's width
    torch.testing.assert_close(c5.prompt_embeds[:, 77:], t5(t5_ids)[0])
    with pytest.raises(ValueError, match='both t5_tokenizer and t5_encoder'): encode_sd3_prompts('a', parts.tokenizers, clips, tok)
    with pytest.raises(ValueError, match='joint_attention_dim'): encode_sd3_prompts('a', parts.tokenizers, clips, tok, t5, 5, joint_dim=64)
    with pytest.raises(ValueError, match='wider than'): encode_sd3_prompts('a', parts.tokenizers, clips, joint_dim=32)

def test_matches_diffusers_pipeline(parts):
    "Our prompt encoding, null_cond and the core's CFG Euler sampler reproduce StableDiffusion3Pipeline (no T5)."
    pipe = sd3_pipeline(parts); pipe.set_progress_bar_config(disable=True)
    prompts = ['a red square', 'a blue circle']
    m = parts.denoiser()
    with torch.no_grad():
        pe, npe, po, npo = pipe.encode_prompt(prompts, prompts, prompts, do_classifier_free_guidance=True, max_sequence_length=8)
        c = parts.encode_prompts(prompts)
        torch.testing.assert_close(c.prompt_embeds, pe); torch.testing.assert_close(c.pooled, po)
        torch.testing.assert_close(m.null_cond(c).prompt_embeds, npe); torch.testing.assert_close(m.null_cond(c).pooled, npo)
        z = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(3))
        ref = pipe(prompts, height=32, width=32, num_inference_steps=2, guidance_scale=3.0, latents=z.clone(),
                   output_type='latent', max_sequence_length=8).images
        ts = parts.schedule.timestep_from_sigma(pipe.scheduler.sigmas[:-1].double()).tolist()
        ours = sample_teacher(with_cfg(m, 3.0, m.null_cond), z, c, parts.schedule, timesteps=ts)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)

# --- the adapter ------------------------------------------------------------------------------------------------------
def test_adapter_x0_is_flow_to_x0(parts, batch):
    x, t, c = batch
    m = parts.denoiser()
    sig = 3 * (t.double() / 1000) / (1 + 2 * (t.double() / 1000))
    with torch.no_grad():
        u = parts.transformer(hidden_states=x, encoder_hidden_states=c.prompt_embeds, pooled_projections=c.pooled,
                              timestep=(sig * 1000).float()).sample
        assert torch.equal(m.timesteps(t, x), (sig * SD3_TIMESTEP_SCALE).float()) and torch.equal(m.raw(x, t, c), u)
        torch.testing.assert_close(m(x, t, c), x - sig.float().view(-1, 1, 1, 1) * u, rtol=1e-5, atol=1e-5)   # x0 = x_t - sigma * u
        torch.testing.assert_close(m(x, t, c), parts.schedule.to_x0(x, t, u, 'flow'))
        torch.testing.assert_close(m(x, 999., c)[:1], m(x[:1], torch.tensor([999.]), c[:1]))                  # scalar t broadcasts
    assert m.pred == 'flow' and m.schedule is parts.schedule and isinstance(m.schedule, FlowSchedule) and m.schedule.shift == 3.0
    assert all(0 <= t <= parts.schedule.t_max for t in STUDENT_TIMESTEPS)
    with pytest.raises(ValueError, match=r'\[0, 1000\]'): m(x, torch.tensor([1001., 0.]), c)
    with pytest.raises(ValueError, match='FlowSchedule'): SD3Denoiser(parts.transformer, VPSchedule.scaled_linear())

def test_null_cond(parts, batch):
    c = batch[2][torch.tensor([0, 1, 1])]
    m = parts.denoiser()
    empty = parts.encode_prompts([''])
    nc = m.null_cond(c)
    assert nc.prompt_embeds.shape == (3, 85, 64) and nc.pooled.shape == (3, 64) and len(nc) == 3
    assert torch.equal(nc.prompt_embeds, empty.prompt_embeds.expand(3, -1, -1)) and torch.equal(nc.pooled[2], empty.pooled[0])
    nz = parts.denoiser(null=None).null_cond(c)
    assert nz.prompt_embeds.shape == (3, 85, 64) and (nz.prompt_embeds == 0).all() and (nz.pooled == 0).all()
    assert torch.equal(parts.denoiser(null='a cat').null_cond(c).pooled[0], parts.encode_prompts(['a cat']).pooled[0])
    with pytest.raises(ValueError, match='batch-1'): SD3Denoiser(parts.transformer, null=c)
    with pytest.raises(ValueError, match='same text encoders'): m.null_cond(SD3Cond(torch.zeros(1, 90, 64), torch.zeros(1, 64)))

def test_features_are_middle_block_tokens(parts, batch):
    x, t, c = batch
    m = parts.denoiser()
    assert m.feature_block == 1                                                # after 2 of the 4 blocks
    seen = []
    h = parts.transformer.transformer_blocks[1].register_forward_hook(lambda mod, a, out: seen.append(out[1]))
    with torch.no_grad(): m.raw(x, t, c)
    h.remove()
    with torch.no_grad(): f = m.features(x, t, c)
    assert f.shape == (2, 64, 8, 8)                                            # [B, D, H/patch, W/patch]
    torch.testing.assert_close(f.flatten(2).transpose(1, 2), seen[0])
    assert all(len(b._forward_hooks) == 0 for b in parts.transformer.transformer_blocks)   # the adapter's hook is gone
    xg = x.clone().requires_grad_(True); m.features(xg, t, c).sum().backward(); assert xg.grad.abs().sum() > 0
    m2 = copy.deepcopy(m); torch.testing.assert_close(m2.features(x, t, c), f.detach())  # copies (student, fake) work too
    assert parts.denoiser(feature_block=3).features(x, t, c).shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match='feature_block'): parts.denoiser(feature_block=4)

def test_vae_round_trip_scale_and_shift(parts):
    vae = parts.vae
    images, _ = shape_images(3, 32)
    z = vae_encode(vae, images)
    scale, shift = vae.config.scaling_factor, vae.config.shift_factor
    assert z.shape == (3, 16, 16, 16) and shift != 0 and scale != 1 and 0.5 < z.std() < 2
    assert vae_decode(vae, z).shape == images.shape
    raw = vae.encode(images).latent_dist.mode()
    torch.testing.assert_close(z, (raw - shift) * scale)                                   # encode: shift, then scale
    torch.testing.assert_close(vae_decode(vae, z), vae.decode(raw).sample, rtol=1e-4, atol=1e-4)   # decode undoes both
    zg = z.clone().requires_grad_(True); vae_decode(vae, zg).sum().backward(); assert zg.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in vae.parameters())
    # calibration is reproducible (to float rounding: the statistics' summation order depends on the thread count)
    assert tiny_sd3_vae(seed=5).config.shift_factor == pytest.approx(vae.config.shift_factor, rel=1e-5)

def test_save_load_round_trip_with_t5(batch, tmp_path):
    p5 = tiny_sd3(seed=1, t5=True)
    save_sd3(p5, tmp_path / 'tiny')
    back = load_sd3(tmp_path / 'tiny', t5=True, image_size=32, t5_tokens=8)
    x, t, _ = batch
    c = p5.encode_prompts(['a red square', 'a blue circle'])
    assert c.prompt_embeds.shape == (2, 85, 64) and not (c.prompt_embeds[:, 77:] == 0).all()
    torch.testing.assert_close(back.encode_prompts(['a red square', 'a blue circle']).prompt_embeds, c.prompt_embeds)
    with torch.no_grad(): torch.testing.assert_close(back.denoiser()(x, t, c), p5.denoiser()(x, t, c))
    assert back.schedule.shift == 3.0 and not any(p.requires_grad for m in (back.vae, back.t5_encoder, *back.text_encoders) for p in m.parameters())

def test_load_sd3_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='/no/such/sd3'): load_sd3('/no/such/sd3')
    with pytest.raises(FileNotFoundError, match='missing-sd3'): load_sd3('./missing-sd3')
    with pytest.raises(OSError, match=re.escape(str(tmp_path))): load_sd3(tmp_path)              # exists, but holds no model

# --- the unchanged core on tiny SD3 -------------------------------------------------------------------------------------
@pytest.mark.parametrize('gan', ['fake_head', 'pixel'])
def test_distiller_runs_on_tiny_sd3(parts, real_batch, gan):
    teacher = parts.denoiser()
    kw, frozen = {}, None
    if gan == 'pixel':
        backbone = SamFeatures(tiny_sam(seed=1))
        kw = dict(disc_backbone=backbone, disc_dims=backbone.dims, head_fn=TINY_HEAD, decode=partial(vae_decode, parts.vae))
        frozen = snap(backbone)
    cfg = preset('flash', gan=gan, batch=2, ttur=2, cond_gan=False, guidance=3.0)
    t0, v0 = snap(teacher), snap(parts.vae)
    d = Distiller(cfg, teacher, parts.schedule, real_batch, **kw)
    disc0 = snap(d.disc)
    logs = [d.step() for _ in range(2)]
    assert d.gen_updates == 1 and d.critic_updates == 2 and logs[0]['adv_t'] == 249 and logs[0]['dm_t'] in (999, 749, 499)
    assert 'dm' not in logs[1]                                                           # TTUR 2: no generator step at it 1
    assert all(torch.isfinite(torch.tensor([r['fake'], r['d']])).all() for r in logs) and torch.isfinite(torch.tensor(logs[0]['adv']))
    assert same(t0, teacher) and same(v0, parts.vae)                                     # teacher and VAE frozen
    assert not same(t0, d.student) and not same(disc0, d.disc)                           # student and critic trained
    if gan == 'pixel': assert same(frozen, backbone) and not any(p.requires_grad for p in backbone.parameters())
    else: assert d.disc.net[0].in_features == 64 * 8 * 8                                 # the head reads middle-block tokens
    with torch.no_grad():
        x = sample_student(d.student, torch.randn(2, 16, 16, 16), parts.encode_prompts(['a', 'b']), parts.schedule)
    assert x.shape == (2, 16, 16, 16) and torch.isfinite(x).all()

# --- LoRA -----------------------------------------------------------------------------------------------------------------
def test_lora_trains_adapters_only(parts, batch):
    pytest.importorskip('peft')
    x, t, c = batch
    base = parts.denoiser()
    m = add_lora(copy.deepcopy(base), rank=4)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and trainable == {n for n, p in m.named_parameters() if '.lora_A.' in n or '.lora_B.' in n}
    assert len(lora_parameters(m)) == len(trainable) and not any(p.requires_grad for p in base.parameters())
    with torch.no_grad(): assert torch.equal(m(x, t, c), base(x, t, c))                 # B = 0: starts as the base model
    m(x, t, c).square().mean().backward()
    assert all(p.grad is None for n, p in m.named_parameters() if n not in trainable)    # no gradient reaches base weights
    with pytest.raises(ValueError, match='already has LoRA'): add_lora(m)
    with pytest.raises(ValueError, match='not found'): add_lora(copy.deepcopy(base), targets=('nope',))   # peft's own message

@pytest.mark.parametrize('ema', [True, False])
def test_lora_student_in_distiller(parts, real_batch, ema):
    pytest.importorskip('peft')
    teacher = parts.denoiser()
    cfg = preset('flash', gan='fake_head', batch=2, ttur=1, guidance=3.0, **({} if ema else {'ema_inject': None}))
    if ema:
        with pytest.raises(ValueError, match='fake=True'): use_lora(Distiller(cfg, teacher, parts.schedule, real_batch), rank=4)
    d = use_lora(Distiller(cfg, teacher, parts.schedule, real_batch), rank=4, fake=ema)
    t0, f0 = snap(teacher), snap(d.fake)
    lora0 = [p.detach().clone() for p in lora_parameters(d.student)]
    for _ in range(2): d.step()
    base = [p for n, p in d.student.named_parameters() if 'lora_' not in n]
    assert all(torch.equal(p, q) for p, q in zip(base, t0, strict=True))                 # student's base weights = teacher's
    assert any(not torch.equal(a, b) for a, b in zip(lora0, lora_parameters(d.student))) # adapters trained
    assert {id(p) for g in d.opt_g.param_groups for p in g['params']} == {id(p) for p in lora_parameters(d.student)}
    assert bool(lora_parameters(d.fake)) == ema and not same(f0, d.fake) and same(t0, teacher)
    with pytest.raises(ValueError, match='before the Distiller'): use_lora(d)

def test_lora_without_peft_is_a_clear_error(parts, monkeypatch):
    monkeypatch.setitem(sys.modules, 'peft', None)                                       # `import peft` now fails
    with pytest.raises(ImportError, match='pip install peft'): add_lora(copy.deepcopy(parts.denoiser()))
