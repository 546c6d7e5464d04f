"Tests of flash_dmd.models.sdxl and flash_dmd.models.sam on tiny models built in code (offline, CPU, batch 2)."
import copy, re, pytest, torch
from functools import partial
from flash_dmd.distill import Distiller, preset
from flash_dmd.gan import PixelGAN
from flash_dmd.schedules import sample_student
from flash_dmd.models.sdxl import (SDXLCond, SDXLDenoiser, make_time_ids, encode_prompts, tiny_clip_tokenizer, tiny_text_encoders,
                                   vae_encode, vae_decode, tiny_sdxl, load_sdxl, save_sdxl, pool_sampler, shape_pool, shape_images)
from flash_dmd.models.sam import tiny_sam, SamFeatures, even_levels, conv_head, load_sam

snap = lambda m: [p.detach().clone() for p in m.parameters()]
same = lambda ps, m: all(torch.equal(p, q) for p, q in zip(ps, m.parameters()))
TINY_HEAD = partial(conv_head, hidden=32, n_down=1, groups=8)

@pytest.fixture(scope='module')
def parts(): return tiny_sdxl(seed=0)

@pytest.fixture(scope='module')
def real_batch(parts): return shape_pool(parts, n=16)

@pytest.fixture(scope='module')
def batch(parts):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 16, 16, generator=g), torch.tensor([999., 249.]), parts.encode_prompts(['a red square', 'a blue circle'])

# --- conditioning ---------------------------------------------------------------------------------------------------
def test_cond_batching(batch):
    c = batch[2]
    assert c.prompt_embeds.shape == (2, 77, 64) and c.pooled.shape == (2, 32) and c.time_ids.shape == (2, 6)
    assert len(c[0]) == 1 and len(c[-1]) == 1 and torch.equal(c[-1].pooled, c.pooled[1:])
    idx = torch.tensor([1, 1, 0])
    assert torch.equal(c[idx].prompt_embeds, c.prompt_embeds[idx]) and torch.equal(c[idx].time_ids, c.time_ids[idx])
    assert len(SDXLCond.cat([c, c[0]])) == 3 and torch.equal(c.repeat(2).pooled[1], c.pooled[0])
    assert c[0].expand(4).prompt_embeds.shape == (4, 77, 64)
    with pytest.raises(ValueError, match='batch size'): SDXLCond(torch.zeros(2, 77, 64), torch.zeros(3, 32), torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r'time_ids \[B, 6\]'): SDXLCond(torch.zeros(2, 77, 64), torch.zeros(2, 32), torch.zeros(2, 5))

def test_time_ids():
    t = make_time_ids((1024, 768), (8, 16), (512, 512), 3)
    assert t.shape == (3, 6) and t[2].tolist() == [1024, 768, 8, 16, 512, 512]
    with pytest.raises(ValueError, match='pairs'): make_time_ids((1024,), (0, 0), (1024, 1024), 1)

def test_encode_prompts(parts):
    tok, encs = parts.tokenizers[0], parts.text_encoders
    c = encode_prompts(['a red square', 'a red circle', ''], parts.tokenizers, encs, size=(32, 32))
    ids = tok(['a red square'], padding='max_length', max_length=77, return_tensors='pt').input_ids
    o1, o2 = encs[0](ids, output_hidden_states=True), encs[1](ids, output_hidden_states=True)
    torch.testing.assert_close(c.prompt_embeds[0], torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1)[0])   # penultimate layers
    torch.testing.assert_close(c.pooled[0], o2.text_embeds[0])                                                        # projected pooled, 2nd encoder
    assert not torch.allclose(c.pooled[0], c.pooled[1]) and c.time_ids[0].tolist() == [32, 32, 0, 0, 32, 32]
    assert len(tok) == 514 and tok.eos_token_id == encs[1].config.eos_token_id
    with pytest.raises(ValueError, match='WithProjection'): encode_prompts('a', [tok], encs[:1])
    with pytest.raises(ValueError, match='at least one prompt'): encode_prompts([], parts.tokenizers, encs)

