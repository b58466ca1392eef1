"""Loading SAEs: a folder in sae-lens' format, or a released SAE from the local Hugging Face cache.

    load_sae(path)              ``SAE.load_from_disk``: a folder with ``cfg.json`` and
                                ``sae_weights.safetensors`` (what ``SAE.save_model`` writes)
    load_sae(release, sae_id)   ``SAE.from_pretrained``, offline: a release of sae-lens'
                                directory (``gemma-scope-2b-pt-res-canonical``,
                                ``layer_12/width_16k/canonical``) or a Hub repo id and folder

Nothing is downloaded: while a release loads, huggingface_hub runs in offline mode (its
``HF_HUB_OFFLINE`` switch, restored afterwards), so an SAE that is not in the cache fails at
once with a `ModelLoadError` that says how to provide it, instead of waiting on the network.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from harness.errors import ModelLoadError

__all__ = ["load_sae"]

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"


def load_sae(spec: str | os.PathLike, sae_id: str | None = None, *, device: str = "cpu",
             dtype: str | None = None) -> Any:
    """A sae-lens ``SAE`` from a local folder (`sae_id` None) or a release and SAE id (offline).

    Example::

        sae = load_sae("/models/saes/gemma-l12")                                  # SAE.save_model output
        sae = load_sae("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
        sae = load_sae("gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")   # the same, one string

    One string that is not an existing folder, does not start with ``.``, ``/`` or ``~`` and
    holds a ``/`` is ``RELEASE/SAE_ID`` (release names have no ``/``): the form
    ``--claims-sae`` takes.

    `dtype` is a sae-lens dtype string ("float32", "bfloat16"); None keeps the folder's
    (``float32`` for releases). The SAE's ``W_dec`` is ``[d_sae, d_in]``, ``W_enc``
    ``[d_in, d_sae]``. Raises `ModelLoadError` for a folder that does not exist or lacks
    ``cfg.json`` / ``sae_weights.safetensors`` or cannot be read, an unknown release or SAE id,
    and a release that is not in the local Hugging Face cache (the message says how to get it
    there or which folder to pass instead).
    """
    if sae_id is None:
        release, sae_id = _release_form(spec)
        if sae_id is None:
            return _load_folder(spec, device=device, dtype=dtype)
        return _load_release(release, sae_id, device=device, dtype=dtype)
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"`spec` must be a release name or Hub repo id when `sae_id` is given, got {spec!r}")
    if not isinstance(sae_id, str) or not sae_id.strip():
        raise ModelLoadError("`sae_id` must be a non-empty string such as 'layer_12/width_16k/canonical', "
                             f"got {sae_id!r}")
    return _load_release(spec.strip(), sae_id.strip(), device=device, dtype=dtype)


def _release_form(spec: str | os.PathLike) -> tuple[str, str | None]:
    """``(release, sae_id)`` when `spec` reads as ``RELEASE/SAE_ID``, else ``(spec, None)``."""
    text = os.fspath(spec)
    if (not isinstance(spec, str) or os.path.exists(os.path.expanduser(text)) or text.startswith((".", "/", "~"))
            or "/" not in text.strip("/")):
        return text, None
    release, _, sae_id = text.strip().partition("/")
    return release, sae_id


def _load_folder(spec: str | os.PathLike, *, device: str, dtype: str | None) -> Any:
    path = Path(os.path.expanduser(os.fspath(spec)))
    if not path.is_dir():
        hint = (" (to load a released SAE, give its SAE id too: load_sae(release, sae_id))"
                if not path.exists() and "/" not in os.fspath(spec) else "")
        raise ModelLoadError(f"SAE folder {str(path)!r} does not exist; pass a folder that holds "
                             f"{CFG_FILENAME} and {WEIGHTS_FILENAME}{hint}")
    missing = [name for name in (CFG_FILENAME, WEIGHTS_FILENAME) if not (path / name).is_file()]
    if missing:
        present = sorted(p.name for p in path.iterdir())[:8]
        raise ModelLoadError(
            f"SAE folder {str(path)!r} has no {' and no '.join(missing)} (it holds {present}); an SAE in "
            f"sae-lens' format is a folder with {CFG_FILENAME} and {WEIGHTS_FILENAME}, as written by "
            "SAE.save_model(path) (or train_sae(..., path=...))"
        )
    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(path), device=device, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ModelLoadError(f"could not load the SAE in {str(path)!r} with sae-lens: "
                             f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def _load_release(release: str, sae_id: str, *, device: str, dtype: str | None) -> Any:
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory, get_repo_id_and_folder_name

    directory = get_pretrained_saes_directory()
    if release not in directory and "/" not in release:
        close = [r for r in directory if release.lower() in r.lower()][:5]
        raise ModelLoadError(f"SAE release {release!r} is not in sae-lens' directory of released SAEs"
                             f"{f'; close names: {close}' if close else ''}; pass a release name, a Hub repo id "
                             "(owner/name) with a folder as `sae_id`, or a local folder alone")
    if release in directory and sae_id not in directory[release].saes_map:
        ids = list(directory[release].saes_map)
        close = [i for i in ids if sae_id.split("/")[0] in i][:5] or ids[:5]
        raise ModelLoadError(f"SAE id {sae_id!r} is not in release {release!r} ({len(ids)} ids, e.g. {close})")
    repo_id, folder = get_repo_id_and_folder_name(release, sae_id)
    try:
        with _hub_offline():
            return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype or "float32")
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelLoadError(_missing_message(release, sae_id, repo_id, folder, err)) from None


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode for the duration (it reads the switch at each request)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _missing_message(release: str, sae_id: str, repo_id: str, folder: str, err: Exception) -> str:
    from huggingface_hub import constants

    detail = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return (
        f"SAE {release!r} / {sae_id!r} (Hub repo {repo_id!r}, folder {folder!r}) could not be loaded "
        f"from the local Hugging Face cache ({constants.HF_HUB_CACHE}); SAEs are loaded offline. "
        f"Download it where the Hub is reachable (`hf download {repo_id} --include '{folder}/*'`) "
        "and copy the cache here (HF_HUB_CACHE), or save it there in sae-lens' format "
        f"(`load_sae({release!r}, {sae_id!r}).save_model(DIR)`) and pass the folder: load_sae(DIR) "
        f"({detail})"
    )
