"DPO scale (issue 12): the log-ratio is per dimension, in closed form, and the toy behaviour is the old one at the rescaled beta."
import copy, math
import pytest, torch
import torch.nn.functional as F
from torch import nn
from flash_dmd.rl import gaussian_logp, dpo_log_ratio, dpo_loss, rl_preset, RLConfig
from flash_dmd.schedules import VPSchedule

SDXL = (4, 128, 128)          # SDXL latent at 1024 px: 65,536 numbers

def _pair(eps, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu_ref = torch.randn(2, *SDXL, generator=g, dtype=torch.float64)
    mu = mu_ref + eps * torch.randn(mu_ref.shape, generator=g, dtype=torch.float64)
    std = torch.tensor(0.7, dtype=torch.float64)
    x = mu + std * torch.randn(mu.shape, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (x, mu, mu_ref, std)]

def test_beta_h_not_saturated_at_sdxl_size():
    x, mu, mu_ref, std = _pair(1e-3)
    h = dpo_log_ratio(x, mu, mu_ref, std)
    assert abs(500 * (h[0] - h[1]).item()) < 1          # LPO's beta on the per-dimension mean: sigmoid has a slope
    h_sum = gaussian_logp(x.double(), mu.double(), std.double()) - gaussian_logp(x.double(), mu_ref.double(), std.double())
    assert abs(500 * (h_sum[0] - h_sum[1]).item()) > 20  # the old sum: saturated

def test_closed_form_equals_direct_difference_float64():
    x, mu, mu_ref, std = _pair(1e-3, torch.float64)
    direct = (gaussian_logp(x, mu, std) - gaussian_logp(x, mu_ref, std)) / mu[0].numel()
    torch.testing.assert_close(dpo_log_ratio(x, mu, mu_ref, std), direct, rtol=1e-9, atol=1e-12)
    # and in float32 the closed form keeps its digits where the difference of log-densities does not
    x32, mu32, ref32, std32 = (t.float() for t in (x, mu, mu_ref, std))
    err_closed = (dpo_log_ratio(x32, mu32, ref32, std32).double() - direct).abs().max()
    err_diff = ((gaussian_logp(x32, mu32, std32) - gaussian_logp(x32, ref32, std32)).double() / mu[0].numel() - direct).abs().max()
    assert err_closed < 0.05 * err_diff                   # measured: about 2e-10 vs 5e-8

def test_closed_form_with_per_sample_std():
    g = torch.Generator().manual_seed(1)
    x, m, m2 = (torch.randn(3, 2, 5, generator=g, dtype=torch.float64) for _ in range(3))
    s = torch.rand(3, 1, 1, generator=g, dtype=torch.float64) + 0.1
    torch.testing.assert_close(dpo_log_ratio(x, m, m2, s), (gaussian_logp(x, m, s) - gaussian_logp(x, m2, s)) / 10)

def _old_dpo_loss(policy, ref, rm, x_t, t, t_next, schedule, k, beta, gen):
    "The loss before issue 12 (sum of log-densities), rebuilt from dpo_loss's pairs."
    loss, info = dpo_loss(policy, ref, rm, x_t, t, t_next, None, schedule, k, 1.0, gen)
    x0 = policy(x_t, None, None); a, s = schedule.alpha_sigma(t_next, x0); mean = a * x0
    mref = a * ref(x_t, None, None)
    r = lambda x: gaussian_logp(x, mean, s) - gaussian_logp(x, mref, s)
    return -F.logsigmoid(beta * (r(info['x_w']) - r(info['x_l']))).mean()

def test_toy_loss_and_gradient_unchanged_at_rescaled_beta():
    torch.manual_seed(0)
    vp = VPSchedule.scaled_linear()
    lin = nn.Linear(2, 2); ref_lin = copy.deepcopy(lin).requires_grad_(False)
    with torch.no_grad(): lin.weight.add_(0.05 * torch.randn(2, 2))
    pol, ref = (lambda x, t, c: lin(x)), (lambda x, t, c: ref_lin(x))
    rm = lambda x, t, c: x[:, 0]
    xt = torch.randn(256, 2)
    old = _old_dpo_loss(pol, ref, rm, xt, 999, 749, vp, 4, 100., torch.Generator().manual_seed(0))
    g_old = torch.autograd.grad(old, lin.weight)[0]
    new, _ = dpo_loss(pol, ref, rm, xt, 999, 749, None, vp, 4, RLConfig().beta, torch.Generator().manual_seed(0))
    g_new = torch.autograd.grad(new, lin.weight)[0]
    assert RLConfig().beta == 200.                       # 2-D toy: 100 on the sum = 200 on the mean
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_new, g_old, rtol=1e-4, atol=1e-6)

def test_ratio_clip():
    torch.manual_seed(0)
    vp = VPSchedule.scaled_linear()
    lin = nn.Linear(2, 2); ref_lin = copy.deepcopy(lin).requires_grad_(False)
    with torch.no_grad(): lin.bias.add_(1.0)                                  # far from the reference
    pol, ref = (lambda x, t, c: lin(x)), (lambda x, t, c: ref_lin(x))
    xt = torch.randn(64, 2)
    _, info = dpo_loss(pol, ref, lambda x, t, c: x[:, 0], xt, 999, 749, None, vp, 4, 200., torch.Generator().manual_seed(0), ratio_clip=0.2)
    assert info['h'].abs().max() <= math.log(1.2) - math.log(0.8) + 1e-6
    assert RLConfig().ratio_clip is None and rl_preset('flash+rl', ratio_clip=0.2).ratio_clip == 0.2
    with pytest.raises(ValueError, match='ratio_clip'): RLConfig(ratio_clip=1.5)
