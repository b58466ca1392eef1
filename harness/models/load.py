"""Loading models, and the loaded model's view of itself.

    load_model(spec)    a hub id (offline, from the local HF cache), a local directory,
                        ``fixture:NAME`` (built from its recipe in ``fixtures/`` on first use), or a
                        GGUF checkpoint: ``gguf:NAME`` or ``/path/model.gguf`` (`harness.models.gguf`)
    LoadedModel         the torch module + tokenizer + site table + device/dtype + fingerprint;
                        ``tokenize`` warns (`UnknownTokenWarning`) of text that became the unknown token
    fingerprint(model)  sha256 over the config and every weight (name, dtype, shape, bytes)
    pad_rows            right-pads token rows into ``input_ids`` / ``attention_mask``

Right padding keeps every real token at the position it has in the one-example run, so a
padded batch equals the unpadded runs (pinned by tests for every architecture).
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from harness.models import placement
from harness.models.architectures import Hook, Layout, layout_for, resolve_hook, site_table
from harness.errors import DataError, ModelLoadError, SiteError
from harness.models.logits import check_logit_rule
from harness.models.sites import POINTS, Site, SiteTable, parse_site

__all__ = ["LoadedModel", "load_model", "load_study_model", "fingerprint", "from_module", "pad_rows", "length_order"]


@dataclass
class LoadedModel:
    """A model the harness can intervene on.

    Example::

        tacgen = load_model("fixture:tacgen")
        site = tacgen.site("encoder.12.resid_post")
        tacgen.fingerprint[:12], tacgen.device, tacgen.dtype
    """

    name: str
    spec: str
    module: torch.nn.Module
    tokenizer: Any
    layout: Layout
    sites: SiteTable
    fingerprint: str
    _hooks: dict[Site, Hook] = field(default_factory=dict, repr=False)
    _warned_unknown: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        """Where the model takes its input ids: its input embedding's device (for a model split by
        a device map, the execution device accelerate gives the embedding)."""
        return placement.input_device(self.module)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.module.config, "is_encoder_decoder", False))

    @property
    def main_stack(self) -> str:
        """The stack whose positions the input tokens index: ``encoder`` or ``blocks``."""
        return self.sites.stacks[0].name

    def site(self, stack_or_text: str | Site, layer: int | None = None,
             point: str | None = None, *, head: int | None = None,
             units: Sequence[int] | range | None = None) -> Site:
        """A validated site: ``m.site("encoder.12.resid_post")``, ``m.site("encoder", 12, "resid_post")``,
        ``m.site("blocks", 2, "attn.k", head=0)``, ``m.site("blocks", 1, "mlp_post", units=range(45, 51))``.

        `point` may also be written as in a site string (``"attn.q.head3"``, ``"mlp_post.neuron45"``).
        Raises `SiteError` for a site the model lacks, listing what it has (see `SiteTable.validate`).
        """
        if isinstance(stack_or_text, Site):
            return self.sites.validate(stack_or_text)
        if layer is None and point is None:
            if head is not None or units is not None:
                raise SiteError("`head` and `units` go with `stack`, `layer` and `point`, not with a site string; "
                                "write them in the string ('blocks.2.attn.q.head1', 'blocks.1.mlp_post.neuron45')")
            return self.sites.validate(parse_site(stack_or_text))
        if layer is None or point is None:
            raise SiteError("give either a site string, or all of `stack`, `layer` and `point`")
        try:  # ints, numpy ints, 0-d integer tensors; not bools, floats or strings
            if isinstance(layer, bool):
                raise TypeError
            layer = operator.index(layer)
        except TypeError:
            raise SiteError(f"`layer` must be an int, got {layer!r}") from None
        if point not in POINTS:
            # the string form ("attn.head2", "attn.q.head1", "mlp_post.neuron4"): parse it
            site = parse_site(f"{stack_or_text}.{layer}.{point}")
            if head is not None or units is not None:
                raise SiteError(f"`point` {point!r} already names its head or units; leave out `head` and `units`")
            return self.sites.validate(site)
        return self.sites.validate(Site(stack_or_text, layer, point, head,
                                        None if units is None else tuple(units)))

    def hook_for(self, site: Site) -> Hook:
        """Where `site`'s activation lives on this model (cached): a module, "input" or
        "output", and the columns the site takes (see `harness.models.site_hooks.Hook`)."""
        if site not in self._hooks:
            self._hooks[site] = resolve_hook(self.module, self.layout, self.sites, site)
        return self._hooks[site]

    def width(self, site: Site | str, *, varying: bool = False) -> int | None:
        """The last dimension of the activation at `site`: d_model; d_head for one head's
        output, query, key or value; n_heads * d_head for all queries (n_kv_heads * d_head
        for all keys or values); d_mlp, or the number of chosen units, for the MLP points;
        1 for ``final_scale``.

        A head's attention scores or pattern (``attn.scores.head{h}``, ``attn.pattern.head{h}``)
        have no fixed width: their last dimension is the key count of each forward. With
        ``varying=True`` their width is None; otherwise they raise `SiteError` (a direction, a
        probe or an SAE needs a fixed width)."""
        site = self.site(site)
        width = self.sites.stack(site.stack).width(site)
        if width is None and not varying:
            raise SiteError(f"site {site} has no fixed width: its last dimension is the key count of each "
                            "forward (`[batch, query, key]`); record, patch or ablate it with intervene, and "
                            "give directions, probes and SAEs a fixed-width site (resid, head, q/k/v, MLP)")
        return width

    def tokenize(self, texts: Sequence[str], *, add_special_tokens: bool = True,
                 max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text; with `max_length`, truncated as the tokenizer truncates.

        A text with words or pieces the tokenizer could only map to its unknown token (``[UNK]``,
        ``<unk>``) gets an `UnknownTokenWarning` that lists them and the text (truncated), once
        per distinct text for this model; the ids are returned as the tokenizer gave them.
        Each distinct text is tokenized once per call (a scorer's continuations repeat one or
        two texts over every row); every row is a list of its own.
        """
        if isinstance(texts, str):
            raise TypeError("`texts` must be a sequence of strings, got a single str; wrap it in a list")
        kw: dict[str, Any] = {"add_special_tokens": add_special_tokens}
        if max_length is not None:
            kw.update(truncation=True, max_length=int(max_length))
        once = {t: self.tokenizer(t, **kw)["input_ids"] for t in dict.fromkeys(texts)}
        rows = [list(once[t]) for t in texts]
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is not None:
            for text, row in zip(texts, rows):
                if unk in row and text not in self._warned_unknown:
                    self._warn_unknown(text, row, unk, kw)
        return rows

    def _warn_unknown(self, text: str, row: list[int], unk: int, kw: dict[str, Any]) -> None:
        """Warn that parts of `text` became the unknown token `unk` (once per text)."""
        import warnings

        from harness.errors import UnknownTokenWarning

        self._warned_unknown.add(text)
        pieces = _unknown_pieces(self.tokenizer, text, row, unk, kw)
        if not pieces:  # only the unknown token itself, written out in the text
            return
        counts: dict[str, int] = {}
        for piece in pieces:
            counts[piece] = counts.get(piece, 0) + 1
        shown = ", ".join(repr(p) + (f" x{n}" if n > 1 else "") for p, n in list(counts.items())[:12])
        more = f" and {len(counts) - 12} more" if len(counts) > 12 else ""
        token = getattr(self.tokenizer, "unk_token", None)
        quoted = repr(text) if len(text) <= 120 else repr(text[:117] + "...")
        warnings.warn(UnknownTokenWarning(
            f"{len(pieces)} piece(s) of a text became the unknown token {token!r} (id {unk}) of "
            f"{self.name}'s tokenizer: {shown}{more}; in text {quoted}. The token ids are kept: "
            "the model reads each of these as the same token (check the input, or the tokenizer's vocabulary)"
        ), stacklevel=3)

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return 0 if pad is None else int(pad)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "spec": self.spec, "fingerprint": self.fingerprint,
                "device": placement.placement_of(self.module), "dtype": str(self.dtype).replace("torch.", "")}


