"Tests of flash_dmd.schedules against diffusers and against its own invariants."
import math, pytest, torch
from diffusers import DDPMScheduler, DDIMScheduler, LCMScheduler, FlowMatchEulerDiscreteScheduler
from flash_dmd.schedules import (VPSchedule, FlowSchedule, PRED_KINDS, STUDENT_TIMESTEPS, cfg, with_cfg, sample_student,
                                 backward_simulate, sample_teacher, ddim_step, student_step, shift_sigma)

f64 = dict(dtype=torch.float64)

@pytest.mark.parametrize('kind,lo,hi', [('scaled_linear', 0.00085, 0.012), ('linear', 1e-4, 0.02)])
def test_alphas_cumprod_match_diffusers(kind, lo, hi):
    ours = VPSchedule(lo, hi, 1000, kind)
    ref = DDPMScheduler(beta_start=lo, beta_end=hi, beta_schedule=kind).alphas_cumprod.double()
    assert torch.allclose(ours.alphas_cumprod, ref, atol=1e-6, rtol=0)

def test_add_noise_matches_ddpm_scheduler_float64():
    vp = VPSchedule.scaled_linear()
    ddpm = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear')
    ddpm.alphas_cumprod = vp.alphas_cumprod.clone()           # same float64 table: isolate the formula
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(64, 4, 8, 8, generator=g, **f64), torch.randn(64, 4, 8, 8, generator=g, **f64)
    t = torch.randint(0, 1000, (64,), generator=g)
    assert torch.allclose(vp.add_noise(x0, eps, t), ddpm.add_noise(x0, eps, t), atol=1e-6, rtol=0)
    # and with diffusers' own float32 table, agreement is at float32 precision
    ddpm32 = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear')
    assert torch.allclose(vp.add_noise(x0, eps, t), ddpm32.add_noise(x0, eps, t), atol=1e-5, rtol=0)

def test_flow_sigmas_match_diffusers_shift3():
    fm = FlowMatchEulerDiscreteScheduler(shift=3.0)
    t = torch.arange(1000, 0, -1)                               # diffusers' training table runs t = 1000..1
    assert torch.allclose(FlowSchedule(3.0).sigma(t), fm.sigmas.double(), atol=1e-6, rtol=0)
    assert torch.allclose(FlowSchedule(3.0).sigma(t) * 1000, fm.timesteps.double(), atol=1e-3, rtol=0)

@pytest.mark.parametrize('n', [1, 2, 4, 8])
def test_student_sampler_matches_lcm(n):
    vp = VPSchedule.scaled_linear()
    ts = list(vp.sampling_timesteps(n))
    eps_net = lambda x, t: torch.sin(x) * 0.5 + 0.1 * t.view(-1, 1, 1, 1) / 1000
    as_x0 = lambda x, t, c: vp.to_x0(x, t, eps_net(x, t), 'eps')
    z = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), **f64)
    ours = sample_student(as_x0, z, None, vp, ts, generator=torch.Generator().manual_seed(2))
    lcm = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', original_inference_steps=n)
    lcm.alphas_cumprod = vp.alphas_cumprod.clone()
    lcm.set_timesteps(timesteps=[int(t) for t in ts])
    x, g = z.clone(), torch.Generator().manual_seed(2)
    for t in lcm.timesteps: x = lcm.step(eps_net(x, t.expand(3).double()), t, x, generator=g).prev_sample
    # LCM adds its boundary-condition scalings (c_skip ~ 4e-8 at t=249), so agreement is to 1e-6 relative
    assert torch.allclose(ours, x, atol=1e-6, rtol=1e-6), (ours - x).abs().max()

def test_teacher_sampler_matches_ddim_and_flow_euler():
    vp, fl = VPSchedule.scaled_linear(), FlowSchedule(3.0)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), **f64)
    eps_net = lambda x, t: torch.tanh(x) * 0.7
    ddim = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='trailing',
                         set_alpha_to_one=True, clip_sample=False)
    ddim.alphas_cumprod = vp.alphas_cumprod.clone(); ddim.set_timesteps(25)
    x = z.clone()
    for t in ddim.timesteps: x = ddim.step(eps_net(x, t), t, x).prev_sample
    ours = sample_teacher(lambda x, t, c: vp.to_x0(x, t, eps_net(x, t), 'eps'), z, None, vp, 25)
    assert torch.allclose(ours, x, atol=1e-6, rtol=0)
    fm = FlowMatchEulerDiscreteScheduler(shift=3.0); fm.set_timesteps(12)
    u_net = lambda x: torch.cos(x)
    x = z.clone()
    for t in fm.timesteps: x = fm.step(u_net(x), t, x).prev_sample
    ts = fl.timestep_from_sigma(fm.sigmas[:-1].double()).tolist() + [0.0]
    y = z.clone()
    for t, tn in zip(ts[:-1], ts[1:]): y = ddim_step(fl, y, t, fl.to_x0(y, t, u_net(y), 'flow'), tn)
    assert torch.allclose(y, x, atol=1e-6, rtol=0)

