"""Where a model's weights live: the loading options of `load_model`, checked, and what a split
model says of itself.

    OPTION_KEYS             the loading options: ``device_map``, ``dtype``, ``max_memory``,
                            ``offload_folder``
    parse_options_text      ``"device_map=auto,dtype=bfloat16,max_memory=cpu:2GiB"`` (the form of
                            ``--claims-model-options NAME=...``) -> {key: text}
    LoadOptions.make        the options checked (devices that exist, a known dtype, sizes) ->
                            a frozen `LoadOptions`; ``pretrained_kwargs`` gives what
                            ``from_pretrained`` takes (accelerate places the weights)
    input_device            where a (possibly split) model takes its input ids
    placement_of            ``"cpu"``, or the devices of a split model joined: ``"cuda:0+cpu+disk"``
    state_dict_of           the weights of a model whose blocks may be offloaded (meta placeholders
                            read back from accelerate's CPU or disk store), for `fingerprint`

A device map is passed to ``from_pretrained`` as is: ``"auto"``, ``"balanced"``,
``"balanced_low_0"``, ``"sequential"``, or ``{module path: device}`` with devices ``"cpu"``,
``"disk"`` (needs ``offload_folder``), a GPU index or ``"cuda:N"``. Accelerate then wraps each
placed module's ``forward`` with a hook (``AlignDevicesHook``) that moves the module's inputs to
its device and, for an offloaded module, loads its weights for the call and drops them after.
Torch's forward hooks run around that wrapper, so an intervention's hook sees the activation on
the device of the module it is installed on; the interventions move what they add or patch to
that device and dtype (`harness.interventions.edits`).

This module imports torch only inside functions: the plugin's option parser uses
`parse_options_text` and `OPTION_KEYS` at start-up without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from harness.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = ["OPTION_KEYS", "DTYPE_NAMES", "DEVICE_MAP_STRATEGIES", "LoadOptions", "parse_options_text",
           "input_device", "placement_of", "state_dict_of"]

OPTION_KEYS = ("device_map", "dtype", "max_memory", "offload_folder")
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
# name -> torch attribute; the short names are the ones model cards use
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "float": "float32",
               "float16": "float16", "fp16": "float16", "half": "float16",
               "bfloat16": "bfloat16", "bf16": "bfloat16"}
_SIZE_RE = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|B)?", re.IGNORECASE)


def parse_options_text(text: str, *, where: str = "--claims-model-options") -> dict[str, str]:
    """``"device_map=auto,dtype=bfloat16,max_memory=cpu:2GiB+cuda:0:20GiB"`` -> ``{key: value}``.

    Options are separated by ``,``; a ``max_memory`` or explicit ``device_map`` lists its
    ``DEVICE:SIZE`` / ``MODULE:DEVICE`` entries separated by ``+`` (parsed by `LoadOptions.make`).
    Raises `ModelLoadError` naming `where` for an entry without ``=``, a key given twice, or a key
    not in `OPTION_KEYS` (with the closest one and the choices)."""
    import difflib

    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ModelLoadError(f"{where}: expected KEY=VALUE entries separated by ',' such as "
                                 f"'device_map=auto,dtype=bfloat16', got {part!r} in {text!r}")
        if key not in OPTION_KEYS:
            close = difflib.get_close_matches(key, OPTION_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ModelLoadError(f"{where}: unknown loading option {key!r} in {text!r}; {hint}"
                                 f"the options are {', '.join(OPTION_KEYS)}")
        if key in out:
            raise ModelLoadError(f"{where}: {key!r} given twice in {text!r}; give each option once")
        out[key] = value
    return out


def _torch() -> Any:
    import torch

    return torch


def parse_dtype(value: Any, *, argument: str = "dtype") -> "torch.dtype | None":
    """A torch dtype from a dtype or a name in `DTYPE_NAMES` (None stays None: the checkpoint's
    own). Raises `ModelLoadError` naming `argument`, the value and the names."""
    torch = _torch()
    if value is None or isinstance(value, torch.dtype):
        if value is not None and not value.is_floating_point:
            raise ModelLoadError(f"`{argument}` must be a floating-point dtype, got {value}; use one of "
                                 "torch.float32, torch.float16, torch.bfloat16")
        return value
    if isinstance(value, str):
        name = value.strip().lower().removeprefix("torch.")
        if name in DTYPE_NAMES:
            return getattr(torch, DTYPE_NAMES[name])
    import difflib

    close = difflib.get_close_matches(str(value).lower(), DTYPE_NAMES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelLoadError(f"`{argument}` must be a torch dtype or one of {', '.join(DTYPE_NAMES)}, got {value!r}; "
                         f"{hint}e.g. dtype='bfloat16'")


def visible_devices() -> list[str]:
    """The devices this process can place weights on: ``cpu``, ``disk`` and each visible
    accelerator (``cuda:0``, ...; ``mps``, ``xpu:N`` where torch has them)."""
    torch = _torch()
    out = ["cpu", "disk"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        out += [f"xpu:{i}" for i in range(xpu.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def _device(value: Any, *, argument: str, what: str, disk: bool = True) -> "int | str":
    """A device named in a device map or a memory cap, as accelerate takes it (a GPU index, or
    ``"cpu"``, ``"disk"``, ``"mps"``, ``"xpu:N"``); raises `ModelLoadError` for one that does not
    exist here, listing the ones that do."""
    torch = _torch()
    visible = visible_devices() if disk else [d for d in visible_devices() if d != "disk"]
    text = str(value).strip() if not isinstance(value, torch.device) else str(value)
    if isinstance(value, bool):
        text = repr(value)
    elif isinstance(value, int):
        text = f"cuda:{value}"
    elif text.isdigit():
        text = f"cuda:{text}"
    elif text == "cuda":
        text = "cuda:0"
    if text not in visible:
        raise ModelLoadError(
            f"`{argument}` names device {value!r} for {what}, which does not exist here; the devices are "
            f"{', '.join(visible)}. Name one of them (a GPU as an index or 'cuda:N'), or run where that "
            "device is visible")
    if text.startswith("cuda:"):
        return int(text.split(":")[1])
    return text


def _size(value: Any, *, argument: str, device: str) -> int:
    """Bytes from an int or a size: ``"2GiB"`` (powers of 1024), ``"500MB"`` (of 1000), any case."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match:   # bytes, not accelerate's reading of a lower-case "gb" as gigabits
        unit = (match.group(2) or "B").upper()
        scale = 1 if unit == "B" else (1024 if "I" in unit else 1000) ** ("KMGT".index(unit[0]) + 1)
        size = int(float(value.strip()[: match.start(2)] if match.group(2) else value) * scale)
        if size > 0:
            return size
    raise ModelLoadError(f"`max_memory` for {device!r} must be a positive number of bytes or a size such as "
                         f"'2GiB' or '500MB', got {value!r}")


