"""Edge attribution patching: which head or MLP output, read by which later reader, carries the effect.

    attribute_edges(model, clean, corrupt, metric)   every edge from a writer into the residual
                                                     stream (the embedding, each head's output,
                                                     each MLP's output) to a later reader of it
                                                     (each head's queries, keys and values, each
                                                     MLP's input, the logits), per pair
    EdgeMap                                          the scores ``[n_pairs, writers, readers]`` and
                                                     their names

An edge u -> v is v reading u's contribution through the residual stream. Its score is the
first-order estimate of patching that edge alone from clean into corrupt (edge attribution
patching, Syed et al. 2023, arXiv 2310.10348; the node estimates of
`harness.measures.attribution`)::

    score(u -> v) = sum over positions of (w_u(clean) - w_u(corrupt)) . dM/dx_v

``w_u`` is what u writes into the residual stream (the embedding: ``blocks.1.resid_pre``; head h
of block L: its share of ``blocks.L.attn_out``; an MLP: ``blocks.L.mlp_out``), and ``dM/dx_v``
the gradient of the metric on the corrupt run with respect to the residual stream *as v alone
reads it*: for a reader of block L's attention, the gradient at ``blocks.L.resid_pre`` through
that head's queries (or that key/value head's keys or values) only; for block L's MLP, the
gradient at its input (``blocks.L.resid_mid``, or ``resid_pre`` in parallel blocks) through the
MLP only; for the logits, the gradient at the final norm's input. A head's write is taken
through the block's own map from heads to ``attn_out`` (the output projection, and the
post-attention norm where the architecture has one, linearised at the corrupt run), so a head's
score is ``(z_clean - z_corrupt)_h . J_h^T dM/dx_v`` with ``z`` the head's slice of the output
projection's input. Scores are effects on the metric (``patched - corrupt``), not values.

Under grouped-query attention, a key/value head's keys and values are one reader shared by the
query heads that read them (query head h reads key/value head ``h // (n_heads / n_kv_heads)``):
its score is the sum over those query heads (the gradient at the shared keys is the sum of what
each query head sends back), and it is not split among them; the readers are named
``blocks.L.attn.k.head{g}`` / ``attn.v.head{g}`` with g the key/value head.

Edges exist from a writer to every reader downstream of it: a writer of block L' to the heads of
blocks L > L', to the MLPs of blocks L > L' (and, in sequential blocks, a head of block L to the
MLP of block L), to the logits; the embedding to every reader. The other entries are NaN. The
decomposition needs a residual stream that is the plain sum of the embedding and the blocks'
``attn_out`` and ``mlp_out`` (checked on the clean run; a residual multiplier, as in Granite,
is refused).

How it runs: per batch of pairs, one forward of the clean prompts (recording), one forward of
the corrupt prompts with gradients, one backward for the gradients at every reader's output,
then for each reader the small backward passes from its output to its residual input and from
each upstream block's ``attn_out`` to that block's heads (retaining the graph). Gradients are
enabled locally, nothing is left on the parameters, every hook is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from harness.errors import DataError, InterventionError
from harness.interventions import Record, intervene
from harness.models.loaded import LoadedModel
from harness.models.logits import last_logits
from harness.models.sites import Site
from harness.measures.attribution_engine import (_check_slope, _checked, _grad_on, _graded, _pairs, _scored, _Tap,
                                                 _usual_mode, _zeros)
from harness.measures.patching import Metric

__all__ = ["attribute_edges", "EdgeMap"]


@dataclass(frozen=True)
class EdgeMap:
    """Per-pair edge scores: ``scores[i, u, v]`` is the estimated change of pair i's metric when
    reader ``readers[v]`` reads writer ``writers[u]``'s clean contribution (NaN where v is not
    downstream of u). ``clean`` / ``corrupt``: the metric of the unpatched runs, ``[n]``."""

    scores: torch.Tensor     # [n, writers, readers] float32
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    clean: torch.Tensor
    corrupt: torch.Tensor
    lengths: torch.Tensor
    fingerprint: str

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    def mean(self) -> torch.Tensor:
        """Mean over pairs, ``[writers, readers]`` (NaN where there is no edge)."""
        return self.scores.mean(0)

    def edge(self, writer: str, reader: str) -> torch.Tensor:
        """The scores of one edge, ``[n]``; `KeyError` naming the known names for an unknown one."""
        for name, names in ((writer, self.writers), (reader, self.readers)):
            if name not in names:
                raise KeyError(f"{name!r} is not among {list(names)}")
        return self.scores[:, self.writers.index(writer), self.readers.index(reader)]

    def top(self, k: int = 10) -> list[tuple[str, str, float]]:
        """The `k` edges of largest mean |score| over pairs: ``(writer, reader, mean score)``."""
        mean = self.mean()
        order = torch.nan_to_num(mean.abs(), nan=-1.0).flatten().argsort(descending=True)[:k]
        n_readers = mean.shape[1]
        return [(self.writers[i // n_readers], self.readers[i % n_readers], float(mean.flatten()[i]))
                for i in order.tolist() if not torch.isnan(mean.flatten()[i])]


@_usual_mode
def attribute_edges(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                    mlps: bool = True, batch_size: int = 64) -> EdgeMap:
    """Edge attribution patching between the embedding, heads and MLPs and their later readers.

    Example::

        edges = attribute_edges(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s))
        edges.scores.shape       # [n_pairs, writers, readers]
        edges.top(5)             # [('blocks.1.attn.head3', 'blocks.2.attn.k.head1', 0.41), ...]

    `clean`, `corrupt`, `metric`, `batch_size`: as the node maps (`harness.measures.attribution`).
    `mlps`: include the MLPs as writers and readers (False: heads, the embedding and the logits
    only). Writers are ``embed``, ``blocks.L.attn.head{h}``, ``blocks.L.mlp_out``; readers
    ``blocks.L.attn.{q,k,v}.head{i}`` (q: query heads; k, v: key/value heads), ``blocks.L.mlp_in``
    and ``logits``, in block order.

    Raises the node maps' errors (pairs, metrics without a gradient, sites cut from the graph),
    `InterventionError` for a model whose residual stream is not the plain sum of its writers
    (naming the block and the mismatch) or whose sequential blocks have no ``resid_mid`` site,
    and `SiteError` for a model without query/key/value sites.
    """
    if not isinstance(mlps, bool):
        raise DataError(f"`mlps` must be True or False, got {mlps!r}")
    stack = model.main_stack
    shape = model.sites.stack(stack)
    n_layers, n_heads, n_kv, d_head = shape.n_layers, shape.n_heads, shape.kv_heads, shape.d_head
    parallel = bool(getattr(model.layout, "parallel", False))
    for which in ("q", "k", "v"):
        model.site(stack, 1, f"attn.{which}")          # SiteError, saying why, where the model lacks them
    if mlps and not parallel and "resid_mid" not in shape.points:
        raise InterventionError(f"edges into the MLPs of {model.name} need the residual between attention and MLP "
                                "(resid_mid), which this model's site table lacks; pass mlps=False")
    writers = ["embed"]
    readers: list[str] = []
    for L in range(1, n_layers + 1):
        writers += [f"blocks.{L}.attn.head{h}" for h in range(n_heads)] + ([f"blocks.{L}.mlp_out"] if mlps else [])
        readers += [f"blocks.{L}.attn.q.head{h}" for h in range(n_heads)]
        readers += [f"blocks.{L}.attn.{w}.head{g}" for w in ("k", "v") for g in range(n_kv)]
        readers += [f"blocks.{L}.mlp_in"] if mlps else []
    readers.append("logits")
    runs = _pairs(model, clean, corrupt, metric, batch_size)
    n = runs.mask.shape[0]
    parts, cleans, corrupts = [], [], []
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(start + batch_size, n), device=runs.mask.device)
        width = int(runs.mask[rows].sum(1).max())
        s, c, x = _edge_batch(model, runs.ids_clean[rows, :width], runs.ids_corrupt[rows, :width],
                              runs.mask[rows, :width], rows, metric, mlps=mlps, parallel=parallel,
                              dims=(n_layers, n_heads, n_kv, d_head), n_writers=len(writers), n_readers=len(readers))
        parts.append(s)
        cleans.append(c)
        corrupts.append(x)
    return EdgeMap(scores=torch.cat(parts), writers=tuple(writers), readers=tuple(readers), clean=torch.cat(cleans),
                   corrupt=torch.cat(corrupts), lengths=runs.mask.sum(1).cpu(), fingerprint=model.fingerprint)


def _edge_batch(model: LoadedModel, ids_c: torch.Tensor, ids_x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                metric: Metric, *, mlps: bool, parallel: bool, dims: tuple[int, int, int, int], n_writers: int,
                n_readers: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_layers, n_heads, n_kv, d_head = dims
    stack = model.main_stack

    def site(L: int, point: str, **kw: Any) -> Site:
        return model.site(stack, L, point, **kw)

    resid = {L: site(L, "resid_pre") for L in range(1, n_layers + 1)}
    mid = {L: site(L, "resid_pre" if parallel else "resid_mid") for L in range(1, n_layers + 1)} if mlps else {}
    heads = {L: [site(L, "head", head=h) for h in range(n_heads)] for L in range(1, n_layers + 1)}
    attn = {L: site(L, "attn_out") for L in range(1, n_layers + 1)}
    mlp = {L: site(L, "mlp_out") for L in range(1, n_layers + 1)}
    qkv = {(L, w): site(L, f"attn.{w}") for L in range(1, n_layers + 1) for w in "qkv"}
    final = site(n_layers, "final_norm_in")
    tapped = list(dict.fromkeys([*resid.values(), *mid.values(), *[h for L in heads for h in heads[L]],
                                 *attn.values(), *mlp.values(), *qkv.values(), final]))
    masks = {stack: mask}
    with torch.no_grad():
        with intervene(model, {s: Record() for s in tapped}, masks=masks) as rec:
            clean_metric = _scored(metric, last_logits(model, ids_c, mask), rows, grad=False).float()
    clean = rec.recorded
    _check_residual_sum(model, clean, resid, attn, mlp, final, n_layers)
    real = mask.bool()[..., None].float()
    with _grad_on():
        taps = {s: _Tap(_zeros(model, s, mask)) for s in tapped}
        with intervene(model, dict(taps), masks=masks):
            logits = _graded(model, last_logits(model, ids_x, mask), tapped[0])
            values = _scored(metric, logits, rows, grad=True)
        _check_slope(values.sum(), logits)
        outs = [*[qkv[k] for k in qkv], *(mlp.values() if mlps else []), final]
        grads = dict(zip(outs, _checked(torch.autograd.grad(values.sum(), [taps[s].delta for s in outs],
                                                            retain_graph=True, allow_unused=True), outs, model)))
        corrupt = {s: taps[s].seen["act"] for s in tapped}
        delta = {s: (clean[s].float() - corrupt[s].float()) * real for s in tapped}
        scores = torch.full((mask.shape[0], n_writers, n_readers), float("nan"))
        per_block = n_heads + (1 if mlps else 0)                   # writers per block
        per_reader_block = n_heads + 2 * n_kv + (1 if mlps else 0)

        def writer(L: int, j: int) -> int:                        # j: head index, or n_heads for the MLP
            return 1 + (L - 1) * per_block + j

        def score_into(v: int, G: torch.Tensor, before: int, heads_of_block: int | None) -> None:
            """Fill reader v's column: writers of blocks < `before` (and the heads of `heads_of_block`)."""
            G = G.float() * real
            scores[:, 0, v] = (delta[resid[1]] * G).sum((1, 2)).detach().cpu()
            blocks = list(range(1, before)) + ([heads_of_block] if heads_of_block else [])
            for L in blocks:
                got = torch.autograd.grad(taps[attn[L]].seen["out"], [taps[h].delta for h in heads[L]],
                                          grad_outputs=G.to(taps[attn[L]].seen["out"].dtype), retain_graph=True,
                                          allow_unused=True)
                for h, g in enumerate(_checked(got, heads[L], model)):
                    scores[:, writer(L, h), v] = (delta[heads[L][h]] * g.float()).sum((1, 2)).detach().cpu()
                if mlps and L < before:
                    scores[:, writer(L, n_heads), v] = (delta[mlp[L]] * G).sum((1, 2)).detach().cpu()

        for L in range(1, n_layers + 1):
            base = (L - 1) * per_reader_block
            columns = [("q", h, base + h) for h in range(n_heads)]
            columns += [(w, g, base + n_heads + (w == "v") * n_kv + g) for w in ("k", "v") for g in range(n_kv)]
            for w, i, v in columns:
                out = taps[qkv[L, w]].seen["out"]
                g = torch.zeros_like(grads[qkv[L, w]])
                g[..., i * d_head:(i + 1) * d_head] = grads[qkv[L, w]][..., i * d_head:(i + 1) * d_head]
                (G,) = _checked(torch.autograd.grad(out, [taps[resid[L]].delta], grad_outputs=g.to(out.dtype),
                                                    retain_graph=True, allow_unused=True), [resid[L]], model)
                score_into(v, G, L, None)
            if mlps:
                out = taps[mlp[L]].seen["out"]
                (G,) = _checked(torch.autograd.grad(out, [taps[mid[L]].delta], grad_outputs=grads[mlp[L]].to(out.dtype),
                                                    retain_graph=True, allow_unused=True), [mid[L]], model)
                score_into(base + per_reader_block - 1, G, L, None if parallel else L)
        score_into(n_readers - 1, grads[final], n_layers + 1, None)
    return scores, clean_metric.cpu(), values.detach().float().cpu()


def _check_residual_sum(model: LoadedModel, rec: dict, resid: dict, attn: dict, mlp: dict, final: Site,
                        n_layers: int) -> None:
    """The residual stream must be the embedding plus every block's attn_out and mlp_out."""
    for L in range(1, n_layers + 1):
        want = rec[resid[L + 1]] if L < n_layers else rec[final]
        got = rec[resid[L]] + rec[attn[L]] + rec[mlp[L]]
        err = float((got.float() - want.float()).abs().max())
        scale = float(want.float().abs().max().clamp_min(1.0))
        if err > 1e-3 * scale:
            raise InterventionError(
                f"edge attribution needs a residual stream that is the plain sum of the embedding and every block's "
                f"attn_out and mlp_out, but on {model.name} block {L}'s input plus its attn_out and mlp_out differs "
                f"from its output by up to {err:.3g} (values up to {scale:.3g}): the architecture scales or "
                "normalises the residual between blocks, so a writer's contribution to a later reader is not its "
                "output; use the node maps (harness.measures.attribution) on this model")
