"""Directions: pooled states against hand computation, class-mean directions and their seeded
controls, RMS normalisation, and the safetensors round trip."""

from __future__ import annotations

import math

import pytest
import torch

from harness.measures.directions import (
    Direction,
    class_mean_direction,
    load_directions,
    pooled_states,
    random_direction,
    save_directions,
    shuffled_label_direction,
    within_class_direction,
)
from harness.errors import DataError, ShapeError
from harness.interventions import Record, intervene
from harness.models.loaded import LoadedModel, pad_rows
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["the quick brown fox", "hi", "abcdefg", "a much longer input, padded the least", "xyz",
         "hello world", "q", "seven and a half"]  # 8 inputs of different lengths
SITE = "blocks.1.resid_post"


def site_of(arch: str) -> str:
    if arch == "byt5-small":
        return "encoder.6.resid_post"
    return f"blocks.{tiny_model(arch).sites.stacks[0].n_layers // 2}.resid_post"


def recorded(m: LoadedModel, site: str, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The activation at `site` over a right-padded batch of `texts`, and its attention mask."""
    site = m.site(site)
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    with torch.no_grad(), intervene(m, {site: Record()}, masks={site.stack: mask}) as run:
        if m.is_encoder_decoder:
            m.module.get_encoder()(input_ids=ids, attention_mask=mask)
        else:
            m.module(input_ids=ids, attention_mask=mask)
    return run.recorded[site], mask


def two_classes(n: int = 200, d: int = 16, signal: float = 5.0, seed: int = 0):
    """Synthetic states: class "pos" at +signal * e0, class "neg" at -signal * e0, unit noise."""
    g = torch.Generator().manual_seed(seed)
    labels = ["pos" if i % 2 == 0 else "neg" for i in range(n)]
    states = torch.randn(n, d, generator=g)
    states[:, 0] += torch.tensor([signal if label == "pos" else -signal for label in labels])
    return states, labels


def close(got: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> bool:
    """Equal within `tol` relative to the largest activation (float32 sums of ~30-sized values
    differ by a few 1e-6 relative between batch shapes)."""
    scale = max(1.0, float(expected.abs().max()))
    return got.shape == expected.shape and float((got - expected).abs().max()) <= tol * scale


archs = pytest.mark.parametrize("arch", ARCHITECTURES)


# --------------------------------------------------------------------------- pooled_states


@archs
def test_pooled_states_is_the_mean_of_the_recorded_activation_over_real_tokens(arch):
    m = tiny_model(arch)
    site = site_of(arch)
    act, mask = recorded(m, site, TEXTS)
    expected = torch.stack([act[i, : int(mask[i].sum())].mean(0) for i in range(len(TEXTS))])
    got = pooled_states(m, TEXTS, site, batch_size=8)
    assert got.shape == (len(TEXTS), m.width(m.site(site))) and got.dtype == torch.float32
    assert close(got, expected)


@archs
def test_pooling_a_padded_batch_equals_pooling_one_input_at_a_time(arch):
    m = tiny_model(arch)
    site = site_of(arch)
    singles = pooled_states(m, TEXTS, site, batch_size=1)
    assert close(pooled_states(m, TEXTS, site, batch_size=8), singles)
    assert close(pooled_states(m, TEXTS, site, batch_size=3), singles)


@pytest.mark.parametrize(("arch", "layer"), [("gpt2", 6), ("byt5-small", 6)])
def test_pooled_resid_post_is_the_mean_hidden_state_of_a_plain_forward(arch, layer):
    m = tiny_model(arch)
    stack = "encoder" if m.is_encoder_decoder else "blocks"
    forward = m.module.get_encoder() if m.is_encoder_decoder else m.module
    expected = []
    with torch.no_grad():
        for text in TEXTS:
            out = forward(input_ids=torch.tensor(m.tokenize([text])), output_hidden_states=True)
            expected.append(out.hidden_states[layer][0].mean(0))
    got = pooled_states(m, TEXTS, f"{stack}.{layer}.resid_post")
    assert close(got, torch.stack(expected))


def test_pooled_states_with_max_length_pools_the_truncated_input():
    m = tiny_model("gpt2")
    long = "abcdefghijklmnop"
    # the byte tokenizer keeps max_length - 1 bytes and its end-of-sequence token
    assert torch.allclose(pooled_states(m, [long], SITE, max_length=5), pooled_states(m, [long[:4]], SITE),
                          atol=1e-6)


def test_pooled_states_of_a_decoder_site_of_an_encoder_decoder_is_an_error():
    with pytest.raises(DataError, match=r"pooled_states reads encoder sites of an encoder-decoder "
                                        r"\(the stack the input tokens index\); got decoder.2.resid_post"):
        pooled_states(tiny_model("byt5-small"), TEXTS, "decoder.2.resid_post")


def test_pooled_states_of_no_inputs_is_an_error():
    with pytest.raises(DataError, match=r"`inputs` is empty; pooled states need at least one example"):
        pooled_states(tiny_model("gpt2"), [], SITE)


def test_pooled_states_of_a_bare_string_is_an_error():
    with pytest.raises(DataError, match=r"`inputs` must be a list of strings, got a single str; wrap it in a list"):
        pooled_states(tiny_model("gpt2"), "hello", SITE)


def test_pooled_states_leaves_no_hooks_behind():
    m = tiny_model("byt5-small")

    def hooks():
        return [(dict(mod._forward_hooks), dict(mod._forward_pre_hooks)) for mod in m.module.modules()]

    before = hooks()
    pooled_states(m, TEXTS, "encoder.3.resid_post", batch_size=3)
    assert hooks() == before


# --------------------------------------------------------------------------- class-mean direction and controls


def test_class_mean_direction_is_the_difference_of_the_two_class_means_exactly():
    states, labels = two_classes(n=9)
    d = class_mean_direction(states, labels, positive="pos", negative="neg", site=SITE)
    pos = torch.tensor([label == "pos" for label in labels])
    assert torch.equal(d.vector, states[pos].mean(0) - states[~pos].mean(0))
    assert (d.site, d.kind, d.seed) == (SITE, "class-mean", None)


def test_class_mean_direction_ignores_examples_with_other_labels():
    states, labels = two_classes(n=10)
    labels = labels[:8] + ["other", "other"]
    d = class_mean_direction(states, labels, positive="pos", negative="neg", site=SITE)
    assert torch.equal(d.vector, states[0:8:2].mean(0) - states[1:8:2].mean(0))


@pytest.mark.parametrize("which", ["positive", "negative"])
def test_a_label_with_no_examples_is_an_error_that_lists_the_labels_seen(which):
    states, labels = two_classes(n=6)
    kwargs = {"positive": "pos", "negative": "neg", which: "intro"}
    with pytest.raises(DataError, match=rf"no examples with the {which} label 'intro'; labels seen: \['neg', 'pos'\]"):
        class_mean_direction(states, labels, site=SITE, **kwargs)


def test_labels_of_mixed_types_are_listed_when_a_label_is_missing():
    states = torch.randn(3, 4)
    with pytest.raises(DataError, match=r"no examples with the positive label 'intro'; labels seen: .*None"):
        class_mean_direction(states, ["apply", None, 2], positive="intro", negative="apply", site=SITE)


@pytest.mark.parametrize("make", [
    lambda s, l: class_mean_direction(s, l, positive="pos", negative="neg", site=SITE),
    lambda s, l: shuffled_label_direction(s, l, positive="pos", negative="neg", site=SITE, seed=0),
    lambda s, l: within_class_direction(s, l, label="pos", site=SITE, seed=0),
], ids=["class_mean", "shuffled_label", "within_class"])
def test_labels_of_another_length_than_the_states_are_an_error(make):
    states, labels = two_classes(n=6)
    with pytest.raises(ShapeError, match=r"`labels` has 5 entries but `states` has 6 rows"):
        make(states, labels[:5])


def test_a_random_direction_is_norm_matched_and_seeded():
    like = Direction(torch.randn(64, generator=torch.Generator().manual_seed(1)) * 7.0, SITE, "class-mean")
    r = random_direction(like, seed=3)
    assert r.vector.shape == like.vector.shape
    assert r.norm == pytest.approx(like.norm, rel=1e-6)
    assert (r.site, r.kind, r.seed) == (SITE, "random (norm-matched)", 3)
    assert torch.equal(random_direction(like, seed=3).vector, r.vector)
    other = random_direction(like, seed=4).vector
    assert abs(float(torch.nn.functional.cosine_similarity(other, r.vector, dim=0))) < 0.5


def test_a_random_direction_leaves_the_global_torch_generator_alone():
    like = Direction(torch.ones(16), SITE, "class-mean")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_direction(like, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_the_shuffled_label_direction_is_seeded_and_loses_the_class_signal():
    states, labels = two_classes()
    signal = class_mean_direction(states, labels, positive="pos", negative="neg", site=SITE)
    shuffled = shuffled_label_direction(states, labels, positive="pos", negative="neg", site=SITE, seed=1)
    again = shuffled_label_direction(states, labels, positive="pos", negative="neg", site=SITE, seed=1)
    assert torch.equal(shuffled.vector, again.vector)
    assert not torch.equal(shuffled_label_direction(states, labels, positive="pos", negative="neg", site=SITE,
                                                    seed=2).vector, shuffled.vector)
    assert (shuffled.site, shuffled.kind, shuffled.seed) == (SITE, "shuffled-label class-mean", 1)
    assert shuffled.norm < 0.2 * signal.norm


def test_the_within_class_direction_is_seeded_and_much_smaller_than_the_class_mean():
    states, labels = two_classes()
    signal = class_mean_direction(states, labels, positive="pos", negative="neg", site=SITE)
    within = within_class_direction(states, labels, label="pos", site=SITE, seed=1)
    assert torch.equal(within_class_direction(states, labels, label="pos", site=SITE, seed=1).vector, within.vector)
    assert not torch.equal(within_class_direction(states, labels, label="pos", site=SITE, seed=2).vector,
                           within.vector)
    assert (within.site, within.kind, within.seed) == (SITE, "within-class split (pos)", 1)
    assert within.norm < 0.2 * signal.norm


def test_the_within_class_direction_is_the_difference_of_two_halves_of_the_class():
    states, labels = two_classes(n=8)
    within = within_class_direction(states, labels, label="neg", site=SITE, seed=0)
    neg = states[1::2]  # 4 rows, halves of 2: mean(a) + mean(b) = 2 mean(neg), mean(a) - mean(b) = within
    half_a = neg.mean(0) + within.vector / 2
    assert any(torch.allclose(half_a, neg[list(pair)].mean(0), atol=1e-6)
               for pair in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])


@pytest.mark.parametrize("n", [0, 1])
def test_a_within_class_split_of_fewer_than_two_examples_is_an_error(n):
    states, labels = two_classes(n=6)
    labels = ["neg"] * (6 - n) + ["pos"] * n
    with pytest.raises(DataError, match=rf"need at least 2 examples labelled 'pos' to split, got {n}"):
        within_class_direction(states, labels, label="pos", site=SITE, seed=0)


# --------------------------------------------------------------------------- rms_normalised


def test_an_rms_normalised_direction_has_unit_rms_and_norm_sqrt_d():
    d = Direction(torch.randn(48, generator=torch.Generator().manual_seed(0)) * 3.0, SITE, "class-mean", 4)
    unit = d.rms_normalised()
    assert float(unit.vector.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-6)
    assert unit.norm == pytest.approx(math.sqrt(48), rel=1e-6)
    assert torch.allclose(unit.vector * (d.norm / unit.norm), d.vector, atol=1e-5)  # same direction
    assert (unit.site, unit.kind, unit.seed) == (SITE, "class-mean (rms-normalised)", 4)


def test_rms_normalising_a_zero_direction_is_an_error():
    with pytest.raises(DataError, match=r"direction 'class-mean' at blocks.1.resid_post is zero; "
                                        r"it cannot be normalised"):
        Direction(torch.zeros(8), SITE, "class-mean").rms_normalised()


# --------------------------------------------------------------------------- save / load


def some_directions() -> dict[str, Direction]:
    g = torch.Generator().manual_seed(0)
    planted = Direction(torch.randn(16, generator=g), "blocks.4.block_out", "class-mean")
    return {"planted": planted, "random": random_direction(planted, seed=7),
            "within": Direction(torch.randn(16, generator=g), "encoder.12.resid_post", "within-class split (a)", 0)}


def test_saved_directions_load_back_with_their_vectors_sites_kinds_and_seeds(tmp_path):
    directions = some_directions()
    path = save_directions(tmp_path / "directions.safetensors", directions)
    assert path == tmp_path / "directions.safetensors"
    loaded = load_directions(path)
    assert set(loaded) == set(directions)
    for name, d in directions.items():
        got = loaded[name]
        assert torch.equal(got.vector, d.vector) and got.vector.dtype == torch.float32
        assert (got.site, got.kind, got.seed) == (d.site, d.kind, d.seed), name


def test_saving_directions_leaves_no_temporary_file_and_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "directions.safetensors"
    save_directions(path, some_directions())
    save_directions(path, some_directions())  # overwriting works the same way
    assert sorted(p.name for p in path.parent.iterdir()) == ["directions.safetensors"]


def test_one_vector_saved_under_two_names_or_as_views_of_one_tensor_round_trips(tmp_path):
    shared = torch.randn(3, 8)
    d = Direction(shared[0], SITE, "class-mean")
    directions = {"a": d, "alias": d, "row1": Direction(shared[1], SITE, "class-mean"),
                  "column": Direction(shared[:, 0], SITE, "class-mean")}
    loaded = load_directions(save_directions(tmp_path / "d.safetensors", directions))
    for name, direction in directions.items():
        assert torch.equal(loaded[name].vector, direction.vector), name


def test_a_failed_save_leaves_neither_the_file_nor_a_temporary_file(tmp_path, monkeypatch):
    import safetensors.torch

    def fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_directions(tmp_path / "d.safetensors", some_directions())
    assert list(tmp_path.iterdir()) == []


def test_loading_a_missing_directions_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(DataError, match=rf"directions file '{missing}' does not exist"):
        load_directions(missing)
