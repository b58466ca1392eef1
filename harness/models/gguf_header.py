"""Reading a GGUF file's header: what the file says about itself, and whether transformers reads it.

    GGUFHeader             ``general.architecture``, ``general.name``, the quantisation type and the
                           count of tensors of each type
    read_header(path)      the header and tensor table of a file, read memory-mapped through the
                           ``gguf`` package; a truncated or corrupted file is a `ModelLoadError`

A file whose architecture transformers cannot read from GGUF is refused before any weight is
read, naming the architecture and those transformers reads. `harness.models.gguf` reads the
header of every file it is about to dequantise and cache.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ModelLoadError

__all__ = ["GGUFHeader", "read_header"]


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file says about itself: ``general.architecture`` (``"llama"``, ``"gemma3"``),
    ``general.name`` (or None), the quantisation type (``general.file_type`` as llama.cpp names it,
    e.g. ``"MOSTLY_Q4_1"``, else the commonest type of the 2-D weights) and the count of tensors
    of each type (``{"Q4_1": 211, "F32": 61}``)."""

    architecture: str
    title: str | None
    quantization: str
    tensor_types: dict[str, int]


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Read and check the header and tensor table of the GGUF file at `path` (memory-mapped: cheap).

    Raises `ModelLoadError` when the ``gguf`` package is missing, or when the file cannot be
    parsed (not a GGUF file, truncated, corrupted), naming the file and what the reader said.
    """
    try:
        from gguf import GGUFReader, LlamaFileType
    except ImportError:
        raise ModelLoadError("reading a .gguf file needs the `gguf` package: `pip install gguf` "
                             "(a dependency of interp-claims: `pip install -c constraints.txt -e .`)") from None
    try:
        reader = GGUFReader(str(path))
        architecture = _field(reader, "general.architecture")
        if not isinstance(architecture, str):
            raise ValueError("the file has no general.architecture")
        title = _field(reader, "general.name")
        types = Counter(t.tensor_type.name for t in reader.tensors)
        weights = Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) >= 2)
    except (ValueError, OSError, IndexError, KeyError, UnicodeDecodeError) as err:
        raise ModelLoadError(
            f"{path} is not a readable GGUF file (truncated or corrupted?): {type(err).__name__}: {err}; "
            "fetch the file again (for a packaged model, reinstall its package)") from None
    file_type = _field(reader, "general.file_type")
    try:
        quantization = LlamaFileType(int(file_type)).name if file_type is not None else None
    except ValueError:
        quantization = f"file_type {file_type}"
    if quantization is None:
        quantization = weights.most_common(1)[0][0] if weights else "unknown"
    return GGUFHeader(architecture=architecture, title=title if isinstance(title, str) else None,
                      quantization=quantization, tensor_types=dict(sorted(types.items())))


def _field(reader: Any, key: str) -> Any:
    """The value of metadata `key` (a str or a number), or None where the file lacks it."""
    from gguf import GGUFValueType

    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    part = field.parts[field.data[0]]
    if field.types and field.types[0] == GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    return part[0].item()


def _check_architecture(path: Path, header: GGUFHeader) -> None:
    """Raise `ModelLoadError` naming the architecture when transformers cannot read it from GGUF."""
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:
        return
    try:
        from transformers.integrations.gguf import GGUF_ARCHS
    except ImportError:
        GGUF_ARCHS = {}
    supported = set(GGUF_SUPPORTED_ARCHITECTURES) | set(GGUF_ARCHS)
    arch = header.architecture
    # transformers maps a few names itself (llama-named Mistral, T5 variants, MoE spellings)
    aliases = {"t5encoder": "t5", "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
               "minimax-m2": "minimax_m2"}
    if arch in supported or aliases.get(arch) in supported:
        return
    import transformers

    raise ModelLoadError(
        f"{path} holds a model of GGUF architecture {arch!r}, which transformers {transformers.__version__} "
        f"cannot read from GGUF; it reads {sorted(supported)}. Convert the checkpoint to a "
        "Hugging Face folder elsewhere and pass that folder instead")
