"""Edge attribution patching (`harness.measures.attribution_edges`) against path patching.

The oracle patches one edge with raw torch hooks on the Hugging Face GPT-2 modules: the corrupt
forward in which one reader (a head's queries, keys or values, an MLP, the final norm) reads the
residual stream plus the writer's clean-minus-corrupt contribution, everything else unchanged.
On a GPT-2 whose final norm is the identity, edges into the logits are linear in the metric and
equal the oracle within 1e-5; on tiny random GPT-2 every edge correlates with it. With identity
input norms (queries, keys, values linear in the residual) the edges into each query head and
each key/value head of a Qwen2 (grouped-query attention) sum to that head's node estimate within
1e-5. The names,
NaN layout and key/value readers under grouped-query attention; models whose residual is not a
plain sum are refused; nothing is left on the model.
"""

from __future__ import annotations

import pytest
import torch

from harness.errors import DataError, InterventionError
from harness.interventions import Record, intervene
from harness.measures.attribution import attribute_qkv_map
from harness.measures.attribution_edges import EdgeMap, attribute_edges
from harness.models.load import from_module
from harness.models.loaded import LoadedModel, pad_rows
from tests.harness.measures.test_attribution import CLEAN, CORRUPT, METRIC, gpt2, hook_count, load, pearson


def recorded(m: LoadedModel, texts, sites):
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    with torch.no_grad(), intervene(m, {s: Record() for s in sites}, masks={"blocks": mask}) as rec:
        m.module(input_ids=ids, attention_mask=mask)
    return rec.recorded, ids, mask


def path_patched(m: LoadedModel, edges: EdgeMap) -> torch.Tensor:
    """The oracle: ``[n, writers, readers]`` of path-patched metric changes (NaN where no edge), GPT-2."""
    t = m.module.transformer
    n_layers, n_heads = len(t.h), m.module.config.n_head
    d = m.module.config.n_embd // n_heads
    sites = [m.site(f"blocks.{L}.{p}") for L in range(1, n_layers + 1) for p in ("resid_pre", "mlp_out")]
    sites += [m.site("blocks", L, "head", head=h) for L in range(1, n_layers + 1) for h in range(n_heads)]
    clean, _, _ = recorded(m, CLEAN, sites)
    corrupt, ids, mask = recorded(m, CORRUPT, sites)
    real = mask.bool()[..., None]
    last = mask.sum(1) - 1
    rows = torch.arange(ids.shape[0])

    def write(name: str) -> torch.Tensor:
        if name == "embed":
            site = m.site("blocks.1.resid_pre")
            return (clean[site] - corrupt[site]) * real
        parts = name.split(".")
        L = int(parts[1])
        if parts[2] == "mlp_out":
            site = m.site(name)
            return (clean[site] - corrupt[site]) * real
        h = int(parts[3][4:])
        site = m.site("blocks", L, "head", head=h)
        w_o = t.h[L - 1].attn.c_proj.weight[h * d:(h + 1) * d]       # Conv1D: [in, out]
        return ((clean[site] - corrupt[site]) @ w_o) * real

    def metric_with(handles_of) -> torch.Tensor:
        handles = handles_of()
        try:
            with torch.no_grad():
                logits = m.module(input_ids=ids, attention_mask=mask).logits[rows, last]
        finally:
            for handle in handles:
                handle.remove()
        return logits[:, 100] - logits[:, 101]

    base = metric_with(lambda: [])
    out = torch.full(edges.scores.shape, float("nan"))
    for u, writer in enumerate(edges.writers):
        dw = write(writer)
        for v, reader in enumerate(edges.readers):
            if torch.isnan(edges.scores[:, u, v]).all():
                continue
            if reader == "logits":
                def hooks(dw=dw):
                    return [t.ln_f.register_forward_pre_hook(lambda mod, args: (args[0] + dw,))]
            elif reader.endswith("mlp_in"):
                block = t.h[int(reader.split(".")[1]) - 1]

                def hooks(dw=dw, block=block):
                    seen = {}
                    return [block.ln_2.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0])),
                            block.mlp.register_forward_hook(
                                lambda mod, args, o: mod.forward(block.ln_2.forward(seen["x"] + dw)))]
            else:
                _, layer, _, which, head = reader.split(".")
                block = t.h[int(layer) - 1]
                i = int(head[4:])
                start = {"q": 0, "k": n_heads * d, "v": 2 * n_heads * d}[which] + i * d

                def hooks(dw=dw, block=block, start=start):
                    seen = {}

                    def edit(mod, args, o):
                        o = o.clone()
                        o[..., start:start + d] = mod.forward(block.ln_1.forward(seen["x"] + dw))[..., start:start + d]
                        return o

                    return [block.register_forward_pre_hook(lambda mod, args, kw: seen.update(
                                x=args[0] if args else kw["hidden_states"]), with_kwargs=True),
                            block.attn.c_attn.register_forward_hook(edit)]
            out[:, u, v] = metric_with(hooks) - base
    return out