def _entries(text: str, *, argument: str, example: str) -> dict[str, str]:
    """``"a:b+c:d"`` -> {a: b, c: d}, split at each entry's last ':' (a device may hold one)."""
    out: dict[str, str] = {}
    for entry in (e.strip() for e in text.split("+")):
        key, sep, value = entry.rpartition(":")
        if not sep or not key or not value:
            raise ModelLoadError(f"`{argument}` entries are KEY:VALUE joined by '+', such as {example!r}; got {entry!r}")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class LoadOptions:
    """Checked loading options (see `make`); the default places nothing (one device, `load_model`'s
    ``device``) and keeps the checkpoint's dtype."""

    device_map: "str | Mapping[str, int | str] | None" = None
    dtype: "torch.dtype | None" = None
    max_memory: "Mapping[int | str, int] | None" = None
    offload_folder: str | None = None

    @property
    def placed(self) -> bool:
        """Whether accelerate places the weights (a device map was given)."""
        return self.device_map is not None

    @classmethod
    def make(cls, *, device_map: Any = None, dtype: Any = None, max_memory: Any = None,
             offload_folder: Any = None) -> "LoadOptions":
        """Check the options `load_model` takes (each may also be the text of the CLI form).

        ``device_map``: one of `DEVICE_MAP_STRATEGIES`, or ``{module path: device}`` (text:
        ``"transformer.h.0:cpu+transformer.h.1:disk"``); ``dtype``: a torch dtype or a name in
        `DTYPE_NAMES`; ``max_memory``: ``{device: bytes or "2GiB"}`` (text: ``"cpu:2GiB+cuda:0:20GiB"``),
        only with a device map; ``offload_folder``: where ``"disk"`` entries are written, needed
        when the map names ``"disk"`` (or ``"auto"`` may spill to disk).

        Raises `ModelLoadError` naming the argument and the bad value: a strategy that is not one
        of the four, a device that does not exist here (``"cuda:3"`` on a machine with fewer GPUs,
        ``"npu:0"``), a size that does not parse, a dtype name that is not a dtype, ``"disk"``
        without ``offload_folder``, ``max_memory`` without ``device_map``.
        """
        if isinstance(device_map, str):
            text = device_map.strip()
            if text in DEVICE_MAP_STRATEGIES:
                device_map = text
            elif ":" in text:
                device_map = _entries(text, argument="device_map", example="transformer.h.0:cpu+transformer.h.1:disk")
            else:
                import difflib

                close = difflib.get_close_matches(text, DEVICE_MAP_STRATEGIES, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ModelLoadError(
                    f"`device_map` must be one of {', '.join(DEVICE_MAP_STRATEGIES)} or a mapping "
                    f"{{module path: device}}, got {device_map!r}; {hint}to put the whole model on one device "
                    "pass `device` instead")
        if isinstance(device_map, Mapping):
            if not device_map:
                raise ModelLoadError("`device_map` is an empty mapping; map module paths to devices, "
                                     "e.g. {'model.layers.0': 'cpu', 'model.layers.1': 'disk'}, or pass 'auto'")
            placed = {}
            for module, where in device_map.items():
                if not isinstance(module, str):
                    raise ModelLoadError(f"`device_map` keys must be module paths (str), got {module!r}")
                placed[module] = _device(where, argument="device_map", what=f"module {module!r}")
            device_map = placed
        elif device_map is not None and not isinstance(device_map, str):
            raise ModelLoadError(f"`device_map` must be a str or a mapping {{module path: device}}, "
                                 f"got {type(device_map).__name__} {device_map!r}")
        caps = None
        if max_memory is not None:
            if device_map is None:
                raise ModelLoadError(f"`max_memory` ({max_memory!r}) caps what accelerate places on each device, "
                                     "so it needs a `device_map` ('auto', 'balanced', ...); pass device_map='auto'")
            if isinstance(max_memory, str):
                max_memory = _entries(max_memory, argument="max_memory", example="cpu:2GiB+cuda:0:20GiB")
            if not isinstance(max_memory, Mapping) or not max_memory:
                raise ModelLoadError(f"`max_memory` must be a mapping {{device: size}} such as "
                                     f"{{'cpu': '2GiB', 0: '20GiB'}}, got {max_memory!r}")
            caps = {}
            for device, size in max_memory.items():
                key = _device(device, argument="max_memory", what="a memory cap", disk=False)
                caps[key] = _size(size, argument="max_memory", device=str(device))
        if offload_folder is not None:
            import os

            if not isinstance(offload_folder, (str, os.PathLike)) or not str(offload_folder).strip():
                raise ModelLoadError(f"`offload_folder` must be a directory path, got {offload_folder!r}")
            offload_folder = os.path.expanduser(str(offload_folder))
        if isinstance(device_map, dict) and "disk" in device_map.values() and offload_folder is None:
            disk = [m for m, d in device_map.items() if d == "disk"]
            raise ModelLoadError(f"`device_map` puts {disk} on 'disk' but no `offload_folder` is given; pass "
                                 "offload_folder='/path/with/room' (the weights are written there once)")
        return cls(device_map=device_map, dtype=parse_dtype(dtype), max_memory=caps, offload_folder=offload_folder)

    def pretrained_kwargs(self, cls: Any, config: Any) -> dict[str, Any]:
        """The keyword arguments of ``cls.from_pretrained`` for these options (``dtype``,
        ``device_map``, ``max_memory``, ``offload_folder``). Checks each memory cap against the
        largest block of the model (built on the meta device, no weights read): a cap below one
        block is a `ModelLoadError` naming ``max_memory``, the device, the cap and the size
        needed."""
        kwargs: dict[str, Any] = {}
        if self.dtype is not None:
            kwargs["dtype"] = self.dtype
        if self.device_map is None:
            return kwargs
        kwargs["device_map"] = dict(self.device_map) if isinstance(self.device_map, Mapping) else self.device_map
        if self.max_memory is not None:
            block = _largest_block(cls, config, self.dtype)
            for device, cap in self.max_memory.items():
                if block is not None and cap < block[1]:
                    shown = f"cuda:{device}" if isinstance(device, int) else device
                    raise ModelLoadError(
                        f"`max_memory` gives {shown!r} {_human(cap)}, less than one block of this model "
                        f"({block[0]}: {_human(block[1])} in {str(self.dtype or config_dtype(config)).replace('torch.', '')}); "
                        f"blocks are never split across devices, so nothing would go there. Give it at least "
                        f"{_human(block[1])} (e.g. '{-(-block[1] // 2**20)}MiB'), or leave it out of `max_memory`")
            kwargs["max_memory"] = dict(self.max_memory)
        if self.offload_folder is not None:
            kwargs["offload_folder"] = self.offload_folder
        return kwargs


def config_dtype(config: Any) -> Any:
    torch = _torch()
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, str):
        value = getattr(torch, value, None)
    return value if value is not None else torch.float32


