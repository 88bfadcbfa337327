"""`fake_hub`: a local Hub (tests/hub/fakehub.py) with the real huggingface_hub, datasets and
transformers pointed at it in this process, every cache in tmp_path, online, with a dummy token.

The environment variables alone are not enough in-process: `tests/conftest.py` sets
HF_HUB_OFFLINE=1 before anything is imported, and these libraries copy the environment into
module constants at import time. So the fixture sets the env vars (for anything read per call,
like HF_TOKEN in `utils._auth.get_token`, and for subprocesses) AND patches every copy:

- `huggingface_hub.constants`: ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE (hf_hub_url), HF_HUB_OFFLINE
  (read per request by `utils._http` and `is_offline_mode()`, which transformers uses),
  HF_HUB_DISABLE_XET (read per call by `is_xet_available()`), the cache/token paths.
- `huggingface_hub.hf_api.api.endpoint`: the module-level `HfApi()` behind `huggingface_hub.
  upload_folder`, `create_repo`, `list_repo_files`, ... took `constants.ENDPOINT` when imported.
- `datasets.config`: HF_ENDPOINT, HUB_DATASETS_URL, HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, the
  cache paths, HF_UPDATE_DOWNLOAD_COUNTS (it would ping the Hub on every load).
- `HfFileSystem`'s instance cache is cleared before and after, so no instance (and no directory
  listing it cached) from another test or another port is reused; `huggingface_hub.hffs` (an
  instance made at import) is replaced; `parse_hf_uri`'s lru_cache is cleared.
- `transformers.utils.hub._hf_api`: transformers makes one shared HfApi on first use and keeps it,
  with the endpoint of that moment; it is reset before and after, so the next test's port is used.
  Otherwise transformers reads `huggingface_hub.constants` per call.
"""

from __future__ import annotations

import sys

import pytest

from tests.hub.fakehub import FakeHub, hub_env_vars


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A started FakeHub; `fake_hub.endpoint`, `fake_hub.token`, `fake_hub.commits(...)`."""
    import datasets.config
    import huggingface_hub.constants as hc
    import huggingface_hub.hf_api
    import huggingface_hub.hf_file_system
    from huggingface_hub import HfFileSystem

    home = tmp_path / "hf_home"
    with FakeHub(tmp_path / "fakehub_store") as hub:
        for k, v in hub_env_vars(hub, home).items():
            monkeypatch.setenv(k, v)
        for k in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HUGGINGFACE_HUB_CACHE"):
            monkeypatch.delenv(k, raising=False)
        for name, value in {
            "ENDPOINT": hub.endpoint,
            "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HUB_OFFLINE": False, "HF_HUB_DISABLE_XET": True, "HF_HUB_DISABLE_TELEMETRY": True,
            "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HUGGINGFACE_HUB_CACHE": str(home / "hub"),
            "HF_ASSETS_CACHE": str(home / "assets"), "HF_XET_CACHE": str(home / "xet"),
            "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        }.items():
            monkeypatch.setattr(hc, name, value)
        monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.endpoint)
        cache = home / "datasets"
        for name, value in {
            "HF_ENDPOINT": hub.endpoint,
            "HUB_DATASETS_URL": hub.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "HF_HUB_OFFLINE": False, "HF_DATASETS_OFFLINE": False, "HF_UPDATE_DOWNLOAD_COUNTS": False,
            "HF_CACHE_HOME": str(home), "HF_DATASETS_CACHE": cache, "HF_MODULES_CACHE": home / "modules",
            "DOWNLOADED_DATASETS_PATH": cache / "downloads",
            "EXTRACTED_DATASETS_PATH": cache / "downloads" / "extracted",
        }.items():
            monkeypatch.setattr(datasets.config, name, value)
        _forget_clients()
        monkeypatch.setattr(huggingface_hub.hf_file_system, "hffs", HfFileSystem())
        try:
            yield hub
        finally:
            _forget_clients()


def _forget_clients() -> None:
    """Drop the client objects that remember an endpoint (see the module docstring)."""
    from huggingface_hub import HfFileSystem
    from huggingface_hub.utils._hf_uris import parse_hf_uri

    HfFileSystem.clear_instance_cache()
    parse_hf_uri.cache_clear()
    if "transformers.utils.hub" in sys.modules:
        sys.modules["transformers.utils.hub"]._hf_api = None


@pytest.fixture
def hub_offline(monkeypatch):
    """Switch the in-process clients to offline mode (HF_HUB_OFFLINE=1) within a `fake_hub` test."""
    import datasets.config
    import huggingface_hub.constants as hc

    def go_offline():
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)

    return go_offline