def test_edges_into_the_logits_equal_path_patching_where_the_read_out_is_linear():
    module = gpt2()
    module.transformer.ln_f = torch.nn.Identity()
    m = load(module, "planted:linear-readout-edges")
    edges = attribute_edges(m, CLEAN, CORRUPT, METRIC)
    want = path_patched(m, edges)
    logits = edges.readers.index("logits")
    assert not edges.scores[:, :, logits].isnan().any()
    assert want[:, :, logits].abs().max() > 0.1
    err = (edges.scores[:, :, logits] - want[:, :, logits]).abs().max()
    assert err < 1e-5, f"writer -> logits edges differ from path patching by up to {err:.3g}"


def test_every_edge_correlates_with_path_patching_on_a_tiny_random_gpt2():
    from tests._support.architectures import loaded

    m = loaded("gpt2", "eager")
    edges = attribute_edges(m, CLEAN, CORRUPT, METRIC, batch_size=2)
    want = path_patched(m, edges)
    assert torch.equal(edges.scores.isnan(), want.isnan())
    r = pearson(edges.scores, want)
    assert r > 0.8, f"Pearson r {r:.3f} between edge estimates and path patching"     # measured 0.92


def test_names_and_the_edges_that_exist_under_grouped_query_attention():
    from tests._support.architectures import loaded

    m = loaded("qwen2", "eager")                           # 2 blocks, 4 query heads, 2 key/value heads
    edges = attribute_edges(m, CLEAN, CORRUPT, METRIC)
    assert edges.writers == ("embed", *[f"blocks.{L}.{w}" for L in (1, 2)
                                        for w in ("attn.head0", "attn.head1", "attn.head2", "attn.head3", "mlp_out")])
    block = ["attn.q.head0", "attn.q.head1", "attn.q.head2", "attn.q.head3", "attn.k.head0", "attn.k.head1",
             "attn.v.head0", "attn.v.head1", "mlp_in"]
    assert edges.readers == (*[f"blocks.{L}.{r}" for L in (1, 2) for r in block], "logits")
    assert edges.scores.shape == (5, 11, 19)
    exists = ~edges.scores[0].isnan()
    assert exists[0].all()                                                  # the embedding feeds every reader
    assert exists[:, -1].all()                                              # every writer feeds the logits
    head_1_0 = edges.writers.index("blocks.1.attn.head0")
    assert exists[head_1_0, edges.readers.index("blocks.1.mlp_in")]         # same block: its MLP
    assert not exists[head_1_0, edges.readers.index("blocks.1.attn.k.head1")]   # not its own attention
    assert exists[head_1_0, edges.readers.index("blocks.2.attn.k.head1")]
    assert not exists[edges.writers.index("blocks.2.mlp_out"), edges.readers.index("blocks.2.mlp_in")]
    assert edges.edge("embed", "logits").shape == (5,)
    assert len(edges.top(4)) == 4 and all(not torch.isnan(torch.tensor(s)) for _, _, s in edges.top(4))
    with pytest.raises(KeyError, match="blocks.9.mlp_out"):
        edges.edge("blocks.9.mlp_out", "logits")


def test_a_residual_that_is_not_a_plain_sum_is_refused():
    from tests._support.architectures import loaded

    with pytest.raises(InterventionError, match="plain sum of the embedding"):
        attribute_edges(loaded("granite", "eager"), CLEAN, CORRUPT, METRIC)


def test_nothing_is_left_on_the_model_and_bad_options_are_errors():
    from tests._support.architectures import loaded

    m = loaded("gemma2", "eager")
    hooks = hook_count(m)
    with torch.no_grad():
        edges = attribute_edges(m, CLEAN, CORRUPT, METRIC, mlps=False)
        assert not torch.is_grad_enabled()
    assert all(p.grad is None for p in m.module.parameters()) and hook_count(m) == hooks
    assert not any("mlp" in name for name in edges.writers + edges.readers)
    with pytest.raises(DataError, match="`mlps` must be True or False"):
        attribute_edges(m, CLEAN, CORRUPT, METRIC, mlps="yes")
    with pytest.raises(DataError, match="carry no gradient from the logits"):
        attribute_edges(m, CLEAN, CORRUPT, lambda logits, pairs: logits.argmax(-1).float())


def test_edges_into_each_reader_sum_to_its_node_estimate_under_grouped_query_attention():
    """With identity input norms the queries, keys and values are linear in the residual, so the
    edges into a reader, summed over every writer upstream of it, are exactly the node estimate of
    that query head or key/value head (`attribute_qkv_map` at every position): a key/value head's
    edges carry the gradient of all the query heads that share it."""
    from tests._support.architectures import build, byte_tokenizer

    module = build("qwen2")                                     # 4 query heads, 2 key/value heads
    for layer in module.model.layers:
        layer.input_layernorm = torch.nn.Identity()
    m = from_module(module, byte_tokenizer(), name="planted:qwen2-linear-qkv")
    edges = attribute_edges(m, CLEAN, CORRUPT, METRIC)
    for which in ("q", "k", "v"):
        node = attribute_qkv_map(m, CLEAN, CORRUPT, METRIC, which=which)
        want = node.values - node.corrupt[:, None, None]              # [n, blocks, heads]
        for r, L in enumerate(node.layers):
            for c, head in enumerate(node.columns):
                reader = edges.readers.index(f"blocks.{L}.attn.{which}.head{head}")
                got = edges.scores[:, :, reader].nansum(1)
                assert torch.allclose(got, want[:, r, c], atol=1e-5), (which, L, head, got, want[:, r, c])
    assert want.abs().max() > 0.1
