import os, pytest

@pytest.fixture(autouse=True)
def _offline_and_private_cache(tmp_path_factory, monkeypatch):
    "Every test runs offline, with a teacher cache of its own session (never the user's)."
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('FLASH_DMD_CACHE', str(tmp_path_factory.getbasetemp() / 'cache'))