def _unknown_pieces(tokenizer: Any, text: str, row: list[int], unk: int, kw: dict[str, Any]) -> list[str]:
    """The parts of `text` that became the unknown token `unk` in `row`, in order: the source
    span of each unknown token where the tokenizer gives offsets (a fast tokenizer), else each
    whitespace-separated word that alone tokenizes to the unknown token. The unknown token
    written out literally in the text is not listed."""
    literal = getattr(tokenizer, "unk_token", None)
    if getattr(tokenizer, "is_fast", False):
        try:
            offsets = tokenizer(text, return_offsets_mapping=True, **kw)["offset_mapping"]
        except (NotImplementedError, TypeError, ValueError, KeyError):
            offsets = None
        if offsets is not None and len(offsets) == len(row):
            pieces = [text[a:b] for token, (a, b) in zip(row, offsets) if token == unk]
            return [p if p else "?" for p in pieces if p != literal]
    words = []
    for word in text.split():
        if word != literal and unk in tokenizer(word, add_special_tokens=False)["input_ids"]:
            words.append(word)
    if words:
        return words
    unexplained = sum(token == unk for token in row) - (text.count(literal) if literal else 0)
    return ["?"] * max(unexplained, 0)


def length_order(rows: Sequence[Sequence[int]]) -> list[int]:
    """Indices of `rows`, longest first (ties keep their order): chunks of similar length pad less.

    Callers batch in this order and put each result back at its index, so the output order (and,
    since padding does not change a row's numbers, the values within 1e-4) is the input's.
    """
    return sorted(range(len(rows)), key=lambda i: -len(rows[i]))


def pad_rows(rows: Sequence[Sequence[int]], *, pad_id: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows: returns ``input_ids`` and ``attention_mask``, both ``[batch, pos]``."""
    if len(rows) == 0:
        raise DataError("`rows` is empty; pass at least one tokenized example")
    width = max(len(r) for r in rows)
    if width == 0:
        raise DataError("every row in `rows` is empty; each example needs at least one token")
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


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
