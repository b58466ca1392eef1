"""Every random draw gives an example the same values whatever its batch: its row, its
neighbours and their lengths, the padded width, the padding side, the chunk it ran in.

`Noise` draws each real position's values from (seed, the row's real token ids, the position
counted among them, the width); the seeded direction controls rank rows by a hash of
(seed, the row's key), so they depend on the set of rows, not their order. Draws are compared
bit for bit (`torch.equal`), never within a tolerance.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.measures.directions import Direction, random_direction, shuffled_label_direction, within_class_direction
from harness.errors import DataError, InterventionError, ShapeError
from harness.interventions import Context, Noise, Patch, Positions, Record, intervene, noise_draw
from harness.models.loaded import LoadedModel, pad_rows
from harness.interventions.prefix import capture, replay_start
from harness.measures.scores import logprob, next_token_logits
from tests._support.tiny import ARCHITECTURES, gpt2_24, tiny_model

RESID, HEAD = "blocks.1.resid_pre", "blocks.2.attn.head1"  # widths 24 and 6
POOL = ["ab", "x", "a much longer neighbour", "hello world", "ab", "zz top", "q"]


def padded(m: LoadedModel, texts, side: str = "right"):
    rows = m.tokenize(list(texts))
    if side == "right":
        return pad_rows(rows, pad_id=m.pad_id)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), m.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.as_tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


def drawn(m: LoadedModel, texts, site: str, noise: Noise, side: str = "right") -> list[torch.Tensor]:
    """The values `noise` adds at each row's real positions, ``[n_real, d]`` per row.

    The site is patched to zero first, so what is recorded is exactly ``0 + std * draw``.
    """
    ids, mask = padded(m, texts, side)
    s = m.site(site)
    zeros = torch.zeros(ids.shape[0], ids.shape[1], m.width(s))  # a head site sees its own columns
    with torch.no_grad(), intervene(m, {s: [Patch(zeros), noise, Record()]}, masks={"blocks": mask}) as run:
        m.module(input_ids=ids, attention_mask=mask)
    got = run.recorded[s]
    return [got[b][mask[b].bool()] for b in range(len(texts))]


def chunked(m, texts, site, noise, size, side="right") -> list[torch.Tensor]:
    out = []
    for i in range(0, len(texts), size):
        out += drawn(m, texts[i:i + size], site, noise, side)
    return out


def alone(m, texts, site, noise) -> list[torch.Tensor]:
    return [drawn(m, [t], site, noise)[0] for t in texts]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- the bug report


@pytest.mark.parametrize("site", [RESID, HEAD])
def test_the_reported_batches_give_row_0_the_same_noise_bit_for_bit(site):
    m = gpt2_24()
    noise = Noise(std=1.0, seed=123)
    short = drawn(m, ["ab", "x"], site, noise)[0]
    long = drawn(m, ["ab", "a much longer neighbour"], site, noise)[0]
    assert short.shape == (3, m.width(m.site(site)))  # "ab" and </s>
    assert torch.equal(short, long)
    assert short.abs().min() > 0  # noise was drawn at every real token


@pytest.mark.parametrize("site", [RESID, HEAD])
def test_the_reported_batches_add_the_same_noise_to_row_0s_activation(site):
    """The issue's measurement itself: (noised - plain) on row 0's real tokens."""
    m, s = gpt2_24(), gpt2_24().site(site)

    def delta(texts):
        ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
        out = []
        for plan in ({s: Record()}, {s: [Noise(std=1.0, seed=123), Record()]}):
            with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}) as run:
                m.module(input_ids=ids, attention_mask=mask)
            out.append(run.recorded[s][0, : int(mask[0].sum())])
        return out[1] - out[0]

    assert (delta(["ab", "x"]) - delta(["ab", "a much longer neighbour"])).abs().max() < 1e-5


# --------------------------------------------------------------------------- batch layout


@pytest.mark.parametrize("site", [RESID, HEAD])
def test_reordering_rechunking_and_repadding_never_change_an_examples_noise(site):
    m, noise = gpt2_24(), Noise(std=1.0, seed=7)
    texts = POOL
    reference = alone(m, texts, site, noise)
    assert same(drawn(m, texts, site, noise), reference)
    assert same(drawn(m, texts, site, noise, side="left"), reference)
    order = [3, 0, 6, 2, 5, 1, 4]
    assert same(drawn(m, [texts[i] for i in order], site, noise), [reference[i] for i in order])
    for size in (2, 3):
        assert same(chunked(m, texts, site, noise, size), reference)
        assert same(chunked(m, texts, site, noise, size, side="left"), reference)
    assert torch.equal(reference[0], reference[4])  # the same example twice: the same noise


@settings(max_examples=8, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=5), st.sampled_from(["left", "right"]),
       st.integers(1, 5), st.integers(-3, 10**12))
def test_property_any_batch_layout_gives_each_example_its_own_noise(texts, side, size, seed):
    m, noise = gpt2_24(), Noise(std=1.0, seed=seed)
    assert same(chunked(m, texts, RESID, noise, size, side), alone(m, texts, RESID, noise))


def test_the_draw_is_the_documented_function_of_seed_tokens_position_and_width():
    m, noise = gpt2_24(), Noise(std=1.0, seed=5)
    got = drawn(m, ["x", "hello"], HEAD, noise, side="left")[1]
    tokens = m.tokenize(["hello"])[0]
    assert torch.equal(got, torch.stack([noise_draw(5, tokens, k, 6) for k in range(len(tokens))]))


def test_std_scales_the_same_draw_and_other_seeds_or_tokens_draw_otherwise():
    m = gpt2_24()
    one = drawn(m, ["hello"], RESID, Noise(std=1.0, seed=1))[0]
    assert torch.equal(drawn(m, ["hello"], RESID, Noise(std=0.5, seed=1))[0], one * 0.5)
    assert not torch.equal(drawn(m, ["hello"], RESID, Noise(std=1.0, seed=2))[0], one)
    assert not torch.equal(drawn(m, ["hellp"], RESID, Noise(std=1.0, seed=1))[0], one)


def test_a_positions_draw_does_not_depend_on_which_other_positions_are_selected():
    m = gpt2_24()
    every = drawn(m, POOL[:3], RESID, Noise(std=1.0, seed=3))
    last = drawn(m, POOL[:3], RESID, Noise(std=1.0, seed=3, positions=Positions.last()))
    for a, b in zip(every, last):
        assert torch.equal(b[-1], a[-1])
        assert b[:-1].abs().max() == 0


def test_padding_is_never_noised_on_either_side():
    m, s = gpt2_24(), gpt2_24().site(RESID)
    for side in ("left", "right"):
        ids, mask = padded(m, ["ab", "hello world"], side)
        runs = []
        for plan in ({s: Record()}, {s: [Noise(std=1.0, seed=0), Record()]}):
            with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}) as run:
                m.module(input_ids=ids, attention_mask=mask)
            runs.append(run.recorded[s])
        pad = ~mask.bool()
        assert torch.equal(runs[0][pad], runs[1][pad])


def test_a_score_with_a_continuation_gets_the_same_noise_on_the_prompt_as_next_token_logits():
    """`logprob` runs prompt + continuation (a wider padded batch) with the prompt as the
    intervention mask; the prompt's noise must be what `next_token_logits` gives it."""
    m = tiny_model("gpt2")
    texts = ["hello world", "hi"]
    plan = {"blocks.2.resid_pre": Noise(std=2.0, seed=11)}
    lp = logprob(m, texts, "e", interventions=plan)
    logits = next_token_logits(m, texts, interventions=plan)
    e = m.tokenize(["e"], add_special_tokens=False)[0][0]
    assert torch.allclose(lp, torch.log_softmax(logits, -1)[:, e], atol=1e-4)
    alone_lp = torch.cat([logprob(m, [t], "e", interventions=plan) for t in texts])
    assert torch.allclose(lp, alone_lp, atol=1e-4)


