"Tests of flash_dmd.distill: config validation, presets, pass counting, the Distiller's critic and generator steps, run_toy."
import math, pytest, torch
from torch import nn
from flash_dmd.schedules import sample_teacher
from flash_dmd.toy import TeacherConfig, load_teacher, make_toy
from flash_dmd.distill import (PRESETS, DistillConfig, config_from_dict, preset, PassCounter, Distiller, toy_distiller,
                               run_toy, loss_map)

TINY = TeacherConfig('grid25', 'vp', hidden=32, depth=2, steps=50, batch=64)
B = 32

@pytest.fixture
def teacher():
    "A fresh tiny teacher object per test (from the session's private cache after the first test)."
    return load_teacher(TINY, 0)

def real_batch(n, g):
    d = make_toy('grid25', n, generator=g); return d.x, d.y

snap = lambda m: [p.detach().clone() for p in m.parameters()]
same = lambda ps, m: all(torch.equal(p, q) for p, q in zip(ps, m.parameters()))

def short(teacher, name, n=3, **kw):
    d = toy_distiller(preset(name, batch=B, **kw), teacher, 'grid25')
    for _ in range(n): d.step()
    return d

# --- configs -------------------------------------------------------------------------------------------------------
def test_config_from_dict_unknown_keys():
    with pytest.raises(KeyError, match="did you mean 'lr_g'"): config_from_dict({'lr_gen': 1e-3})
    with pytest.raises(KeyError, match='valid keys'): config_from_dict({'zzzzqq': 1})
    cfg = config_from_dict({'ttur': 3}, base=preset('dmd2'))
    assert cfg.ttur == 3 and cfg.gan == 'fake_head' and cfg.fake_loss == 'denoise+gan'   # the rest comes from base
    with pytest.raises(ValueError, match='ttur must be >= 1'): config_from_dict({'ttur': 0})   # validated again


@pytest.mark.parametrize('kw,msg', [
    (dict(gan='stylegan'), 'gan must be'),
    (dict(ttur=0), 'ttur must be >= 1'),
    (dict(fake_loss='gan'), "fake_loss must be 'denoise' or"),
    (dict(gan='pixel', fake_loss='denoise+gan'), "needs gan='fake_head'"),
    (dict(gan='none', fake_loss='denoise+gan'), "needs gan='fake_head'"),
    (dict(fake_train_on='random'), 'fake_train_on must be'),
    (dict(ema_inject=1.0), r'ema_inject must be None or in \[0, 1\)'),
    (dict(ema_inject=-0.1), 'ema_inject must be'),
    (dict(gan_loss='wgan'), 'gan_loss must be one of'),
    (dict(normaliser='median'), 'normaliser must be one of'),
    (dict(dm_steps=(999, 249), adv_step=249), 'every dm_step must come before adv_step'),
    pytest.param(dict(dm_steps=(999, 500)), r'dm_steps \(999, 500\) must be student timesteps'),
    pytest.param(dict(adv_step=250), 'adv_step 250 must be a student timestep'),
])
def test_config_validation_errors(kw, msg):
    with pytest.raises(ValueError, match=msg): DistillConfig(**kw)

def test_config_valid_edges():
    assert DistillConfig(ema_inject=0.0).ema_inject == 0.0 and DistillConfig(ema_inject=None).ema_inject is None
    DistillConfig(split=False, dm_steps=(5,), adv_step=3)     # without the split, dm_steps and adv_step are unused
    cfg = DistillConfig(dm_steps=[999], student_timesteps=[999, 499], adv_step=499)
    assert cfg.dm_steps == (999,) and cfg.student_timesteps == (999, 499)    # lists become tuples
    DistillConfig(gan='fake_head', fake_loss='denoise+gan')

def test_preset_overrides_do_not_leak():
    before = {k: dict(v) for k, v in PRESETS.items()}
    assert preset('flash', ttur=4, batch=8).ttur == 4
    assert PRESETS == before and preset('flash').ttur == 1
    with pytest.raises(KeyError, match='choose one of'): preset('qqqqqq')

def test_loss_map_of_presets():
    assert loss_map(preset('dmd')) == {999: ['DM', 'regression']}                 # DMD v1: one step
    assert loss_map(preset('dmd-4step')) == {999: ['DM', 'regression'], 749: ['DM'], 499: ['DM'], 249: ['DM']}
    assert all(v == ['DM', 'GAN'] for v in loss_map(preset('dmd2')).values())
    assert all(v == ['DM', 'Pixel-GAN'] for v in loss_map(preset('dmd2+A')).values())
    assert loss_map(preset('flash'))[749] == ['DM']

