"Every config in scaled_runs/ loads and validates; the launch scripts refuse what they cannot run, with a message."
import os, subprocess
from pathlib import Path
import pytest
from flash_dmd.train import load_config

ROOT = Path(__file__).resolve().parents[1]
NEEDS = {'sdxl_rl.yaml': ['reward_model=x0:brightness']}

@pytest.mark.parametrize('name', sorted(p.name for p in (ROOT / 'scaled_runs').glob('*.yaml')))
def test_configs_load(name):
    cfg = load_config(ROOT / 'scaled_runs' / name, NEEDS.get(name, []))
    cfg.distill_config()                                       # preset + overrides resolve
    assert cfg.max_steps > 0 and cfg.output_dir

def test_stage2_config_is_the_papers_schedule():
    cfg = load_config(ROOT / 'scaled_runs' / 'sdxl_rl.yaml', NEEDS['sdxl_rl.yaml'])
    from flash_dmd.rl import rl_preset
    r = rl_preset(cfg.rl_method, **cfg.rl)
    assert (cfg.stage, r.rl_ratio, r.rl_steps, r.k, r.distill, r.gan) == (2, 5, (999, 749), 4, True, True)
    assert (r.beta, r.ratio_clip) == (500., None)                # LPO's beta, on the per-dimension log-ratio
    with pytest.raises(ValueError, match="'x0:side' scores toy points"):
        load_config(ROOT / 'scaled_runs' / 'sdxl_rl.yaml')

def test_sdxl_rl_script_asks_for_a_reward():
    r = subprocess.run(['bash', str(ROOT / 'scaled_runs' / 'sdxl_rl.sh'), 'max_steps=1'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'give reward_model=' in r.stderr