def test_encoder_and_decoder_sites_of_t5_key_rows_by_their_own_stacks_tokens():
    t5 = tiny_model("byt5-small")
    enc, dec = t5.site("encoder.3.resid_pre"), t5.site("decoder.2.resid_pre")

    def run(texts, decoder_rows):
        ids, mask = pad_rows(t5.tokenize(texts), pad_id=0)
        dec_ids, dec_mask = pad_rows(decoder_rows, pad_id=0)
        plan = {enc: [Patch(torch.zeros(*ids.shape, 32)), Noise(std=1.0, seed=4), Record()],
                dec: [Patch(torch.zeros(*dec_ids.shape, 32)), Noise(std=1.0, seed=4), Record()]}
        with torch.no_grad(), intervene(t5, plan, masks={"encoder": mask, "decoder": dec_mask}) as r:
            t5.module(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask)
        return r.recorded[enc][0][mask[0].bool()], r.recorded[dec][0][dec_mask[0].bool()]

    a = run(["hello"], [[0, 40, 41]])
    b = run(["hello", "a much longer neighbour"], [[0, 40, 41], [0, 1, 2, 3, 4, 5]])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[1], torch.stack([noise_draw(4, [0, 40, 41], k, 32) for k in range(3)]))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_reads_the_rows_tokens_from_its_stack(arch):
    m = tiny_model(arch)
    stack = m.main_stack
    site = m.site(f"{stack}.2.resid_pre")

    def first_row(texts):
        ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
        zeros = torch.zeros(*ids.shape, m.width(site))
        with torch.no_grad(), intervene(m, {site: [Patch(zeros), Noise(std=1.0, seed=3), Record()]},
                                        masks={stack: mask}) as run:
            if m.is_encoder_decoder:
                m.module.get_encoder()(input_ids=ids, attention_mask=mask)
            else:
                m.module(input_ids=ids, attention_mask=mask)
        return run.recorded[site][0][mask[0].bool()]

    assert torch.equal(first_row(["ab", "x"]), first_row(["ab", "a much longer neighbour"]))