# --- pass counting -------------------------------------------------------------------------------------------------
def test_pass_counter_forward_backward_and_pause():
    lin = nn.Linear(3, 1)
    pc = PassCounter(lin=lin)
    lin(torch.randn(5, 3)).sum().backward()                            # 5 forward, 5 backward
    with torch.no_grad(): lin(torch.randn(7, 3))                       # 7 forward, no graph
    lin(torch.randn(4, 3))                                             # 4 forward, graph never used
    with pc.paused():
        lin(torch.randn(11, 3)).sum().backward()                       # not counted at all
    assert pc.forward == {'lin': 16} and pc.backward == {'lin': 5} and pc.total == 21
    frozen = nn.Linear(3, 1).requires_grad_(False)
    pc2 = PassCounter(f=frozen)
    frozen(torch.randn(2, 3)).sum()                                    # frozen net, input without grad: no backward
    x = torch.randn(6, 3, requires_grad=True)
    frozen(x).sum().backward()                                         # backward through a frozen net to its input counts
    assert pc2.forward == {'f': 8} and pc2.backward == {'f': 6}
    pc.remove()
    lin(torch.randn(9, 3)).sum().backward()
    assert pc.total == 21

def test_pass_counter_backward_hook_registered_while_active_only():
    lin = nn.Linear(2, 2)
    pc = PassCounter(lin=lin)
    with pc.paused(): out = lin(torch.randn(3, 2))
    out.sum().backward()                                               # forward was paused: its backward is not counted
    assert pc.total == 0
    out = lin(torch.randn(4, 2))
    with pc.paused(): out.sum().backward()                             # forward counted while active: so is its backward
    assert pc.forward['lin'] == 4 and pc.backward['lin'] == 4

def test_pass_counter_nested_pause():
    lin = nn.Linear(2, 2)
    pc = PassCounter(lin=lin)
    with pc.paused():
        with pc.paused(): pass
        lin(torch.randn(3, 2))
    assert pc.total == 0

# --- the Distiller ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', list(PRESETS))
def test_every_preset_runs_and_costs_add_up(teacher, name):
    cfg = preset(name, batch=B, n_regression_pairs=64)
    d = toy_distiller(cfg, teacher, 'grid25')
    outs = [d.step() for _ in range(3)]
    gen_its = [i for i in range(3) if i % cfg.ttur == 0]
    assert [o['it'] for o in outs] == [0, 1, 2] and [i for i, o in enumerate(outs) if 'dm' in o] == gen_its
    assert all(math.isfinite(v) for o in outs for k, v in o.items() if k in ('fake', 'd', 'dm', 'adv', 'reg'))
    c = d.cost()
    assert c['iterations'] == c['critic_updates'] == 3 and c['generator_updates'] == len(gen_its)
    assert c['batch_x_gen_iters'] == B * c['generator_updates'] and c['train_seconds'] > 0
    assert c['passes'] == sum(c['passes_by_net'].values()) > 0
    assert set(c['passes_by_net']) == {'student', 'fake', 'teacher'} | ({'disc'} if cfg.gan != 'none' else set())
    # the teacher (real score, guidance 1) runs once per generator update, without a backward pass
    assert d.passes.forward['teacher'] == B * c['generator_updates'] and d.passes.backward['teacher'] == 0

def test_flow_teacher_runs():
    flow = load_teacher(TeacherConfig('grid25', 'flow', hidden=32, depth=2, steps=50, batch=64), 0)
    d = short(flow, 'flash', 2)
    assert d.fake_target == 'flow' and d.cost()['generator_updates'] == 2

def test_fake_train_on_per_step_runs(teacher):
    d = short(teacher, 'flash', 3, fake_train_on='per_step')
    assert d.cost()['critic_updates'] == 3 and all(math.isfinite(o['fake']) for o in d.log)

def test_custom_student_timesteps(teacher):
    d = short(teacher, 'flash', 4, student_timesteps=(999, 499), dm_steps=(999,), adv_step=499)
    assert {o['dm_t'] for o in d.log} == {999} and {o['adv_t'] for o in d.log} == {499}

def test_unconditional_pixel_gan_and_r1(teacher):
    d = short(teacher, 'flash', 2, cond_gan=False, r1=1.0)
    assert d.disc.cond is None and len(d.disc.trainable_parameters()) == 3 * 4
    assert all(math.isfinite(o['d']) for o in d.log)

def test_distiller_missing_parts_are_errors(teacher):
    with pytest.raises(ValueError, match='regression_pairs'):
        Distiller(preset('dmd', batch=B), teacher, teacher.schedule, real_batch)
    with pytest.raises(ValueError, match='disc_backbone'):
        Distiller(preset('flash', batch=B), teacher, teacher.schedule, real_batch)
    Distiller(preset('dmd', batch=B, regression_weight=0.0), teacher, teacher.schedule, real_batch)   # no pairs needed

