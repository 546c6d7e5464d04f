"Tests of flash_dmd.toy: datasets, the denoiser, teacher training and caching, metrics."
import math, warnings, pytest, torch
from flash_dmd.schedules import denoising_loss
from flash_dmd.toy import (TOY_DATASETS, make_toy, ToyDenoiser, TeacherConfig, train_teacher, load_teacher, cache_dir,
                           teacher_key, teacher_samples, make_schedule, sliced_wasserstein, energy_distance,
                           mode_stats, precision_recall, toy_metrics, balanced_labels)

SMALL = TeacherConfig('grid25', 'vp', hidden=32, depth=2, steps=40, batch=64)

@pytest.mark.parametrize('name', TOY_DATASETS)
def test_datasets_seeded_balanced_normalised(name):
    d = make_toy(name, 20000, seed=1)
    assert d.x.shape == (20000, 2) and d.y.dtype == torch.long and d.y.max() == d.n_classes - 1
    assert torch.equal(make_toy(name, 100, seed=5).x, make_toy(name, 100, seed=5).x)
    assert abs(d.x.std(0).mean() - 1) < 0.05 and d.x.mean(0).abs().max() < 0.05   # isotropic scaling keeps the shape
    counts = torch.bincount(d.y, minlength=d.n_classes).float()
    assert counts.min() / counts.max() > 0.8
    if d.is_mixture:   # points really come from their class's modes
        near = torch.cdist(d.x, d.modes).argmin(1)
        assert (d.mode_class[near] == d.y).float().mean() > 0.99

def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match='circle8'): make_toy('swiss', 3)
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"): make_schedule('cosine')

@pytest.mark.parametrize('sched', ['vp', 'flow'])
def test_denoiser_predicts_x0_via_native_target(sched):
    s = make_schedule(sched)
    m = ToyDenoiser(s, 3, hidden=16, depth=1)
    x, t, c = torch.randn(4, 2), torch.tensor([0., 10., 500., 999.]), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(m(x, t, c), s.to_x0(x, t, m.raw(x, t, c), m.pred))
    assert m.pred == ('flow' if sched == 'flow' else 'v')

def test_training_lowers_the_loss_and_is_deterministic():
    cfg = TeacherConfig('moons', 'vp', hidden=64, depth=2, steps=300, batch=256)
    g = torch.Generator().manual_seed(0)
    d = make_toy('moons', 2048, seed=0)
    init = ToyDenoiser(make_schedule('vp'), 2, hidden=64, depth=2)
    m = train_teacher(cfg, seed=3)
    with torch.no_grad():
        before = sum(denoising_loss(init, d.x, d.y, init.schedule, init.pred, torch.Generator().manual_seed(i)).item() for i in range(5))
        after = sum(denoising_loss(m, d.x, d.y, m.schedule, m.pred, torch.Generator().manual_seed(i)).item() for i in range(5))
    assert after < 0.7 * before
    m2 = train_teacher(cfg, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    m3 = train_teacher(cfg, seed=4)
    assert not all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m3.state_dict().values()))
    assert not any(p.requires_grad for p in m.parameters())

def test_cache_hit_miss_and_corrupt_file():
    path = cache_dir() / f"{teacher_key(SMALL, 0)}.safetensors"
    path.unlink(missing_ok=True)
    a = load_teacher(SMALL, 0)
    assert path.exists() and not list(path.parent.glob('*.tmp'))
    mtime = path.stat().st_mtime_ns
    b = load_teacher(SMALL, 0)
    assert path.stat().st_mtime_ns == mtime                       # a hit does not rewrite
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    path.write_bytes(b'\x00garbage')
    with pytest.warns(UserWarning, match='unreadable'): c = load_teacher(SMALL, 0)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    assert teacher_key(SMALL, 0) != teacher_key(TeacherConfig(**{**SMALL.__dict__, 'lr': 1e-3}), 0)

def test_teacher_samples_shapes_labels_and_guidance():
    m = load_teacher(SMALL, 0)
    x, y = teacher_samples(m, 50, n_steps=4, w=1.0, seed=1)
    assert x.shape == (50, 2) and torch.equal(y, balanced_labels(50, 5))
    x2, _ = teacher_samples(m, 50, n_steps=4, w=1.0, seed=1)
    x3, _ = teacher_samples(m, 50, n_steps=4, w=3.0, seed=1)
    assert torch.equal(x, x2) and not torch.allclose(x, x3)

def test_swd_known_answers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 2, generator=g)
    assert sliced_wasserstein(a, a) == 0
    d = torch.tensor([1., 0.])
    assert abs(sliced_wasserstein(a, a + d, n_proj=5000) - 2 / math.pi) < 0.03
    # 1-D: W1 between N(0,1) and N(m,1) is |m|; unequal sizes use quantiles
    x, y = torch.randn(4000, 1, generator=g), torch.randn(3000, 1, generator=g) + 2
    assert abs(sliced_wasserstein(x, y) - 2) < 0.1
    assert abs(sliced_wasserstein(x, y) - sliced_wasserstein(y, x)) < 1e-9

def test_energy_distance_known_answers():
    assert abs(energy_distance(torch.zeros(10, 2), torch.full((12, 2), 1.)) - 2 * math.sqrt(2)) < 1e-9
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)
    assert energy_distance(a, b) < 0.01 < energy_distance(a, b * 2)

def test_mode_stats_counts_collapse_and_wrong_classes():
    d = make_toy('grid25', 5000, seed=2)
    full = mode_stats(d.x, d.y, d)
    assert full['mode_precision'] > 0.98 and full['coverage'] == 1.0 and len(full['coverage_per_class']) == 5
    keep = torch.zeros(len(d.x), dtype=torch.bool)
    for c in range(5):   # keep only the first two modes of each class: coverage 2/5
        modes_c = (d.mode_class == c).nonzero().flatten()[:2]
        keep |= (torch.cdist(d.x, d.modes).argmin(1)[:, None] == modes_c[None]).any(1) & (d.y == c)
    assert abs(mode_stats(d.x[keep], d.y[keep], d)['coverage'] - 0.4) < 1e-6
    far = mode_stats(d.x + 0.5, d.y, d)                             # half-way between modes: off every mode
    assert far['mode_precision'] < 0.01
    with pytest.raises(ValueError, match='needs a mixture'): mode_stats(d.x, d.y, make_toy('moons', 10))

def test_precision_recall_known_answers():
    d = make_toy('circle8', 3000, seed=3)
    assert precision_recall(d.x, d.x) == (1.0, 1.0)
    assert precision_recall(d.x, d.x + 20) == (0.0, 0.0)
    p, r = precision_recall(d.x, d.x[d.y < 2])                      # 2 of 8 modes
    assert p > 0.95 and 0.15 < r < 0.35
    p, r = precision_recall(d.x, torch.randn(3000, 2) * 3)          # diffuse: recall high, precision low
    assert r > 0.8 and p < 0.5

def test_toy_metrics_keys():
    d, e = make_toy('grid25', 1000, seed=0), make_toy('grid25', 1000, seed=1)
    m = toy_metrics(e.x, e.y, d)
    assert {'swd', 'energy', 'precision', 'recall', 'mode_precision', 'coverage'} <= set(m)
    assert 'coverage' not in toy_metrics(e.x, e.y, make_toy('moons', 1000, seed=0))
