"""Repository-wide pytest setup (the claims plugin itself is registered by the package's
``pytest11`` entry point, so it is active wherever interp-claims is installed).

Models load offline: no test or claim may reach a model hub, so the hub clients are told so
before anything imports them. A user can still point a claim at a model in the local cache.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