def test_dmd_preset_uses_regression_pairs(teacher):
    d = toy_distiller(preset('dmd', batch=B, n_regression_pairs=64), teacher, 'grid25')
    z, c, y = d.regression_pairs
    assert z.shape == y.shape == (64, 2) and c.shape == (64,)
    assert torch.allclose(y, sample_teacher(teacher, z, c, teacher.schedule, 50))   # the teacher's ODE output from z
    out = d.step()
    assert out['reg'] > 0 and 'adv' not in out and d.disc is None
    assert 'reg' not in short(teacher, 'dmd', 1, regression_weight=0.0).log[0]

def test_generator_step_moves_only_the_student(teacher):
    d = toy_distiller(preset('dmd2', batch=B, ttur=1), teacher, 'grid25')   # ema off; GAN loss reads the fake's features
    s0, f0, t0, d0 = snap(d.student), snap(d.fake), snap(d.teacher), snap(d.disc)
    out = d.generator_step()
    assert 'dm' in out and 'adv' in out
    assert not same(s0, d.student) and same(f0, d.fake) and same(t0, d.teacher) and same(d0, d.disc)
    s1 = snap(d.student)
    d.critic_step()
    assert same(s1, d.student) and not same(f0, d.fake) and not same(d0, d.disc) and same(t0, d.teacher)
    assert same(t0, teacher) and not any(p.requires_grad for p in teacher.parameters())

def test_ema_inject_after_generator_step(teacher):
    d = toy_distiller(preset('flash', batch=B, ema_inject=0.5), teacher, 'grid25')
    d.critic_step()                                                    # the fake score now differs from the student
    f0 = snap(d.fake)
    d.generator_step()
    for p0, pf, ps in zip(f0, d.fake.parameters(), d.student.parameters()):
        assert torch.allclose(pf, 0.5 * p0 + 0.5 * ps, atol=1e-6)

def _after_one_critic_step(teacher, **kw):
    d = toy_distiller(preset('dmd2', batch=B, **kw), teacher, 'grid25')
    d0 = snap(d.disc)
    d.critic_step()
    return snap(d.fake), same(d0, d.disc)

def test_fake_head_gan_trains_the_fake_only_with_denoise_plus_gan(teacher):
    f_off, disc_still_off = _after_one_critic_step(teacher, fake_loss='denoise', w_d=0.0)
    f_on, disc_still_on = _after_one_critic_step(teacher, fake_loss='denoise', w_d=100.0)
    assert all(torch.equal(a, b) for a, b in zip(f_off, f_on))         # 'denoise': the D loss never reaches the fake score
    assert disc_still_off and not disc_still_on                        # ... but it does train the head
    g_off, _ = _after_one_critic_step(teacher, fake_loss='denoise+gan', w_d=0.0)
    g_on, _ = _after_one_critic_step(teacher, fake_loss='denoise+gan', w_d=100.0)
    assert all(torch.equal(a, b) for a, b in zip(f_off, g_off))
    assert not all(torch.equal(a, b) for a, b in zip(g_off, g_on))     # 'denoise+gan': it does

def test_distillers_sharing_a_teacher_count_separately(teacher):
    d1 = short(teacher, 'flash', 2)
    before = d1.cost()
    d2 = short(teacher, 'flash', 2)
    assert d2.cost()['passes_by_net'] == before['passes_by_net']      # same seed, same work
    assert d1.cost()['passes_by_net'] == before['passes_by_net']      # and the first run's cost is unchanged

# --- run_toy ---------------------------------------------------------------------------------------------------------
def test_run_toy_curve(teacher):
    rows = []
    dist, curve = run_toy(preset('flash', batch=B), teacher, 'grid25', iters=4, eval_every=3, n_eval=200,
                          callback=lambda d, row: rows.append(row))
    assert [r['iterations'] for r in curve] == [0, 3, 4] and rows == curve and dist.it == 4
    keys = {'swd', 'precision', 'recall', 'mode_precision', 'coverage', 'passes', 'batch_x_gen_iters', 'train_seconds'}
    assert all(keys <= set(r) and 'coverage_per_class' not in r for r in curve)
    first, last = curve[0], curve[-1]
    assert first['passes'] == 0 and first['batch_x_gen_iters'] == 0 and first['train_seconds'] == 0   # evaluation is not counted
    assert last['batch_x_gen_iters'] == 4 * B and last['passes'] == dist.cost()['passes']
    assert curve[1]['passes'] < last['passes'] and 0 <= last['coverage'] <= 1 and last['swd'] > 0

