"""Loading models: a spec in, a `LoadedModel` out.

    load_model(spec)    a hub id (offline, from the local HF cache), a local directory,
                        ``fixture:NAME`` (built from its recipe in ``fixtures/`` on first use), or a
                        GGUF checkpoint: ``gguf:NAME`` or ``/path/model.gguf`` (`harness.models.gguf`)
    load_study_model    `load_model` under a study's model name
    from_module         wrap an already-built Hugging Face model
    fingerprint(model)  sha256 over the config and every weight (name, dtype, shape, bytes)

The model they return, `LoadedModel`, and the batching of its inputs (`pad_rows`,
`length_order`) live in `harness.models.loaded`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from harness.errors import ModelLoadError
from harness.models import placement
from harness.models.architectures import layout_for
from harness.models.loaded import LoadedModel
from harness.models.logits import check_logit_rule
from harness.models.site_table import site_table

__all__ = ["load_model", "load_study_model", "fingerprint", "from_module"]


def fingerprint(module: torch.nn.Module) -> str:
    """sha256 of the config (sorted JSON) and of every parameter and buffer (name, dtype, shape, bytes);
    weights accelerate offloaded to the CPU or the disk are read from its store, so a split model
    has the fingerprint of the same weights on one device."""
    h = hashlib.sha256()
    config = getattr(module, "config", None)
    if config is not None:
        cfg = config.to_dict()
        # metadata, not computation: save_pretrained sets `architectures` and `dtype` on the live config
        for volatile in ("transformers_version", "_name_or_path", "torch_dtype", "dtype", "architectures"):
            cfg.pop(volatile, None)
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, tensor in sorted(placement.state_dict_of(module).items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return h.hexdigest()


def from_module(module: torch.nn.Module, tokenizer: Any, *, name: str, spec: str | None = None) -> LoadedModel:
    """Wrap an already-built Hugging Face model (in eval mode) as a `LoadedModel`.

    Example::

        model = from_module(transformers.GPT2LMHeadModel(config), tokenizer, name="tiny-gpt2")

    The model's ``config.model_type`` must have an entry in the architecture table
    (`harness.models.architectures.register_architecture`); every module path of the entry is
    checked, and so is its logit rule: `unembed` of the final norm's output must equal the model's
    own logits on a short prompt. Raises `SiteError` for an unregistered type or a missing module,
    `ModelLoadError` for a logit rule that does not reproduce the model's logits.
    """
    module.eval()
    layout = layout_for(module)
    table = site_table(module, layout, name)
    check_logit_rule(module, layout)
    return LoadedModel(name=name, spec=spec or name, module=module, tokenizer=tokenizer,
                       layout=layout, sites=table, fingerprint=fingerprint(module))


def load_model(spec: str, *, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None, name: str | None = None,
               device_map: str | dict[str, int | str] | None = None,
               max_memory: dict[int | str, int | str] | str | None = None,
               offload_folder: str | os.PathLike | None = None) -> LoadedModel:
    """Load a model by hub id, local directory, ``fixture:NAME``, ``gguf:NAME`` or ``.gguf`` file.

    Example::

        load_model("fixture:planted")
        load_model("/models/byt5-tacgen")                       # a saved checkpoint
        load_model("kaiyuy/leandojo-lean4-tacgen-byt5-small")   # from the local HF cache
        load_model("/models/llama-8b", device_map="auto", dtype="bfloat16",
                   max_memory={0: "20GiB", 1: "20GiB", "cpu": "64GiB"}, offload_folder="/scratch/off")

    ``device`` puts the whole model on one device (default the CPU). ``device_map``, ``max_memory``
    and ``offload_folder`` let accelerate place it instead (`harness.models.placement`: a
    strategy such as ``"auto"``, or ``{module path: device}`` with ``"cpu"`` and ``"disk"``
    entries); ``dtype`` is a torch dtype or a name (``"bfloat16"``, ``"bf16"``, ``"float16"``,
    ``"float32"``). A spec from ``--claims-model`` carries the options of
    ``--claims-model-options`` for its name; an option passed here takes precedence.

    Hub ids are looked up offline (``local_files_only``): a model that is not in the cache is
    a `ModelLoadError` saying how to provide it. Bad loading options are a `ModelLoadError`
    naming the option, the bad value and the fix (`placement.LoadOptions.make`).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"`spec` must be a hub id, a directory or 'fixture:NAME', got {spec!r}")
    given = {"device_map": device_map, "dtype": dtype, "max_memory": max_memory, "offload_folder": offload_folder}
    options = placement.LoadOptions.make(**{**dict(getattr(spec, "load_options", None) or {}),
                                            **{k: v for k, v in given.items() if v is not None}})
    if options.placed and device is not None:
        raise ModelLoadError(f"`device` ({device!r}) and `device_map` ({options.device_map!r}) both place the "
                             "model; pass `device` for one device or `device_map` to split it, not both")
    spec = str(spec)
    path, kind = _resolve_spec(spec)
    try:
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        local = {"local_files_only": True}
        config = AutoConfig.from_pretrained(path, **local)
        cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        module = cls.from_pretrained(path, **local, **options.pretrained_kwargs(cls, config))
        # transformers 5 forces its own tokenizer class for some model types (qwen2, phi3, mistral,
        # ...) whatever tokenizer_config.json declares: without that class's files it builds it
        # empty, or cannot build it at all ("Couldn't instantiate the backend tokenizer"); the
        # class the checkpoint declares is then loaded instead
        declared = getattr(transformers, _declared_tokenizer_class(path) or "", None)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **local)
        except ValueError:
            if declared is None:
                raise
            tokenizer = declared.from_pretrained(path, **local)
        if _tokenizes_nothing(tokenizer) and declared is not None and not isinstance(tokenizer, declared):
            tokenizer = declared.from_pretrained(path, **local)
        tokenizer = _saved_tokenizer(path, tokenizer, local)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as err:  # ValueError: e.g. a directory whose config.json lacks model_type
        raise ModelLoadError(_missing_message(spec, kind, err)) from None
    if _tokenizes_nothing(tokenizer):
        raise ModelLoadError(
            f"model {spec!r} has no tokenizer files (tokenizer.json, vocab files or tokenizer_config.json); "
            "save the tokenizer next to the weights (`tokenizer.save_pretrained(path)`)"
        )
    if not options.placed:
        module.to("cpu" if device is None else device)
    model = from_module(module, tokenizer, name=name or spec, spec=spec)
    _register(model, source=f"{kind}: {os.path.abspath(path) if kind == 'directory' else path}", named=name is not None)
    return model