# --------------------------------------------------------------------------- replays of cached blocks


def test_a_replay_of_cached_blocks_needs_the_rows_tokens_and_then_draws_the_same_noise():
    m = gpt2_24()
    site = m.site("blocks.3.resid_pre")
    texts = ["hello world", "ab", "zz top"]
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    prefix = capture(m, "blocks", start=replay_start(m, site), ids=ids, mask=mask,
                     run=lambda: m.module(input_ids=ids, attention_mask=mask, use_cache=False))
    rows = torch.tensor([2, 0])
    zeros = torch.zeros(2, ids.shape[1], 24)
    with pytest.raises(InterventionError, match=re.escape(
            "Noise at blocks.3.resid_pre keys each row's noise by its real token ids, but the blocks stack "
            "was not called with `input_ids` in this forward")):
        with intervene(m, {site: Noise(std=1.0, seed=9)}, masks={"blocks": mask[rows]}):
            prefix.replay(rows)
    tokens = [m.tokenize([texts[i]])[0] for i in rows.tolist()]
    with intervene(m, {site: [Patch(zeros), Noise(std=1.0, seed=9, tokens=tokens), Record()]},
                   masks={"blocks": mask[rows]}) as run:
        prefix.replay(rows)
    got = [run.recorded[site][b][mask[rows][b].bool()] for b in range(2)]
    assert same(got, [drawn(m, [texts[i]], "blocks.3.resid_pre", Noise(std=1.0, seed=9))[0] for i in (2, 0)])