# --- the adapter ------------------------------------------------------------------------------------------------------
def test_adapter_x0_is_eps_to_x0(parts, batch):
    x, t, c = batch
    m = parts.denoiser()
    with torch.no_grad():
        eps = parts.unet(x, t, encoder_hidden_states=c.prompt_embeds,
                         added_cond_kwargs={'text_embeds': c.pooled, 'time_ids': c.time_ids}).sample
        a = parts.schedule.alphas_cumprod[t.long()].sqrt().float().view(-1, 1, 1, 1)
        s = (1 - parts.schedule.alphas_cumprod[t.long()]).sqrt().float().view(-1, 1, 1, 1)
        torch.testing.assert_close(m.raw(x, t, c), eps)
        torch.testing.assert_close(m(x, t, c), (x - s * eps) / a, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m(x, t, c), parts.schedule.to_x0(x, t, eps, 'eps'))
    assert m.pred == 'eps' and m.schedule is parts.schedule
    with pytest.raises(ValueError, match="pred must be"): SDXLDenoiser(parts.unet, pred='flow')

def test_null_cond(parts, batch):
    c = batch[2][torch.tensor([0, 1, 1])]
    nc = parts.denoiser().null_cond(c)
    assert nc.prompt_embeds.shape == (3, 77, 64) and nc.pooled.shape == (3, 32) and len(nc) == 3
    assert (nc.prompt_embeds == 0).all() and (nc.pooled == 0).all() and torch.equal(nc.time_ids, c.time_ids)
    empty = parts.encode_prompts([''])
    nc2 = parts.denoiser(null=empty).null_cond(c)
    assert torch.equal(nc2.prompt_embeds, empty.prompt_embeds.expand(3, -1, -1)) and torch.equal(nc2.pooled[2], empty.pooled[0])
    with pytest.raises(ValueError, match='batch-1'): SDXLDenoiser(parts.unet, null=c)

def test_features_are_mid_block_output(parts, batch):
    x, t, c = batch
    m = parts.denoiser()
    seen = []
    h = parts.unet.mid_block.register_forward_hook(lambda mod, a, out: seen.append(out))
    with torch.no_grad(): m.raw(x, t, c)
    h.remove()
    with torch.no_grad(): f = m.features(x, t, c)
    assert f.shape == (2, 64, 8, 8) and torch.equal(f, seen[0])
    assert len(parts.unet.mid_block._forward_hooks) == 0               # the adapter's hook is gone
    xg = x.clone().requires_grad_(True); m.features(xg, t, c).sum().backward(); assert xg.grad.abs().sum() > 0
    m2 = copy.deepcopy(m); torch.testing.assert_close(m2.features(x, t, c), f.detach())   # copies (student, fake) work too

def test_vae_round_trip(parts):
    images, _ = shape_images(3, 32)
    z = vae_encode(parts.vae, images)
    assert z.shape == (3, 4, 16, 16) and 0.5 < z.std() < 2                          # calibrated scaling factor
    assert vae_decode(parts.vae, z).shape == images.shape
    zs1 = vae_encode(parts.vae, images, torch.Generator().manual_seed(1), sample=True)
    zs2 = vae_encode(parts.vae, images, torch.Generator().manual_seed(1), sample=True)
    assert torch.equal(zs1, zs2) and not torch.equal(zs1, z)
    # the scaling factor is applied both ways
    raw = parts.vae.encode(images).latent_dist.mode()
    torch.testing.assert_close(z, raw * parts.vae.config.scaling_factor)
    zg = z.clone().requires_grad_(True); vae_decode(parts.vae, zg).sum().backward(); assert zg.grad.abs().sum() > 0

def test_pool_sampler(parts, real_batch):
    x1, c1 = real_batch(3, torch.Generator().manual_seed(5))
    x2, c2 = real_batch(3, torch.Generator().manual_seed(5))
    assert x1.shape == (3, 4, 16, 16) and len(c1) == 3 and torch.equal(x1, x2) and torch.equal(c1.pooled, c2.pooled)
    with pytest.raises(ValueError, match='latents but'): pool_sampler(torch.zeros(3, 4, 2, 2), c1[:2])

def test_sdxl_save_load_round_trip(parts, batch, tmp_path):
    save_sdxl(parts, tmp_path / 'tiny')
    back = load_sdxl(tmp_path / 'tiny', image_size=32)
    x, t, c = batch
    with torch.no_grad(): torch.testing.assert_close(back.denoiser()(x, t, c), parts.denoiser()(x, t, c))
    torch.testing.assert_close(back.encode_prompts(['a red square']).prompt_embeds, parts.encode_prompts(['a red square']).prompt_embeds)
    assert not any(p.requires_grad for p in back.vae.parameters())

def test_sdxl_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='/no/such/sdxl'): load_sdxl('/no/such/sdxl')
    with pytest.raises(OSError, match=re.escape(str(tmp_path))): load_sdxl(tmp_path)              # exists, but holds no model