def test_run_toy_zero_iterations(teacher):
    dist, curve = run_toy(preset('dmd2+A', batch=B), teacher, 'grid25', iters=0, n_eval=100)
    assert len(curve) == 1 and curve[0]['iterations'] == 0 and dist.log == []


# --- faithful presets and honest names -----------------------------------------------------------------------------
def test_presets_do_what_their_methods_do():
    assert preset('dmd').student_timesteps == (999,) and preset('dmd').regression_weight > 0     # DMD v1 is one-step
    assert len(preset('dmd-4step').student_timesteps) == 4
    for name in ('dmd2', 'dmd2+A', 'dmd2+B'):                    # DMD2 trains its critics on per-step generator outputs
        assert preset(name).fake_train_on == 'per_step', name
    assert preset('dmd2-final').fake_train_on == 'final'
    assert preset('dmd2').ttur == 5 and preset('dmd2').fake_loss == 'denoise+gan' and not preset('dmd2').split
    assert preset('flash').fake_train_on == 'final' and preset('flash').split and preset('flash').ttur == 1
    assert all(preset(n).student_ema is not None for n in PRESETS)   # every method is evaluated through a student EMA

def test_per_step_critic_trains_on_outputs_at_every_step(teacher):
    "DMD2's critics see the generator's output at a random backward-simulated step, not only final samples."
    d = toy_distiller(preset('dmd2', batch=8), teacher, 'grid25')
    seen = []
    real_step = __import__('flash_dmd.distill', fromlist=['student_step']).student_step
    import flash_dmd.distill as D
    D.student_step = lambda m, x, t, c, s: (seen.append(t), real_step(m, x, t, c, s))[1]
    try:
        for _ in range(30): d.student_samples(d.noise(8), d.sample_cond(8))
    finally: D.student_step = real_step
    assert set(seen) == set(d.cfg.student_timesteps)

def test_student_ema_follows_the_student(teacher):
    d = toy_distiller(preset('flash', batch=16, student_ema=0.9), teacher, 'grid25')
    assert d.eval_student is d.student_ema and all(not p.requires_grad for p in d.student_ema.parameters())
    for _ in range(20): d.step()
    s, e, t0 = (torch.cat([p.flatten() for p in m.parameters()]) for m in (d.student, d.student_ema, teacher))
    assert 0 < (e - t0).norm() and (e - s).norm() < (t0 - s).norm()        # between the teacher and the student
    assert not torch.equal(e, s)
    off = toy_distiller(preset('flash', batch=16, student_ema=None), teacher, 'grid25')
    assert off.student_ema is None and off.eval_student is off.student
    d.start_from_ema()
    assert torch.equal(torch.cat([p.flatten() for p in d.student.parameters()]), e)

def test_student_ema_none_reproduces_the_run_without_it(teacher):
    a = toy_distiller(preset('flash', batch=16, student_ema=None), teacher, 'grid25')
    b = toy_distiller(preset('flash', batch=16, student_ema=0.99), teacher, 'grid25')
    for _ in range(5): a.step(); b.step()
    assert all(torch.equal(p, q) for p, q in zip(a.student.parameters(), b.student.parameters()))

def test_lr_schedule():
    from flash_dmd.distill import lr_factor
    c = DistillConfig(lr_schedule='cosine', lr_warmup=10, lr_horizon=110, lr_min=0.1)
    assert lr_factor(c, 0) == pytest.approx(0.1) and lr_factor(c, 9) == pytest.approx(1.0)
    assert lr_factor(c, 60) == pytest.approx(0.55) and lr_factor(c, 110) == pytest.approx(0.1) and lr_factor(c, 500) == pytest.approx(0.1)
    assert lr_factor(DistillConfig(), 1000) == 1.0
    with pytest.raises(ValueError, match='lr_horizon'): DistillConfig(lr_schedule='cosine')

def test_cost_in_the_papers_unit(teacher):
    d = toy_distiller(preset('dmd2', batch=8), teacher, 'grid25')
    for _ in range(10): d.step()
    c = d.cost()
    assert c['batch_x_iters'] == 80 and c['batch_x_gen_iters'] == 16 and c['generator_updates'] == 2

def test_health_signals_are_logged(teacher):
    from flash_dmd.distill import HEALTH_SIGNALS, health
    d = toy_distiller(preset('flash', batch=8), teacher, 'grid25')
    for _ in range(3): d.step()
    h = health(d.log)
    assert set(h) == set(HEALTH_SIGNALS) and all(math.isfinite(v) for v in h.values())
