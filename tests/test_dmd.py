"Tests of flash_dmd.dmd: the normaliser, the DM gradient and its surrogate loss, the exact Gaussian denoiser, fake-score and regression losses."
import math, pytest, torch
from torch import nn
from flash_dmd.schedules import VPSchedule, FlowSchedule, denoising_loss
from flash_dmd.dmd import (NORMALISERS, dm_normaliser, dm_gradient, dmd_loss, gaussian_denoiser, gaussian_kl,
                           fake_score_loss, regression_loss)

VP, FLOW = VPSchedule.scaled_linear(), FlowSchedule(3.0)
real_fn = lambda x_t, t, c: torch.tanh(x_t)
fake_fn = lambda x_t, t, c: 0.5 * x_t

def _pair(seed=0, shape=(4, 4, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)

def test_normaliser_sample_batch_none_on_image_shapes():
    x, p = _pair()
    per = (x - p).abs().mean((1, 2, 3))
    w = dm_normaliser(x, p, mode='sample')
    assert w.shape == (4, 1, 1, 1) and torch.allclose(w.flatten(), per)
    wb = dm_normaliser(x, p, mode='batch')
    assert wb.shape == (4, 1, 1, 1) and torch.allclose(wb.flatten(), per.mean().expand(4))
    assert torch.equal(dm_normaliser(x, p, mode='none'), torch.ones(4, 1, 1, 1))
    assert torch.equal(dm_normaliser(x, x, mode='sample', eps=1e-3), torch.full((4, 1, 1, 1), 1e-3))   # clamped, never 0

def test_normaliser_tau_bins_average_within_bins():
    x, p = _pair(1)
    per = (x - p).abs().mean((1, 2, 3))
    tau = torch.tensor([10., 60., 500., 999.])            # 16 bins of width 62.5: bins 0, 0, 8, 15
    w = dm_normaliser(x, p, tau, mode='tau_bins').flatten()
    assert w[0] == w[1] and torch.allclose(w[0], per[:2].mean())
    assert torch.allclose(w[2:], per[2:])                  # alone in their bins: their own value
    w2 = dm_normaliser(x, p, tau, mode='tau_bins', n_bins=1).flatten()
    assert torch.allclose(w2, per.mean().expand(4))        # one bin is the batch mean
    # a flow timestep equal to T lands in the last bin instead of indexing past it
    wt = dm_normaliser(x, p, torch.tensor([10., 60., 500., 1000.]), mode='tau_bins').flatten()
    assert torch.allclose(wt, w)

def test_normaliser_errors():
    x, p = _pair()
    with pytest.raises(ValueError, match='needs the re-noise levels tau'): dm_normaliser(x, p, mode='tau_bins')
    with pytest.raises(ValueError, match=r"choose one of \('sample'"): dm_normaliser(x, p, torch.zeros(4), mode='Sample')

@pytest.mark.parametrize('sch', [VP, FLOW], ids=['vp', 'flow'])
@pytest.mark.parametrize('norm', NORMALISERS)
def test_dmd_loss_gradient_is_grad_over_numel_on_images(sch, norm):
    x = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
    loss, info = dmd_loss(x, None, real_fn, fake_fn, sch, normaliser=norm, generator=torch.Generator().manual_seed(3))
    loss.backward()
    assert torch.allclose(x.grad, info['grad'] / x.numel(), atol=1e-9)
    assert torch.allclose(loss, 0.5 * info['grad'].pow(2).mean())
    assert info['normaliser'].shape == (6,) and not info['grad'].requires_grad

def test_dmd_loss_tau_stays_in_range_and_is_reproducible():
    x = torch.randn(256, 2)
    _, info = dmd_loss(x, None, real_fn, fake_fn, VP, tau_range=(0.2, 0.3), generator=torch.Generator().manual_seed(0))
    assert info['tau'].min() >= 200 and info['tau'].max() < 300 and torch.equal(info['tau'], info['tau'].round())
    _, info_f = dmd_loss(x, None, real_fn, fake_fn, FLOW, tau_range=(0.2, 0.3), generator=torch.Generator().manual_seed(0))
    s = FLOW.sigma(info_f['tau'].double())
    assert s.min() >= 0.2 - 1e-6 and s.max() <= 0.3 + 1e-6       # flow: the range is in sigma
    l1, i1 = dmd_loss(x, None, real_fn, fake_fn, VP, generator=torch.Generator().manual_seed(7))
    l2, i2 = dmd_loss(x, None, real_fn, fake_fn, VP, generator=torch.Generator().manual_seed(7))
    assert torch.equal(l1, l2) and torch.equal(i1['x_tau'], i2['x_tau'])

def test_dmd_gradient_zero_when_real_equals_fake():
    x = torch.randn(5, 4, 8, 8, requires_grad=True)
    loss, info = dmd_loss(x, None, real_fn, real_fn, FLOW, normaliser='tau_bins', generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() == 0 and torch.count_nonzero(info['grad']) == 0 and torch.count_nonzero(x.grad) == 0

def test_dmd_gradient_value_and_sign_with_no_normaliser():
    real = lambda x_t, t, c: torch.zeros_like(x_t)
    fake = lambda x_t, t, c: torch.full_like(x_t, 0.5)     # fake score sits 0.5 above the real one
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    loss, info = dmd_loss(x, None, real, fake, VP, normaliser='none')
    assert torch.equal(info['grad'], torch.full_like(x, 0.5)) and abs(loss.item() - 0.125) < 1e-7
    loss.backward()
    assert (x.grad > 0).all()                              # descent moves x down, towards the real score

def test_dmd_loss_leaves_real_and_fake_models_untouched():
    real_net, fake_net = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    loss, info = dmd_loss(x, None, lambda x_t, t, c: real_net(x_t), lambda x_t, t, c: fake_net(x_t), VP,
                          generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert real_net.weight.grad is None and fake_net.weight.grad is None and x.grad is not None
    assert not any(v.requires_grad for v in info.values() if torch.is_tensor(v))

def test_dm_gradient_uses_given_noise_and_tau():
    x, noise = _pair(4, (4, 3))
    tau = torch.tensor([20., 300., 600., 900.])
    info = dm_gradient(x, None, real_fn, fake_fn, VP, tau, noise, normaliser='batch')
    assert torch.allclose(info['x_tau'], VP.add_noise(x, noise, tau))
    assert torch.allclose(info['pred_real'], torch.tanh(info['x_tau'])) and torch.allclose(info['pred_fake'], 0.5 * info['x_tau'])
    norm = (x - info['pred_real']).abs().mean(1).mean()
    assert torch.allclose(info['grad'], (info['pred_fake'] - info['pred_real']) / norm)

@pytest.mark.parametrize('sch', [VP, FLOW], ids=['vp', 'flow'])
def test_gaussian_denoiser_matches_tweedie(sch):
    m, s = torch.tensor([2., -1., 0.5]), torch.tensor([0.5, 1.5, 1.0])
    den = gaussian_denoiser(m, s, sch)
    x_t = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (1., 250., 600., 999.):
        a, sg = sch.alpha_sigma(t, x_t)
        var = a**2 * s**2 + sg**2                        # marginal of x_t: N(a m, a^2 s^2 + sigma^2)
        score = -(x_t - a * m) / var
        assert torch.allclose(den(x_t, t, None), (x_t + sg**2 * score) / a, atol=1e-9)   # Tweedie's formula

def test_gaussian_denoiser_limits_and_mse():
    assert torch.allclose(gaussian_denoiser(2., 0.5, FLOW)(torch.randn(4, 1), 1000., None), torch.full((4, 1), 2.))   # pure noise: the mean
    x = torch.randn(4, 1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gaussian_denoiser(2., 0.5, VP)(x, 0., None), x, atol=0.05)    # almost clean: almost x_t
    # its x0 error is the posterior variance s^2 sigma^2 / (a^2 s^2 + sigma^2)
    g = torch.Generator().manual_seed(1)
    x0 = 2 + 0.5 * torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    t = 500.
    x_t = VP.add_noise(x0, torch.randn(x0.shape, generator=g, dtype=torch.float64), t)
    a, sg = (v[0, 0].item() for v in VP.alpha_sigma(t, x0[:1]))
    mse = (gaussian_denoiser(2., 0.5, VP)(x_t, t, None) - x0).pow(2).mean().item()
    assert abs(mse / (0.25 * sg**2 / (a**2 * 0.25 + sg**2)) - 1) < 0.02

def test_gaussian_kl_known_values():
    assert gaussian_kl(0., 1., 0., 1.) == 0
    assert abs(gaussian_kl(0., 1., 2., 0.5) - (math.log(0.5) + 5 / 0.5 - 0.5)) < 1e-12
    assert gaussian_kl(1., 2., 0., 1.) > 0

def test_fake_score_loss_never_reaches_the_student():
    gen = nn.Conv2d(4, 4, 1)
    x_student = gen(torch.randn(4, 4, 8, 8))
    fake_net = nn.Conv2d(4, 4, 3, padding=1)
    fake = lambda x_t, t, c: fake_net(x_t)
    loss = fake_score_loss(fake, x_student, None, FLOW, 'flow', torch.Generator().manual_seed(0))
    ref = denoising_loss(fake, x_student.detach(), None, FLOW, 'flow', torch.Generator().manual_seed(0))
    assert torch.equal(loss, ref)
    loss.backward()
    assert gen.weight.grad is None and fake_net.weight.grad.abs().sum() > 0

@pytest.mark.parametrize('target', ['x0', 'eps', 'v'])
def test_fake_score_loss_zero_for_exact_point_mass(target):
    m = torch.tensor([1.5, -0.5])
    exact = gaussian_denoiser(m, 0., VP)                   # data is the single point m: the exact denoiser returns m
    loss = fake_score_loss(exact, m.expand(64, 2), None, VP, target, torch.Generator().manual_seed(0))
    assert loss.item() < 1e-10

def test_regression_loss_mse_and_custom_distance():
    pred = torch.tensor([[1., 2.], [0., 0.]], requires_grad=True)
    target = torch.tensor([[0., 0.], [1., 1.]], requires_grad=True)
    assert torch.allclose(regression_loss(pred, target), torch.tensor(7 / 4))
    seen = []
    def l1(p, t):
        seen.append(t.requires_grad)
        return (p - t).abs().sum(1)                        # per-sample distances [3, 2], averaged by the loss
    loss = regression_loss(pred, target, l1)
    assert torch.allclose(loss, torch.tensor(2.5)) and seen == [False]
    loss.backward()
    assert target.grad is None and torch.allclose(pred.grad, torch.tensor([[0.5, 0.5], [-0.5, -0.5]]))
