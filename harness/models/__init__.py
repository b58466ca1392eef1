"""Models and sites: loading a model, naming the places inside it, batching its inputs.

    load          load_model / load_study_model / from_module, LoadedModel, padding and length order
    sites         Site (``blocks.3.resid_post``, ``blocks.2.attn.head1``, ``blocks.2.attn.k.head0``,
                  ``blocks.1.mlp_post.neurons[45:51]``, ``blocks.3.resid_mid``), SiteTable
    site_hooks    where a site lives on a concrete model: Hook (module, input/output, columns), site_table
    architectures per-architecture site tables (GPT-2, Llama/Qwen2, Gemma-2, T5/ByT5)
    fixtures      the project's fixture models: seeded recipes under ``fixtures/``, built and cached
"""