def test_ids_of_an_earlier_forward_in_the_same_block_are_not_reused_by_a_replay():
    m = gpt2_24()
    site = m.site("blocks.3.resid_pre")
    ids, mask = pad_rows(m.tokenize(["hello world", "ab"]), pad_id=m.pad_id)
    prefix = capture(m, "blocks", start=2, ids=ids, mask=mask,
                     run=lambda: m.module(input_ids=ids, attention_mask=mask, use_cache=False))
    with pytest.raises(InterventionError, match="was not called with `input_ids`"):
        with torch.no_grad(), intervene(m, {site: Noise(std=1.0, seed=9)}, masks={"blocks": mask}):
            m.module(input_ids=ids, attention_mask=mask)  # fine: ids seen
            prefix.replay(torch.tensor([0, 1]))             # the same shape, but no ids of its own


def test_a_replay_of_positions_start_on_is_refused_rather_than_given_shifted_noise():
    """patching's suffix replay hands hooks ``mask[:, start:]``: counting real positions from
    `start` would shift the noise, so the token count check refuses it."""
    m = gpt2_24()
    site = m.site("blocks.3.resid_pre")
    texts = ["hello world", "zz top"]
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    noise = Noise(std=1.0, seed=1, tokens=m.tokenize(texts))
    act = torch.zeros(2, ids.shape[1] - 2, 24)
    where = torch.ones(2, ids.shape[1] - 2, dtype=torch.bool)
    with pytest.raises(ShapeError, match=r"`tokens` row 0 of Noise has 12 ids but the mask at blocks.3.resid_pre "
                                         r"marks 10 real positions.*counted from `start`"):
        noise.apply(act, where, site, None, Context(real=mask[:, 2:].bool()))


def test_tokens_that_disagree_with_the_forwards_ids_are_an_error():
    m = gpt2_24()
    with pytest.raises(InterventionError, match=r"`tokens` row 1 of Noise is .* but the forward's input ids"):
        drawn(m, ["ab", "cd"], RESID, Noise(std=1.0, seed=0, tokens=m.tokenize(["ab", "ce"])))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, message", [
    ({"std": -1.0, "seed": 0}, "`std` of Noise must be a finite number >= 0, got -1.0"),
    ({"std": float("nan"), "seed": 0}, "`std` of Noise must be a finite number >= 0, got nan"),
    ({"std": "0.1", "seed": 0}, "`std` of Noise must be a finite number >= 0, got '0.1'"),
    ({"std": True, "seed": 0}, "`std` of Noise must be a finite number >= 0, got True"),
    ({"std": 1.0, "seed": 1.5}, "`seed` of Noise must be an integer, got 1.5 (float); pass a whole number"),
    ({"std": 1.0, "seed": "3"}, "`seed` of Noise must be an integer, got '3' (str)"),
    ({"std": 1.0, "seed": True}, "`seed` of Noise must be an integer, got True (bool)"),
    ({"std": 1.0, "seed": 0, "tokens": "ab"}, "`tokens` of Noise must be one list of token ids per batch row"),
    ({"std": 1.0, "seed": 0, "tokens": [[1, 2], [1.5]]}, "`tokens` row 1 of Noise must be a list of integer token ids"),
])
def test_bad_noise_arguments_are_intervention_errors_naming_the_argument_and_value(kwargs, message):
    with pytest.raises(InterventionError, match=re.escape(message)):
        Noise(**kwargs)


def test_numpy_scalars_are_accepted_and_the_seed_is_stored_as_an_int():
    import numpy as np

    noise = Noise(std=np.float32(0.5), seed=np.int64(3))
    assert noise.seed == 3 and type(noise.seed) is int
    assert Noise(std=0, seed=-4).seed == -4


def test_noise_applied_outside_intervene_is_an_error():
    with pytest.raises(InterventionError, match=r"install it with intervene\(\.\.\.\)"):
        Noise(std=1.0, seed=0).apply(torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool),
                                     gpt2_24().site(RESID), None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- direction controls


