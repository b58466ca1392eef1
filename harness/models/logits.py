"""How a model's final residual becomes its logits, by its architecture's `LogitRule`.

    unembed(model, normed)          next-token logits (float32) from final-norm outputs, as the
                                    model's own forward computes them
    check_logit_rule(module, layout)  at load: the rule reproduces the model's own logits on one
                                    short prompt, else `ModelLoadError`
    stop_at_final_norm(model)       a forward run inside it ends at the final norm, whose output
                                    it keeps: the output head never runs over every position
    last_logits(model, ids, mask)   next-token logits at each row's last real token ``[n, vocab]``,
                                    the output head applied there only

The patching maps, causal tracing and the logit lens compute logits through `unembed`; a rule
that does not match the model (say, a missing logit scale) would make them silently wrong, so
`harness.models.load.from_module` refuses such a model.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import torch

from harness.errors import ModelLoadError, SiteError
from harness.models.architectures import Layout

if TYPE_CHECKING:
    from harness.models.loaded import LoadedModel

__all__ = ["unembed", "check_logit_rule", "stop_at_final_norm", "last_logits"]


def unembed(model: LoadedModel, normed: torch.Tensor) -> torch.Tensor:
    """Logits from final-norm outputs, as the model's own forward computes them.

    Example::

        logits = unembed(model, final_norm_output[:, -1])     # [batch, vocab]

    ``normed``: ``[..., d_model]``, the output of the final norm of the stack the output head
    reads (in the model's dtype). Returns ``[..., vocab]`` float32 logits, computed by the
    architecture's `LogitRule` (`harness.models.architectures`): the output embedding, then any
    logit scale (Cohere), division (Granite) or soft-capping (Gemma). `from_module` checks the
    rule against the model's own logits when the model loads.
    """
    return _apply_logit_rule(model.module, model.layout, normed).float()


class _FinalNormReached(Exception):
    """Raised by `stop_at_final_norm`'s hook to end a forward at the final norm."""


@contextmanager
def stop_at_final_norm(model: LoadedModel) -> Iterator[dict]:
    """A forward of `model` run inside this block stops right after the final norm of its main
    stack; the yielded dict's ``"normed"`` then holds that norm's output ``[batch, pos, d_model]``.

    Example::

        with stop_at_final_norm(model) as out:
            model.module(input_ids=ids, attention_mask=mask)
        logits = unembed(model, out["normed"][rows, last])      # [batch, vocab]

    The output head (for Gemma 3, 262k tokens x 640) would otherwise run at every position of
    every row, often more work than all the blocks; `unembed` on the rows' last positions gives
    the same logits (`check_logit_rule` pins that at load). Interventions entered before this
    block see the norm's output first. The hook is removed on exit, also on an error; a forward
    that never reaches the final norm leaves the dict empty.
    """
    out: dict = {}
    norm = model.module.get_submodule(model.layout.stack(model.main_stack).final_norm)

    def hook(module: torch.nn.Module, args: tuple, output: Any) -> None:
        out["normed"] = output[0] if isinstance(output, tuple) else output
        raise _FinalNormReached

    handle = norm.register_forward_hook(hook)
    try:
        yield out
    except _FinalNormReached:
        pass
    finally:
        handle.remove()


def last_logits(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Float32 next-token logits ``[n, vocab]`` at each row's last real token of a decoder-only
    forward of ``ids`` ``[n, pos]`` (right-padded, ``mask`` ``[n, pos]`` 1 for real tokens),
    with whatever interventions are active; the output head runs at those positions only
    (`stop_at_final_norm`). Equals ``model.module(...).logits[rows, last]`` within float error."""
    with stop_at_final_norm(model) as out:
        model.module(input_ids=ids, attention_mask=mask, use_cache=False)
    last = mask.sum(1) - 1
    return unembed(model, out["normed"][torch.arange(ids.shape[0], device=ids.device), last])


def _apply_logit_rule(module: torch.nn.Module, layout: Layout, normed: torch.Tensor) -> torch.Tensor:
    """`layout.logits` applied to ``normed`` ``[..., d_model]``: logits ``[..., vocab]`` in the
    model's dtype, step by step in the order of the `LogitRule` docstring."""
    rule, config = layout.logits, module.config
    x = normed
    if rule.input_scale_flag and getattr(config, rule.input_scale_flag, False):
        x = x * (normed.shape[-1] ** -0.5)
    if rule.project is not None:
        project = _optional_module(module, rule.project)
        if project is not None:
            x = project(x)
    logits = module.get_output_embeddings()(x)
    scale = getattr(config, rule.scale, None) if rule.scale else None
    if scale is not None:
        logits = logits * scale
    divide = getattr(config, rule.divide, None) if rule.divide else None
    if divide is not None:
        logits = logits / divide
    cap = getattr(config, rule.softcap, None) if rule.softcap else None
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _optional_module(module: torch.nn.Module, path: str) -> torch.nn.Module | None:
    """The submodule at `path`, or None where the path ends in an attribute set to None (OPT's
    ``project_out`` exists only when the embedding width differs from the model width)."""
    owner, _, name = path.rpartition(".")
    try:
        parent = module.get_submodule(owner) if owner else module
    except AttributeError as err:
        raise SiteError(f"the logit rule's `project` path {path!r} does not exist on model type "
                        f"{module.config.model_type!r} ({err}); fix the Layout's LogitRule") from None
    if not hasattr(parent, name):
        raise SiteError(f"the logit rule's `project` path {path!r} does not exist on model type "
                        f"{module.config.model_type!r}; fix the Layout's LogitRule")
    found = getattr(parent, name)
    return found if isinstance(found, torch.nn.Module) else None


# A short prompt for the load-time check of the logit rule (token ids, reduced modulo the vocabulary).
_CHECK_IDS = (1, 8, 15, 22, 29, 36)


@torch.no_grad()
def check_logit_rule(module: torch.nn.Module, layout: Layout) -> None:
    """Compare `unembed`'s rule with the model's own forward on one short prompt: the output
    of the final norm of the last stack (the one the output head reads), decoded by the rule,
    must equal the forward's last-position logits within 1e-4 relative (or a few units of the
    dtype's precision in half precision).

    Raises `ModelLoadError` naming the architecture, the rule and the mismatch.
    """
    head = module.get_output_embeddings()
    if head is None:
        raise ModelLoadError(f"model type {module.config.model_type!r} has no output embedding "
                             "(get_output_embeddings() is None); load it with its language-model head "
                             "(AutoModelForCausalLM or AutoModelForSeq2SeqLM)")
    vocab = int(head.weight.shape[0])
    device = next(module.parameters()).device
    ids = torch.tensor([[i % vocab for i in _CHECK_IDS]], device=device)
    kwargs: dict[str, Any] = {"decoder_input_ids": ids} if getattr(module.config, "is_encoder_decoder", False) else {}
    norm = module.get_submodule(layout.stacks[-1].final_norm)
    seen: dict[str, torch.Tensor] = {}

    def keep(_module: torch.nn.Module, _args: tuple, output: Any) -> None:
        seen["normed"] = output[0] if isinstance(output, tuple) else output

    handle = norm.register_forward_hook(keep)
    try:
        logits = module(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, **kwargs).logits
    finally:
        handle.remove()
    want = logits[:, -1].float()
    try:
        got = _apply_logit_rule(module, layout, seen["normed"][:, -1]).float()
    except RuntimeError as err:  # e.g. a final norm output the output embedding cannot take
        raise ModelLoadError(
            f"the architecture table's logit rule for model type {module.config.model_type!r} (architecture "
            f"{layout.architecture!r}: {layout.logits.describe()}) cannot be applied to the output of final norm "
            f"{layout.stacks[-1].final_norm!r} (shape {tuple(seen['normed'].shape)}): {err}. Fix the Layout's "
            "`final_norm` or `logits` (a LogitRule: scale, divide, softcap, input_scale_flag, project)") from None
    dtype = seen["normed"].dtype
    rtol = max(1e-4, 8 * torch.finfo(dtype).eps) if dtype.is_floating_point else 1e-4
    scale = float(want.abs().max().clamp_min(1.0))
    error = float((got - want).abs().max()) if got.shape == want.shape else float("inf")
    if not error <= rtol * scale:
        ratio = float((want.norm() / got.norm().clamp_min(1e-30))) if got.shape == want.shape else float("nan")
        raise ModelLoadError(
            f"the architecture table's logit rule for model type {module.config.model_type!r} "
            f"(architecture {layout.architecture!r}: {layout.logits.describe()}) does not reproduce the "
            f"model's own logits: max abs difference {error:.3g} on logits of size up to {scale:.3g} "
            f"(tolerance {rtol:g} relative; the model's logits are {ratio:.4g} times the rule's in norm). "
            "Fix the Layout's `logits` (a LogitRule: scale, divide, softcap, input_scale_flag, project) and "
            "register it again with register_architecture(..., replace=True); nothing is computed on these logits"
        )
