"""The arith fixture: the expression generator and the shipped held-out splits, the character
tokenizer, the shipped trained weights (GPT-2 layout, save/reload identity, accuracy in its band,
enough wrong parenthesised rows to patch), the untrained null twin, and (slow) the recipe's
first steps, which replay the shipped run bit for bit."""

from __future__ import annotations

import json
import random

import pytest
import torch

from fixtures.arith import recipe
from recipes import FIXTURES

from harness.models.load import fingerprint, load_model, pad_rows

FAMILY = FIXTURES / "arith"
SHIPPED = FAMILY / "arith"
FLAT_MIN, PAREN_MIN = 0.7, 0.6       # exact-match accuracy the study needs on test.jsonl
MIN_WRONG_PAREN = 150                # wrong parenthesised rows in test.jsonl, for correct->incorrect pairs


data = recipe.data()


@pytest.fixture(scope="module")
def arith(cache):
    return load_model("fixture:arith")


@pytest.fixture(scope="module")
def splits():
    return {name: data.read_rows(recipe.DATA_DIR / f"{name}.jsonl") for name in recipe.SPLITS}


@pytest.fixture(scope="module")
def shipped_log():
    return json.loads((SHIPPED / "train_log.json").read_text())


# --------------------------------------------------------------------------- the generator


def test_the_generator_is_seeded():
    a, b = data.generate(200, seed=7), data.generate(200, seed=7)
    assert a == b and a != data.generate(200, seed=8)
    assert data.generate_split(50, seed=3) == data.generate_split(50, seed=3)


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_expressions_have_the_depth_asked_for_and_bounded_answers(depth):
    rng = random.Random(depth)
    for _ in range(300):
        expr = data.expression(rng, depth)
        assert expr.endswith("=") and expr.count("=") == 1
        assert data.paren_depth(expr) == depth
        assert abs(data.evaluate(expr)) <= data.MAX_ABS_ANSWER
        assert set(expr) <= set("0123456789+-*()=")
        numbers = expr[:-1].replace("(", " ").replace(")", " ")
        for op in "+-*":
            numbers = numbers.replace(op, " ")
        assert all(len(n) <= 2 for n in numbers.split())  # operands of one or two digits


def test_products_multiply_two_single_digits_and_never_nest():
    import re

    for expr in data.generate(3000, seed=5):
        assert not re.search(r"[)]\*|\*[(]", expr), expr
        for a, b in re.findall(r"(\d+)\*(\d+)", expr):
            assert len(a) == len(b) == 1, expr


@pytest.mark.parametrize(("expr", "answer", "depth"), [
    ("41-((65+69)-69)=", "-24", 2),
    ("(91*63)-(72*78)=", "117", 1),
    ("8-57-2*23=", "-95", 0),
    ("0*4+54*4=", "216", 0),
    ("(4+(26-(9*14)))+5=", "-91", 3),
])
def test_a_row_records_the_answer_and_shape_of_its_expression(expr, answer, depth):
    row = data.make_row(expr)
    assert row == {"expression": expr, "answer": answer, "has_parens": depth > 0, "depth": depth,
                   "n_tokens": len(expr)}


# --------------------------------------------------------------------------- the shipped splits


