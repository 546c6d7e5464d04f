"Tests of flash_dmd.gan: hinge and non-saturating losses, R1, the frozen random-feature backbone, Pixel-GAN and DMD2's fake-feature head."
import math, pytest, torch
from torch import nn
from flash_dmd.schedules import VPSchedule
from flash_dmd.gan import (d_loss, g_loss, r1_penalty, FakeFeatureHead, fake_feature_logits,
                           RandomFeatureBackbone, PixelGAN)

sp = lambda v: math.log1p(math.exp(v))                  # softplus

def test_hinge_losses_known_values():
    real, fake = torch.tensor([0.5, 2., 1.]), torch.tensor([-0.5, 1., -3.])
    assert torch.allclose(d_loss(real, fake, 'hinge'), torch.tensor(0.5 / 3 + (0.5 + 2 + 0) / 3))
    assert d_loss(torch.tensor([1., 5.]), torch.tensor([-1., -7.]), 'hinge') == 0   # margins met: no loss
    assert torch.allclose(g_loss(fake, 'hinge'), torch.tensor(2.5 / 3))           # -mean, unbounded: no margin
    assert g_loss(torch.tensor([10.]), 'hinge') == -10

def test_ns_losses_known_values():
    z = torch.zeros(4)
    assert torch.allclose(d_loss(z, z, 'ns'), torch.tensor(2 * math.log(2)))
    assert torch.allclose(g_loss(z, 'ns'), torch.tensor(math.log(2)))
    real, fake = torch.tensor([3., -1.]), torch.tensor([-2., 0.5])
    assert torch.allclose(d_loss(real, fake, 'ns'), torch.tensor((sp(-3) + sp(1)) / 2 + (sp(-2) + sp(0.5)) / 2))
    assert torch.allclose(g_loss(fake, 'ns'), torch.tensor((sp(2) + sp(-0.5)) / 2))
    assert g_loss(torch.tensor([30.]), 'ns') < 1e-12                          # saturates at 0, never negative

def test_ns_generator_gradient_is_minus_sigmoid():
    f = torch.tensor([-3., 0., 2.], requires_grad=True)
    g_loss(f, 'ns').backward()
    assert torch.allclose(f.grad, -torch.sigmoid(-f.detach()) / 3)          # strong gradient where D rejects (-3)

def test_loss_kind_is_checked_everywhere():
    with pytest.raises(ValueError, match='unknown GAN loss'): g_loss(torch.zeros(2), 'wgan')
    with pytest.raises(ValueError, match=r"\('hinge', 'ns'\)"): d_loss(torch.zeros(2), torch.zeros(2), 'Hinge')

def test_r1_linear_discriminator_on_images():
    w = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 2, 3, 3)
    assert torch.allclose(r1_penalty(lambda x: (x * w).flatten(1).sum(1), x), w.pow(2).sum())
    assert not x.requires_grad                              # the caller's tensor is left alone

def test_r1_per_sample_and_differentiable_in_disc_params():
    x = torch.tensor([[1., 0.], [0., 2.]])
    assert torch.allclose(r1_penalty(lambda x: x.pow(2).sum(1), x), torch.tensor((4 + 16) / 2))   # grad 2x
    lin = nn.Linear(3, 1)
    p = r1_penalty(lambda x: lin(x).squeeze(1), torch.randn(8, 3))
    assert torch.allclose(p, lin.weight.pow(2).sum())
    p.backward()
    assert torch.allclose(lin.weight.grad, 2 * lin.weight.detach()) and lin.bias.grad is None

def test_backbone_seeded_levels_and_width():
    x = torch.randn(10, 3)
    a, b, c = (RandomFeatureBackbone(dim=3, width=16, levels=4, seed=s) for s in (5, 5, 6))
    fa, fb, fc = a(x), b(x), c(x)
    assert len(fa) == 4 and a.dims == [16] * 4 and all(f.shape == (10, 16) for f in fa)
    assert all(torch.equal(u, v) for u, v in zip(fa, fb))
    assert not any(torch.allclose(u, v) for u, v in zip(fa, fc))
    assert all(f.abs().max() <= 1 for f in fa)             # sin features
    assert not any(p.requires_grad for p in a.parameters())