def _human(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def _largest_block(cls: Any, config: Any, dtype: Any) -> tuple[str, int] | None:
    """(path, bytes) of the largest module accelerate will not split (the model's
    ``_no_split_modules``: its blocks), at `dtype` (default the config's); None if it names none."""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes

    with init_empty_weights():
        model = cls.from_config(config)
    names = set(getattr(model, "_no_split_modules", None) or ())
    if not names:
        return None
    sizes = compute_module_sizes(model, dtype=dtype or config_dtype(config))
    blocks = [(path, sizes[path]) for path, m in model.named_modules() if type(m).__name__ in names and path in sizes]
    return max(blocks, key=lambda b: b[1]) if blocks else None


def _hooks(module: Any) -> list[Any]:
    """The accelerate hooks on `module` (a ``SequentialHook`` unrolled), outermost first."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])


def _execution_device(module: Any) -> Any:
    for hook in _hooks(module):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return device
    return None


def input_device(module: Any) -> "torch.device":
    """The device a model takes its input ids on. For a model placed by a device map
    (``hf_device_map``): the execution device accelerate's hook gives its input embedding (or
    the nearest module above it). Otherwise, and as a fallback, the device of its first parameter
    that is not a meta placeholder (the CPU if none)."""
    torch = _torch()
    if getattr(module, "hf_device_map", None) is not None:
        try:
            embed = module.get_input_embeddings()
        except (AttributeError, NotImplementedError):
            embed = None
        path = next((name for name, m in module.named_modules() if m is embed), None)
        if path is not None:
            parts = path.split(".") if path else []
            for cut in range(len(parts), -1, -1):
                device = _execution_device(module.get_submodule(".".join(parts[:cut])) if cut else module)
                if device is not None:
                    return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def placement_of(module: Any) -> str:
    """``"cpu"``, ``"cuda:0"``: the one device of a model; for a model placed by a device map the
    distinct places of its map joined by '+' (``"cuda:0+cuda:1+cpu+disk"``)."""
    device_map = getattr(module, "hf_device_map", None)
    if isinstance(device_map, Mapping) and len(set(map(str, device_map.values()))) > 1:
        places = {f"cuda:{d}" if isinstance(d, int) else str(d) for d in device_map.values()}
        order = {"cpu": 1, "disk": 2}
        return "+".join(sorted(places, key=lambda p: (order.get(p, 0), p)))
    return str(input_device(module))


def state_dict_of(module: Any) -> dict[str, Any]:
    """``module.state_dict()`` with every meta placeholder (a weight accelerate offloaded to the CPU
    or the disk) replaced by its stored value, read from the offload hook of its module. Raises
    `ModelLoadError` for a meta tensor no hook stores (a model built on the meta device and never
    loaded)."""
    state = module.state_dict(keep_vars=False)
    meta = [name for name, t in state.items() if t.device.type == "meta"]
    for name in meta:
        state[name] = _offloaded(module, name)
    return state


def _offloaded(module: Any, name: str) -> Any:
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        try:
            owner = module.get_submodule(".".join(parts[:cut])) if cut else module
        except AttributeError:
            continue
        key = ".".join(parts[cut:])
        for hook in _hooks(owner):
            store = getattr(hook, "weights_map", None)
            if store is None:
                continue
            try:
                return store[key]
            except KeyError:
                continue
    raise ModelLoadError(f"weight {name!r} is on the meta device and no offload hook stores it; the model "
                         "was built without its weights (load it with load_model, or load the checkpoint)")
