"""Measures: what a claim computes on a model, batched and padding-aware.

    scores        log-probabilities and logit differences of continuations
    directions    class-mean directions and their random, shuffled-label and within-class controls
    sweeps        alpha sweeps of an edit along a direction, Curve
    patching      activation patching maps (residual layer x position, layer x head), metrics
    patching_outputs  patching what each block's attention and MLP add (layer x attn_out/mlp_out)
    patching_units  patching single MLP neurons (layer x neuron) and each head's queries, keys or values
    patching_engine  the one engine behind every patching map: cells (site, positions, columns) replayed from their block
    attribution   attribution patching: first-order estimates of every patching map from one backward pass
                  (AtP, AtP*'s qk fix and GradDrop, integrated gradients)
    attribution_edges  edge attribution patching: writers (embedding, heads, MLPs) to later readers
    attribution_engine  the attribution maps' taps, gates and gradients
    agreement     how far two maps over the same pairs agree (estimate vs measurement, patching vs tracing)
    tracing       causal tracing as ROME: noised subject embeddings, clean states restored one at a time
    das           distributed alignment search: learn a subspace whose interchange gives a causal model's answer
    replay        the patching maps' suffix replay: re-run only the blocks and positions a cell changes
    batching      batches that fit: halve a batch that runs out of memory, size one from the memory available
    generate      greedy decoding (under interventions, per-row coefficients, stop rules), exact match
    divergence    how far a steered generation moves from the baseline: similarity ratios, length ratio
    decoding      generate's loop: left-padded batches, the key/value cache, per-row edits, stop rules
    lens          the logit lens
    probes        linear probes with shuffled-label controls
    attention     attention weights read under eager attention
"""
