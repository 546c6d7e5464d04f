"The digits scale: the shipped teacher, the distiller for every preset, data parallel shards, Stage 2, and the benchmark's --quick run."
import configparser
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from flash_dmd.rewards import x0_reward

from flash_dmd.digits import (DigitsTeacherConfig, TEACHER_ASSET, digits_teacher_meta, load_digits_teacher, digits_preset,
                              digits_distiller, digits_split, ink_reward, DigitsUNet)
from flash_dmd.distill import PRESETS
from flash_dmd.rl import JointTrainer, rl_preset
from test_benchmarks import run_quick

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def teacher(): return load_digits_teacher()

def test_shipped_teacher_is_small_and_made_with_the_defaults(teacher):
    assert TEACHER_ASSET.stat().st_size < 2 * 2**20
    meta = digits_teacher_meta()
    assert DigitsTeacherConfig(**meta['config']) == DigitsTeacherConfig() and meta['seed'] == 0
    assert isinstance(teacher, DigitsUNet) and not any(p.requires_grad for p in teacher.parameters())

def test_teacher_asset_is_package_data():
    "setup.py ships flash_dmd/assets/* (package_data), so a wheel carries the teacher."
    text = (ROOT / 'setup.py').read_text()
    assert "'assets/*'" in text and 'package_data' in text

@pytest.mark.parametrize('name', sorted(PRESETS))
def test_every_preset_trains_on_digits(name, teacher):
    d = digits_distiller(digits_preset(name, batch=4, n_regression_pairs=8), teacher)
    for _ in range(2): out = d.step()
    assert d.x_shape == (1, 8, 8) and all(v == v for v in out.values() if isinstance(v, float))
    assert d.cost()['batch_x_gen_iters'] == 4 * d.gen_updates

def test_data_parallel_shards_match_one_process(teacher):
    "Two ranks with batch 2 draw exactly the real batches of one process with batch 4."
    full = digits_distiller(digits_preset('flash', batch=4), teacher)
    shards = [digits_distiller(digits_preset('flash', batch=2), teacher, rank=r, world=2) for r in range(2)]
    xs = [d.real_batch(2, torch.Generator().manual_seed(5))[0] for d in shards]
    assert torch.equal(torch.cat(xs), full.real_batch(4, torch.Generator().manual_seed(5))[0])

def test_distiller_rejects_a_non_digits_teacher():
    from flash_dmd.toy import ToyDenoiser
    from flash_dmd.schedules import VPSchedule
    with pytest.raises(ValueError, match='10-class digits teacher'):
        digits_distiller(digits_preset('flash'), ToyDenoiser(VPSchedule.scaled_linear(), 5))

def test_joint_rl_runs_on_images(teacher):
    d = digits_distiller(digits_preset('flash', batch=4), teacher)
    jt = JointTrainer(rl_preset('flash+rl', batch=4), d, x0_reward(teacher, ink_reward()), ink_reward())
    jt.step()
    assert jt.rl_updates == 5 and d.it == 1 and set(jt.rl_t) <= {999, 749}

def test_digits_quick_writes_json_and_png(tmp_path):
    res = run_quick('digits', tmp_path)
    assert {'dmd2', 'flash', 'flash-stable'} <= set(res['summary']) and 'stage2_summary' not in res   # Stage 2: stage2_digits.py
    for s in res['summary'].values():
        assert s['n_seeds'] + s['n_diverged'] == 1
        for k in ('fd', 'raw_fd', 'accuracy', 'diversity', 'precision', 'recall', 'saturation', 'batch_x_iters', 'batch_x_gen_iters', 'passes', 'train_seconds'):
            assert set(s[k]) == {'mean', 'std'}
    # the targets are computed from the JSON: teacher ratio, the teacher's own 4-step sampler, the cost in the paper's unit
    assert {'within_teacher_target', 'beats_teacher_4_steps', 'cost_ratio_batch_x_iters', 'fd_over_teacher_50'} <= set(res['targets'])
    assert res['config']['cost_unit'] == 'batch x training iterations'
    assert {'real', 'teacher_4_steps', 'teacher_50_steps'} <= set(res['references'])
    d2 = next(r for r in res['runs'] if r['method'] == 'dmd2')['curve'][-1]
    assert d2['generator_updates'] == -(-d2['iterations'] // 5)         # TTUR 5: generator on iterations 0, 5, ...
    assert res['wall_seconds'] > 0