def test_the_recipe_records_the_generator_it_was_built_with(monkeypatch):
    import hashlib

    assert recipe.DATA_SHA256 == hashlib.sha256((FAMILY / "data.py").read_bytes()).hexdigest()
    monkeypatch.setattr(recipe, "DATA_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match=r"data.py has sha256 \w+ but recipe.py records DATA_SHA256 = '0+'"):
        recipe.data()


def test_the_shipped_splits_are_what_the_recipe_generates(splits):
    assert splits == recipe.held_out_splits()
    for name, (n, _) in recipe.SPLITS.items():
        assert len(splits[name]) == n
        assert (recipe.DATA_DIR / f"{name}.jsonl").stat().st_size < 1_000_000


def test_split_rows_have_the_schema_and_consistent_fields(splits):
    for rows in splits.values():
        for r in rows:
            assert set(r) == set(data.FIELDS)
            assert r["answer"] == str(data.evaluate(r["expression"]))
            assert r["depth"] == data.paren_depth(r["expression"])
            assert r["has_parens"] == ("(" in r["expression"]) == (r["depth"] > 0)
            assert r["n_tokens"] == len(r["expression"]) == len(recipe.encode(r["expression"]))


def test_the_splits_mix_flat_and_parenthesised_and_are_disjoint(splits):
    seen: set[str] = set()
    for rows in splits.values():
        expressions = {r["expression"] for r in rows}
        assert len(expressions) == len(rows) and expressions.isdisjoint(seen)
        seen |= expressions
        paren = sum(r["has_parens"] for r in rows) / len(rows)
        assert 0.4 <= paren <= 0.6
        assert {r["depth"] for r in rows} == {0, 1, 2, 3}


def test_flat_held_out_rows_have_three_terms_and_two_term_prompts_are_for_training_only(splits):
    import re

    for rows in splits.values():
        for r in rows:
            if not r["has_parens"]:
                assert len(re.findall(r"\d+(?:\*\d+)?", r["expression"])) == 3, r
    prompts = data.generate(2000, seed=1, two_term_share=0.3)
    two = [p for p in prompts if len(re.findall(r"\d+(?:\*\d+)?", p)) == 2 and "(" not in p]
    assert 0.2 <= len(two) / len(prompts) <= 0.4


def test_the_training_prompts_exclude_every_held_out_expression(splits):
    held = {r["expression"] for rows in splits.values() for r in rows}
    kw = {"seed": recipe.SEED + 101, "two_term_share": recipe.TWO_TERM_SHARE}
    assert held.isdisjoint(data.generate(20_000, exclude=held, **kw))
    assert held & set(data.generate(20_000, **kw))  # short flat ones do recur unfiltered


def test_read_rows_names_a_missing_file_and_how_to_get_it(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=rf"arithmetic split {missing} does not exist; .*--write-data"):
        data.read_rows(missing)


@pytest.mark.parametrize(("line", "message"), [
    ('{"expression": "1+2=", "answer": "3", "has_parens": false, "depth": 0}',
     r":2: row has no field 'n_tokens'"),
    ('{"expression": "1+2=", "answer": 3, "has_parens": false, "depth": 0, "n_tokens": 4}',
     r":2: field 'answer' should be str, got 3"),
    ("not json", r":2: not a JSON object"),
])
def test_read_rows_names_the_line_and_field_of_a_bad_row(tmp_path, line, message):
    path = tmp_path / "rows.jsonl"
    good = json.dumps(data.make_row("1+2="))
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        data.read_rows(path)


# --------------------------------------------------------------------------- the tokenizer


def test_the_tokenizer_is_one_token_per_character_and_round_trips(arith, splits):
    exprs = [r["expression"] for r in splits["test"][:300]]
    full = [r["expression"] + r["answer"] for r in splits["test"][:300]]
    for with_special in (True, False):
        rows = arith.tokenize(exprs + full, add_special_tokens=with_special)
        assert [len(r) for r in rows] == [len(t) for t in exprs + full]  # no BOS, no EOS
        assert rows == [recipe.encode(t) for t in exprs + full]
    for text, ids in zip(exprs + full, arith.tokenize(exprs + full)):
        assert arith.tokenizer.decode(ids) == text
    assert arith.tokenizer.convert_ids_to_tokens(arith.tokenize(["(7*8)="])[0]) == list("(7*8)=")
    assert (arith.pad_id, arith.tokenizer.eos_token_id) == (recipe.PAD, recipe.EOS)
    assert len(arith.tokenizer) == len(recipe.VOCAB) == arith.module.config.vocab_size


def test_a_prompt_and_its_answer_tokenize_to_the_prompt_then_the_answer(arith):
    prompt, answer = "41-((65+69)-69)=", "-24"
    p, a = arith.tokenize([prompt])[0], arith.tokenize([answer], add_special_tokens=False)[0]
    assert p + a == arith.tokenize([prompt + answer])[0]
    assert arith.tokenizer.convert_ids_to_tokens(p)[-1] == "="


# --------------------------------------------------------------------------- the shipped fixture


def test_the_shipped_fixture_is_used_and_has_gpt2s_topology(arith):
    from harness.models import fixtures
    assert arith.spec == "fixture:arith" and fixtures.resolve("arith") == SHIPPED
    assert type(arith.module).__name__ == "GPT2LMHeadModel"
    config = arith.module.config
    assert (config.n_layer, config.n_head, config.n_embd, config.n_positions) == (4, 4, 128, 32)
    assert [(s.name, s.n_layers, s.d_model) for s in arith.sites.stacks] == [("blocks", 4, 128)]
    assert 500_000 <= sum(p.numel() for p in arith.module.parameters()) <= 900_000
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 5_000_000


def test_saving_and_reloading_the_fixture_gives_identical_logits(arith, splits, tmp_path):
    arith.module.save_pretrained(tmp_path)
    arith.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))
    assert again.fingerprint == arith.fingerprint
    texts = [r["expression"] for r in splits["test"][:16]]
    ids, mask = pad_rows(arith.tokenize(texts), pad_id=arith.pad_id)
    with torch.no_grad():
        a = arith.module(input_ids=ids, attention_mask=mask).logits
        b = again.module(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(a, b)


def test_the_train_log_records_the_build(shipped_log):
    log = shipped_log
    assert log["trained"] is True and log["seed"] == recipe.SEED and log["steps"] == recipe.STEPS
    assert (log["batch"], log["lr"]) == (recipe.BATCH, recipe.LR)
    assert log["config"] == recipe.CONFIG and log["vocab"] == recipe.VOCAB
    assert log["seconds"] > 0 and log["peak_rss_mib"] > 0 and log["platform"]["threads"] == 1
    assert log["final_loss"] < log["loss_curve"][0]


def test_the_shipped_accuracy_meets_the_study_thresholds_but_is_not_perfect(shipped_log):
    held = shipped_log["heldout"]
    assert held["split"] == "data/test.jsonl"
    assert held["flat_accuracy"] > FLAT_MIN and held["paren_accuracy"] > PAREN_MIN
    assert held["paren_wrong"] >= MIN_WRONG_PAREN


def test_greedy_decoding_of_the_loaded_fixture_gives_the_logged_accuracy(arith, splits, shipped_log):
    rows = splits["test"][:400]
    answers = recipe.greedy_answers(arith.module, [r["expression"] for r in rows])
    assert all(set(a) <= set("-0123456789") for a in answers)
    acc = recipe.accuracy(arith.module, rows)
    held = shipped_log["heldout"]
    assert abs(acc["flat_accuracy"] - held["flat_accuracy"]) <= 0.08
    assert abs(acc["paren_accuracy"] - held["paren_accuracy"]) <= 0.08


def test_the_answer_is_predicted_at_the_equals_sign(arith):
    """The first answer character is the argmax at the last prompt position (the '=')."""
    prompts = ["12+7=", "3*9=", "50-(20+5)="]
    ids, mask = pad_rows(arith.tokenize(prompts), pad_id=arith.pad_id)
    with torch.no_grad():
        logits = arith.module(input_ids=ids, attention_mask=mask).logits
    first = [recipe.VOCAB[int(logits[i, len(p) - 1].argmax())] for i, p in enumerate(prompts)]
    assert first == [recipe.greedy_answers(arith.module, [p])[0][0] for p in prompts]


def test_the_null_twin_has_the_same_topology_and_cannot_do_arithmetic(cache, arith, splits):
    null = load_model("fixture:arith-null")
    assert null.fingerprint != arith.fingerprint
    assert null.module.config.to_dict() | {"_name_or_path": ""} == arith.module.config.to_dict() | {"_name_or_path": ""}
    assert [(s.name, s.n_layers, s.d_model) for s in null.sites.stacks] == [
        (s.name, s.n_layers, s.d_model) for s in arith.sites.stacks]
    assert fingerprint(recipe.new_model(recipe.SEED)) == null.fingerprint  # the seeded init, untrained
    assert null.tokenize(["(1+2)="]) == arith.tokenize(["(1+2)="])
    acc = recipe.accuracy(null.module, splits["test"][:300])
    assert acc["flat_accuracy"] < 0.05 and acc["paren_accuracy"] < 0.05


REPLAY_STEPS = recipe.WARMUP    # in the warm-up the learning rate does not depend on the total number of steps


@pytest.mark.slow
def test_the_recipe_replays_the_shipped_runs_first_steps(tmp_path, shipped_log):
    """The recipe rebuilds the shipped model: on the platform that built it, its first
    `REPLAY_STEPS` steps give the shipped run's loss curve bit for bit (same seed, data order and
    warm-up; a full rebuild is `python fixtures/arith/recipe.py --build OUT`, about an hour on one
    thread, too long for CI). Elsewhere float reductions may differ in the last bits, so there
    the curve must match to two decimals."""
    recipe.build(tmp_path, seed=recipe.SEED, train=True, steps=REPLAY_STEPS)
    log = json.loads((tmp_path / "train_log.json").read_text())
    replayed, shipped = log["loss_curve"], shipped_log["loss_curve"][: len(log["loss_curve"])]
    assert len(replayed) == REPLAY_STEPS // 50
    if log["platform"] == shipped_log["platform"]:
        assert replayed == shipped
    else:
        assert replayed == pytest.approx(shipped, abs=0.01)
