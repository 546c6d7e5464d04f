import os, pytest

# Offline before anything imports huggingface_hub: it reads HF_HUB_OFFLINE once, at import, so setting it in a fixture
# comes too late for modules imported at collection (a hub name that is not cached then retries the network for ~45 s).
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['TRANSFORMERS_OFFLINE'] = '1'

@pytest.fixture(autouse=True)
def _offline_and_private_cache(tmp_path_factory, monkeypatch):
    "Every test (offline since the top of this file) uses a teacher cache of its own session, never the user's."
    monkeypatch.setenv('FLASH_DMD_CACHE', str(tmp_path_factory.getbasetemp() / 'cache'))