def _register(model: LoadedModel, *, source: str, named: bool) -> None:
    """Record `model` for the run's report (its name, spec, fingerprint, device, dtype and
    source), so every model a claim loads is in the header whichever function loaded it.

    A model loaded under an explicit `name` must keep its details for the session (a second,
    different model under that name raises `RegistryError`); one named by its spec alone that
    is loaded again on another device or dtype is recorded under ``"SPEC (device, dtype)"``."""
    from harness.verdicts import evidence

    details = {k: v for k, v in model.describe().items() if k != "name"}
    try:
        evidence.register_model(model.name, source=source, **details)
    except evidence.RegistryError:
        if named:
            raise
        evidence.register_model(f"{model.name} ({details['device']}, {details['dtype']})", source=source, **details)


_GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _saved_tokenizer(path: str, tokenizer: Any, local: dict) -> Any:
    """The tokenizer a checkpoint saved, where transformers built another one.

    transformers 5 builds its own tokenizer class for some model types (qwen2, ...) whatever
    tokenizer_config.json declares, with that class's pre-tokenizer: a checkpoint saved with a
    generic tokenizer (``tokenizer_class`` ``TokenizersBackend``, e.g. a word-level vocabulary
    with whole numbers as tokens) would silently be tokenized another way (Qwen2's splits
    numbers into digits). When the directory declares a generic class and holds a
    ``tokenizer.json`` whose pipeline differs from the one built, the declared class is loaded
    from that file instead."""
    declared_name = _declared_tokenizer_class(path)
    saved = Path(path) / "tokenizer.json"
    if declared_name not in _GENERIC_TOKENIZERS or not saved.is_file() or type(tokenizer).__name__ == declared_name:
        return tokenizer
    import transformers
    from tokenizers import Tokenizer

    built = getattr(tokenizer, "backend_tokenizer", None)
    if built is not None and built.to_str() == Tokenizer.from_file(str(saved)).to_str():
        return tokenizer
    declared = getattr(transformers, declared_name, None)
    return tokenizer if declared is None else declared.from_pretrained(path, **local)


def _tokenizes_nothing(tokenizer: Any) -> bool:
    """True for the empty tokenizer transformers builds when a checkpoint has no tokenizer files."""
    return not tokenizer("a", add_special_tokens=False)["input_ids"]


def _declared_tokenizer_class(path: str) -> str | None:
    """The ``tokenizer_class`` a checkpoint directory's tokenizer_config.json declares, if any."""
    config = Path(path) / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        declared = json.loads(config.read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        return None
    return declared if isinstance(declared, str) and declared.isidentifier() else None


def load_study_model(name: str, spec: str, *, device: str | torch.device | None = None,
                     dtype: torch.dtype | str | None = None, **options: Any) -> LoadedModel:
    """`load_model` under the study's model name `name` (``load_model`` itself records every model
    it loads for the report: its name, spec, fingerprint, device, dtype and source). `options`
    are `load_model`'s loading options (``device_map``, ``max_memory``, ``offload_folder``); a
    spec from ``claims_settings.model_spec`` carries those given with ``--claims-model-options``.

    Example (a study's conftest)::

        @pytest.fixture(scope="session")
        def tacgen(claims_settings):
            return load_study_model("tacgen", claims_settings.model_spec("tacgen", "fixture:tacgen"))
    """
    return load_model(spec, device=device, dtype=dtype, name=name, **options)


def _resolve_spec(spec: str) -> tuple[str, str]:
    if spec.startswith("fixture:"):
        from harness.models import fixtures
        return str(fixtures.resolve(spec[len("fixture:"):])), "fixture"
    from harness.models import gguf
    if gguf.is_gguf_spec(spec):  # gguf:NAME or a .gguf file: its dequantised copy in the cache
        folder, info = gguf.resolve(spec)
        return str(folder), gguf.describe(info)
    if os.path.isdir(os.path.expanduser(spec)):
        return os.path.expanduser(spec), "directory"
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise ModelLoadError(
            f"model directory {spec!r} does not exist; pass an existing directory that holds "
            "config.json and the weights, or a hub id such as 'gpt2'"
        )
    return spec, "hub"


def _missing_message(spec: str, kind: str, err: Exception) -> str:
    if kind == "hub" and isinstance(err, OSError):
        try:  # the cache actually consulted (fixed when huggingface_hub is first imported)
            from huggingface_hub.constants import HF_HUB_CACHE as cache
        except ImportError:
            cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        return (
            f"model {spec!r} is not in the local Hugging Face cache ({cache}) and models are "
            f"loaded offline. Download it where a hub is reachable (`hf download {spec}`) and "
            f"copy the cache here, or pass a local directory: --claims-model NAME=/path/to/model "
            f"({type(err).__name__}: {str(err).splitlines()[0]})"
        )
    return f"could not load model {spec!r} from {kind}: {err}"