def test_backbone_flattens_image_inputs_and_passes_gradient_to_input():
    bb = RandomFeatureBackbone(dim=12, width=8, levels=2, seed=0)
    x = torch.randn(3, 3, 2, 2, requires_grad=True)
    feats = bb(x)
    assert [f.shape for f in feats] == [(3, 8), (3, 8)]
    assert torch.equal(feats[1], bb(x.detach().flatten(1))[1])
    feats[-1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0   # frozen, but differentiable for the generator

def test_pixelgan_trainable_parameters():
    bb = RandomFeatureBackbone(seed=0)
    un = PixelGAN(bb, bb.dims)
    ids = lambda ps: {id(p) for p in ps}
    assert ids(un.trainable_parameters()) == ids(un.heads.parameters())
    assert not ids(un.trainable_parameters()) & ids(bb.parameters())
    cond = PixelGAN(RandomFeatureBackbone(seed=0), [64] * 3, n_classes=5, cond_dim=8)
    tp = ids(cond.trainable_parameters())
    assert id(cond.cond.weight) in tp and tp == ids(cond.heads.parameters()) | {id(cond.cond.weight)}
    assert cond.cond.weight.shape == (6, 8)                # a null class besides the 5
    assert cond.heads[0][0].in_features == 64 + 8          # each head sees features and the class embedding

class _ListOut(nn.Module):
    "Wrap a module so it returns a one-level feature list, as a backbone must."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return [self.m(x)]

def test_pixelgan_freezes_a_trainable_backbone():
    bb = nn.Linear(2, 4)                                   # an ordinary, trainable module
    gan = PixelGAN(_ListOut(bb), [4])
    assert not any(p.requires_grad for p in bb.parameters()) and not gan.backbone.training
    gan.train()
    assert gan.training and not gan.backbone.training

def test_pixelgan_shapes_and_conditioning():
    x = torch.randn(7, 2)
    un = PixelGAN(RandomFeatureBackbone(seed=0), [64] * 3)
    assert un(x).shape == (7,) and un(x[:1]).shape == (1,)
    assert torch.equal(un(x), un(x, torch.zeros(7, dtype=torch.long)))   # unconditional: c is ignored
    cond = PixelGAN(RandomFeatureBackbone(seed=0), [64] * 3, n_classes=5)
    with pytest.raises(ValueError, match='class-conditional'): cond(x)
    c0, c1 = torch.zeros(7, dtype=torch.long), torch.ones(7, dtype=torch.long)
    assert cond(x, c0).shape == (7,) and not torch.allclose(cond(x, c0), cond(x, c1))
    assert cond(x, torch.full((7,), 5)).shape == (7,)      # the null class is a valid label

def test_pixelgan_averages_levels():
    made = []
    def const_head(d):                                     # head i always answers i
        h = nn.Linear(d, 1); nn.init.zeros_(h.weight); nn.init.constant_(h.bias, float(len(made))); made.append(h)
        return h
    gan = PixelGAN(RandomFeatureBackbone(seed=0), [64] * 3, head=const_head)
    assert torch.allclose(gan(torch.randn(4, 2)), torch.full((4,), 1.))   # (0 + 1 + 2) / 3

def test_pixelgan_decode_is_applied_first():
    gan = PixelGAN(RandomFeatureBackbone(dim=2, seed=3), [64] * 3)
    x = torch.randn(6, 2)
    plain = gan(x)
    calls = []
    def decode(z):
        calls.append(z.shape); return z[:, :2] * 2         # "latents" [B, 5] -> "pixels" [B, 2]
    gan.decode = decode
    z = torch.cat([x / 2, torch.randn(6, 3)], 1)
    assert torch.allclose(gan(z), plain, atol=1e-6) and calls == [(6, 5)]
    dec_gan = PixelGAN(RandomFeatureBackbone(dim=2, seed=3), [64] * 3, decode=lambda z: z[:, :2] * 2)
    assert dec_gan.decode is not None and dec_gan(z).shape == (6,)

def test_fake_feature_head_shapes():
    head = FakeFeatureHead(12, hidden=8)
    assert head(torch.randn(5, 3, 4)).shape == (5,)         # flattened features
    assert head(torch.randn(1, 12)).shape == (1,)           # a batch of one keeps its batch dim
    assert head.net[0].in_features == 12 and head.net[0].out_features == 8

def test_fake_feature_logits_noises_within_t_range():
    vp, seen = VPSchedule.scaled_linear(), {}
    def feats(x_t, t, c):
        seen.update(x_t=x_t, t=t, c=c); return torch.cat([x_t, t[:, None] / 1000], 1)
    head = FakeFeatureHead(3)
    x0, c = torch.randn(200, 2), torch.arange(200)
    logits = fake_feature_logits(head, feats, x0, c, vp, torch.Generator().manual_seed(0), t_range=(0.5, 0.6))
    assert logits.shape == (200,) and seen['c'] is c
    assert seen['t'].min() >= 500 and seen['t'].max() < 600
    g = torch.Generator().manual_seed(0)
    t = torch.randint(500, 600, (200,), generator=g).float()    # the same draws, in the same order
    assert torch.allclose(seen['x_t'], vp.add_noise(x0, torch.randn(x0.shape, generator=g), t))