def test_a_random_direction_depends_only_on_the_seed_and_the_width():
    like = Direction(torch.randn(24, generator=torch.Generator().manual_seed(0)), "s", "class-mean")
    flipped = Direction(-like.vector, "s", "class-mean")  # another vector of exactly the same norm
    torch.manual_seed(1)
    a = random_direction(like, seed=5)
    torch.manual_seed(2)
    b = random_direction(flipped, seed=5)
    assert torch.equal(a.vector, b.vector)
    assert not torch.equal(random_direction(like, seed=6).vector, a.vector)


def test_a_direction_control_without_a_seed_outside_a_claim_is_an_error():
    from harness.errors import StatsError

    with pytest.raises(StatsError, match="random_direction: `seed` is required outside a claim"):
        random_direction(Direction(torch.ones(4), "s", "class-mean"))


@pytest.mark.parametrize("seed", [1.0, "1", True])
def test_a_non_integer_seed_of_a_direction_control_is_an_error(seed):
    states, labels = torch.randn(6, 4), ["a", "b"] * 3
    like = Direction(torch.ones(4), "s", "class-mean")
    for make in (lambda: random_direction(like, seed=seed),
                 lambda: shuffled_label_direction(states, labels, positive="a", negative="b", site="s", seed=seed),
                 lambda: within_class_direction(states, labels, label="a", site="s", seed=seed)):
        with pytest.raises(DataError, match=r"`seed` of \w+ must be an integer, got " + re.escape(repr(seed))):
            make()


def two_classes(n: int = 40, d: int = 8):
    g = torch.Generator().manual_seed(0)
    labels = ["pos" if i % 3 else "neg" for i in range(n)]
    states = torch.randn(n, d, generator=g)
    states[:, 0] += torch.tensor([4.0 if label == "pos" else -4.0 for label in labels])
    keys = [f"example {i}" for i in range(n)]
    return states, labels, keys


def controls(states, labels, keys=None, seed=0):
    return (shuffled_label_direction(states, labels, positive="pos", negative="neg", site="s", seed=seed, keys=keys),
            within_class_direction(states, labels, label="pos", site="s", seed=seed, keys=keys))


@settings(max_examples=15, deadline=None)
@given(st.permutations(list(range(40))), st.booleans(), st.integers(0, 2**40))
def test_property_the_direction_controls_do_not_depend_on_the_rows_order(perm, with_keys, seed):
    states, labels, keys = two_classes()
    base = controls(states, labels, keys if with_keys else None, seed)
    moved = controls(states[perm], [labels[i] for i in perm], [keys[i] for i in perm] if with_keys else None, seed)
    for a, b in zip(base, moved):
        assert torch.equal(a.vector, b.vector)


def test_the_within_class_split_ignores_the_other_classes_rows():
    states, labels, keys = two_classes()
    pos = [i for i, label in enumerate(labels) if label == "pos"]
    sub = within_class_direction(states[pos], [labels[i] for i in pos], label="pos", site="s", seed=3,
                                 keys=[keys[i] for i in pos])
    full = within_class_direction(states, labels, label="pos", site="s", seed=3, keys=keys)
    assert torch.equal(sub.vector, full.vector)


def test_with_keys_the_shuffle_survives_last_bit_changes_of_the_states():
    """States of one example pooled in another batch may differ in the last bits; keyed by the
    example, the shuffle and split stay the same (the directions move by those bits only)."""
    states, labels, keys = two_classes()
    nudged = states * (1 + 1e-7)
    for a, b in zip(controls(states, labels, keys, 2), controls(nudged, labels, keys, 2)):
        assert torch.allclose(a.vector, b.vector, atol=1e-5)


def test_keys_of_the_wrong_length_or_kind_are_errors():
    states, labels, keys = two_classes()
    with pytest.raises(ShapeError, match=r"`keys` has 39 entries but `states` has 40 rows"):
        controls(states, labels, keys[:-1])
    with pytest.raises(DataError, match=r"`keys` entry 0 is 1.5 \(float\)"):
        controls(states, labels, [1.5] * 40)