@pytest.mark.parametrize('sch', [VPSchedule.scaled_linear(), VPSchedule.linear(), FlowSchedule(3.0), FlowSchedule(1.0)])
def test_conversions_round_trip_on_image_shapes(sch):
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 3, 5, 5, generator=g, **f64), torch.randn(4, 3, 5, 5, generator=g, **f64)
    t = torch.tensor([1., 250., 600., 999.])
    x_t = sch.add_noise(x0, eps, t)
    truth = {'x0': x0, 'eps': eps, 'v': None, 'flow': eps - x0}
    for kind in PRED_KINDS:
        p = sch.from_x0(x_t, t, x0, kind)
        if truth[kind] is not None: assert torch.allclose(p, truth[kind], atol=1e-8)
        assert torch.allclose(sch.to_x0(x_t, t, p, kind), x0, atol=1e-8)

def test_snr_trap_and_monotone():
    vp = VPSchedule.scaled_linear()
    snr = vp.snr(torch.arange(1000))
    assert (snr[1:] < snr[:-1]).all()
    assert vp.snr(999) < 0.01 and vp.snr(749) < 0.1 and vp.snr(249) > 1
    assert FlowSchedule(3.0).snr(999) < 1e-6

def test_timestep_errors_are_clear():
    vp, fl = VPSchedule.scaled_linear(), FlowSchedule()
    x = torch.zeros(2, 2)
    for bad, msg in [(1000, 'not indices'), (-1, 'not indices'), (0.5, 'whole-number'), (float('nan'), 'NaN')]:
        with pytest.raises(ValueError, match=msg): vp.add_noise(x, x, bad)
    with pytest.raises(ValueError, match='not indices'): fl.add_noise(x, x, 1000.5)
    fl.add_noise(x, x, 0.5)                                   # flow accepts real-valued timesteps
    with pytest.raises(ValueError, match='shape'): vp.add_noise(x, x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unknown VP beta schedule"): VPSchedule(kind='cosine')

def test_cfg_convention():
    u, c = torch.tensor([1.]), torch.tensor([3.])
    assert cfg(u, c, 0.) == u and cfg(u, c, 1.) == c and cfg(u, c, 8.) == 1 + 8 * 2
    m = lambda x, t, k: x + k
    assert torch.equal(with_cfg(m, 2., lambda k: 0 * k)(torch.zeros(1), None, torch.ones(1)), torch.tensor([2.]))

def test_student_uses_fresh_noise_and_custom_timesteps():
    vp = VPSchedule.scaled_linear()
    ident = lambda x, t, c: torch.zeros_like(x)              # predicts x0 = 0: every state is pure re-noise
    z = torch.zeros(1000, 1)
    _, states = sample_student(ident, z, None, vp, (999, 500, 10), generator=torch.Generator().manual_seed(0), return_states=True)
    s1, s2 = states[1], states[2]
    assert abs(s1.std().item() - vp.alpha_sigma(500, s1)[1][0, 0].item()) < 0.05
    assert abs(torch.corrcoef(torch.stack([s1.flatten(), s2.flatten()]))[0, 1].item()) < 0.1   # fresh, not reused

def test_backward_simulate_no_grad_and_matches_sampler():
    vp = VPSchedule.scaled_linear()
    lin = torch.nn.Linear(2, 2)
    net = lambda x, t, c: lin(x)
    z = torch.randn(8, 2)
    _, states = sample_student(net, z, None, vp, generator=torch.Generator().manual_seed(5), return_states=True)
    for k in range(len(STUDENT_TIMESTEPS)):
        xk = backward_simulate(net, z, None, vp, k, generator=torch.Generator().manual_seed(5))
        assert not xk.requires_grad and torch.allclose(xk, states[k])
    with pytest.raises(ValueError, match='k must index'): backward_simulate(net, z, None, vp, -1)

def test_student_step_carries_gradients():
    vp = VPSchedule.scaled_linear()
    lin = torch.nn.Linear(2, 2)
    x_next, x0 = student_step(lambda x, t, c: lin(x), torch.randn(4, 2), 499, None, vp, 249)
    x0.sum().backward()
    assert lin.weight.grad is not None and x_next.shape == (4, 2)

def test_shift_identity_and_inverse():
    s = torch.linspace(0, 1, 11, **f64)
    assert torch.allclose(shift_sigma(s, 1.0), s)
    fl = FlowSchedule(3.0)
    assert torch.allclose(fl.timestep_from_sigma(fl.sigma(s * 1000)), s * 1000, atol=1e-9)
