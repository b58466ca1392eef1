"""Models and sites: loading a model, naming the places inside it, batching its inputs.

    load          load_model / load_study_model / from_module / fingerprint: a spec in, a LoadedModel out
    loaded        LoadedModel (site, hook_for, width, tokenize), pad_rows and length_order: batching its inputs
    placement     loading options across devices (device_map, dtype, max_memory, offload_folder) through
                  accelerate, checked before the weights load
    sites         Site (``blocks.3.resid_post``, ``blocks.2.attn.head1``, ``blocks.2.attn.k.head0``,
                  ``blocks.1.mlp_post.neurons[45:51]``, ``blocks.3.resid_mid``), SiteTable
    site_table    what a concrete model offers: site_table builds its SiteTable (every path checked, widths
                  read off the modules, the points it lacks and why)
    site_hooks    where a site lives on a concrete model: Hook (module, input/output, columns), resolve_hook
    architectures the architecture table (Layout: module paths, logit rule, positions, replay policy),
                  register_architecture / architectures() and the interp_claims.architectures entry points
    layouts       the built-in table entries beyond T5, GPT-2, Llama/Qwen2 and Gemma-2
    pattern       one head's attention scores and pattern as hookable points (a harness eager attention
                  through transformers' attention interface), for the attn.scores / attn.pattern sites
    logits        unembed (logits from final-norm outputs by the architecture's LogitRule) and the
                  check at load that the rule reproduces the model's own logits
    gguf          GGUF checkpoints (a .gguf file, or a packaged real model by name), cached dequantised
    gguf_header   read_header, GGUFHeader: what a GGUF file says about itself (architecture, name,
                  quantisation), and whether transformers can read its architecture
    fixtures      the project's fixture models: seeded recipes under ``fixtures/``, built and cached
"""