# --- SAM ----------------------------------------------------------------------------------------------------------------
def test_sam_features():
    feats = SamFeatures(tiny_sam())
    images, _ = shape_images(2, 32)
    fs = feats(images)
    assert feats.levels == (1, 2, 3, 4) and feats.dims == [32] * 4 and [f.shape for f in fs] == [(2, 32, 4, 4)] * 4
    assert (fs[0][0] - fs[0][1]).abs().max() > 1e-2                  # not the ~zero output of SAM's 1e-10 default init
    hs = feats.encoder(feats.preprocess(images), output_hidden_states=True).hidden_states
    torch.testing.assert_close(fs[2], hs[3].permute(0, 3, 1, 2))
    assert feats.preprocess(images).shape == (2, 3, 64, 64) and feats.preprocess(torch.zeros(1, 3, 16, 32))[:, :, 32:].abs().sum() == 0
    assert even_levels(12) == (3, 6, 9, 12) and even_levels(32, 4) == (8, 16, 24, 32)
    with pytest.raises(ValueError, match='levels must be'): SamFeatures(tiny_sam(), levels=(0, 9))
    feats.train(); assert not feats.encoder.training

def test_conv_head():
    f = torch.randn(2, 32, 4, 4)
    assert TINY_HEAD(32)(f).shape == (2, 1) and conv_head(32, hidden=64)(torch.randn(2, 32, 16, 16)).shape == (2, 1)
    with pytest.raises(ValueError, match='use n_down <= 2'): conv_head(32, n_down=3)(f)
    with pytest.raises(ValueError, match='would not depend on its input'): conv_head(32, hidden=32, n_down=2)(f)
    with pytest.raises(ValueError, match='channels-first'): conv_head(32)(torch.randn(2, 16, 32))

def test_pixel_gan_on_latents(parts):
    feats = SamFeatures(tiny_sam())
    disc = PixelGAN(feats, feats.dims, head=TINY_HEAD, decode=partial(vae_decode, parts.vae))
    z = torch.randn(2, 4, 16, 16, requires_grad=True)
    logits = disc(z)
    assert logits.shape == (2,) and not torch.allclose(logits[0], logits[1])
    logits.sum().backward(); assert z.grad.abs().sum() > 0
    assert all(p.grad is None for p in feats.parameters())

def test_sam_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='/no/such/sam'): load_sam('/no/such/sam')
    with pytest.raises(FileNotFoundError, match='missing-sam'): load_sam('./missing-sam')
    with pytest.raises(OSError, match=re.escape(str(tmp_path))): load_sam(tmp_path)                # exists, but holds no checkpoint

# --- the unchanged core on tiny SDXL ------------------------------------------------------------------------------------
@pytest.mark.parametrize('gan', ['fake_head', 'pixel'])
def test_distiller_runs_on_tiny_sdxl(parts, real_batch, gan):
    teacher = parts.denoiser()
    kw = {}
    if gan == 'pixel':
        backbone = SamFeatures(tiny_sam(seed=1))
        parts.vae.requires_grad_(False)
        kw = dict(disc_backbone=backbone, disc_dims=backbone.dims, head_fn=TINY_HEAD, decode=partial(vae_decode, parts.vae))
        frozen = snap(backbone)
    cfg = preset('flash', gan=gan, batch=2, cond_gan=False, guidance=3.0)
    t0, v0 = snap(teacher), snap(parts.vae)
    d = Distiller(cfg, teacher, parts.schedule, real_batch, **kw)
    disc0 = snap(d.disc)
    logs = [d.step() for _ in range(2)]
    assert d.gen_updates == 2 and d.critic_updates == 2 and {r['adv_t'] for r in logs} == {249}
    assert all(r['dm_t'] in (999, 749, 499) for r in logs)
    assert all(torch.isfinite(torch.tensor([r['fake'], r['d'], r['dm'], r['adv']])).all() for r in logs)
    assert same(t0, teacher) and same(v0, parts.vae)                                     # teacher and VAE frozen
    assert not same(t0, d.student) and not same(disc0, d.disc)                           # student and critic trained
    if gan == 'pixel':
        assert same(frozen, backbone) and not any(p.requires_grad for p in backbone.parameters())   # SAM (and VAE) never change
    else:
        assert d.disc.net[0].in_features == 64 * 8 * 8                                  # the head reads mid-block features
    with torch.no_grad():
        x = sample_student(d.student, torch.randn(2, 4, 16, 16), parts.encode_prompts(['a', 'b']), parts.schedule)
    assert x.shape == (2, 4, 16, 16) and torch.isfinite(x).all()
