"""Study data: the LeanDojo reader, intro/apply labels, balanced sets, seeded splits with hashes,
the test500/test200 slices and goal spans checked against the ByT5 tokenizer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data import (
    CLASSES, TacticRow, balanced, content_hash, first_balanced, goal_spans, intro_apply_rows,
    load_split, read_leandojo, rows_from_theorems, save_split, split, tactic_class,
)
from harness.errors import DataError, HarnessError
from tests._support.paths import ROOT

SHIPPED = ROOT / "fixtures" / "tacgen" / "data" / "benchmark.json"


def theorem(name: str, *steps: tuple[str, str]) -> dict:
    return {"url": "https://example.org/repo", "commit": "0" * 40, "file_path": "A.lean", "full_name": name,
            "start": [1, 1], "end": [2, 1],
            "traced_tactics": [{"tactic": t, "annotated_tactic": [t, []], "state_before": s, "state_after": "no goals"}
                               for s, t in steps]}


def rows_of(n_intro: int, n_apply: int, n_other: int = 0) -> list[TacticRow]:
    rows = [TacticRow(f"x{i} : ℕ\n⊢ ∀ (n : ℕ), n ≤ n + {i}", f"intro n{i}", f"T.i{i}", 0) for i in range(n_intro)]
    rows += [TacticRow(f"h{i} : p → q\n⊢ q{i}", f"apply h{i}", f"T.a{i}", 0) for i in range(n_apply)]
    rows += [TacticRow(f"h : q\n⊢ q{i}", "exact h", f"T.e{i}", 0) for i in range(n_other)]
    return rows


def labelled(n_intro: int, n_apply: int) -> list[TacticRow]:
    return intro_apply_rows(rows_of(n_intro, n_apply))


@pytest.fixture(scope="module")
def tokenizer():
    import transformers

    return transformers.ByT5Tokenizer()


# --------------------------------------------------------------------------- reading


def test_the_shipped_benchmark_reads_as_rows_in_file_order():
    rows = read_leandojo(SHIPPED)
    theorems = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert len(rows) == sum(len(t["traced_tactics"]) for t in theorems)
    first = theorems[0]
    assert rows[0] == TacticRow(first["traced_tactics"][0]["state_before"], first["traced_tactics"][0]["tactic"],
                                first["full_name"], 0)
    assert all("⊢" in r.state for r in rows)
    assert rows == rows_from_theorems(theorems)


def test_the_shipped_benchmark_has_enough_rows_for_the_default_balanced_set():
    rows = intro_apply_rows(read_leandojo(SHIPPED))
    counts = {c: sum(r.label == c for r in rows) for c in CLASSES}
    assert min(counts.values()) >= 2500, counts
    assert len(read_leandojo(SHIPPED)) > len(rows)  # other tactic families are there too


@pytest.mark.parametrize("layout", ["flat", "random"])
def test_a_benchmark_folder_reads_train_val_test_in_that_order(tmp_path, layout):
    folder = tmp_path / "leandojo_benchmark_4"
    parts = folder / "random" if layout == "random" else folder
    parts.mkdir(parents=True)
    for part in ("test", "train", "val"):  # written out of order on purpose
        (parts / f"{part}.json").write_text(json.dumps([theorem(f"{part}.thm", ("⊢ p → p", f"intro h_{part}"))]))
    rows = read_leandojo(folder)
    assert [r.theorem for r in rows] == ["train.thm", "val.thm", "test.thm"]
    assert read_leandojo(parts) == rows


def test_a_benchmark_folder_may_hold_only_some_parts(tmp_path):
    (tmp_path / "test.json").write_text(json.dumps([theorem("t", ("⊢ p", "exact hp"), ("⊢ q", "simp"))]))
    rows = read_leandojo(tmp_path)
    assert [(r.theorem, r.index, r.tactic) for r in rows] == [("t", 0, "exact hp"), ("t", 1, "simp")]


def test_a_missing_path_says_what_to_pass(tmp_path):
    with pytest.raises(DataError, match=r"`path` '.*nowhere.json' does not exist; pass a LeanDojo Benchmark 4 JSON file"):
        read_leandojo(tmp_path / "nowhere.json")


def test_a_folder_without_benchmark_files_says_what_it_should_hold(tmp_path):
    (tmp_path / "notes.json").write_text("[]")
    with pytest.raises(DataError, match=r"is a folder without train.json, val.json or test.json"):
        read_leandojo(tmp_path)


@pytest.mark.parametrize(("content", "detail"), [
    ("not json at all", r"it is not UTF-8 JSON \(JSONDecodeError"),
    ('{"theorems": []}', r"the top level is a JSON dict, not a list"),
    ('[{"name": "x"}]', r"item 0 has no 'full_name'/'traced_tactics' \(it has \['name'\]\)"),
    ('[3]', r"item 0 has no 'full_name'/'traced_tactics' \(it has int\)"),
    ('[{"full_name": "t", "traced_tactics": 5}]', r"item 0 \('t'\) has 'traced_tactics' of type int, not a list"),
    ('[{"full_name": "t", "traced_tactics": [{"tactic": "simp"}]}]',
     r"traced tactic 0 of 't' lacks a string 'tactic' or 'state_before'"),
])
def test_a_file_that_is_not_leandojo_json_says_what_was_expected(tmp_path, content, detail):
    path = tmp_path / "data.json"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_leandojo(path)
    message = str(info.value)
    assert "is not LeanDojo Benchmark 4 JSON" in message
    assert "Expected a JSON list of theorems, each with 'full_name' and 'traced_tactics'" in message
    import re

    assert re.search(detail, message), message


def test_a_binary_file_is_not_leandojo_json(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match="it is not UTF-8 JSON"):
        read_leandojo(path)


def test_data_errors_are_harness_errors():
    assert issubclass(DataError, HarnessError) and issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(("tactic", "word", "prefix"), [
    ("intro x", "intro", "intro"),
    ("intro", "intro", "intro"),
    ("  intro h hx", "intro", "intro"),
    ("intros", "intro", "intro"),
    ("intro⟨x, hx⟩", "intro", "intro"),
    ("introv h", None, "intro"),
    ("apply h", "apply", "apply"),
    ("apply le_trans h₁ h₂", "apply", "apply"),
    ("apply(foo)", "apply", "apply"),
    ("apply?", None, "apply"),
    ("apply_fun f at h", None, "apply"),
    ("apply_rules [add_pos]", None, "apply"),
    ("exact h", None, None),
    ("rintro ⟨x, hx⟩", None, None),
    ("refine ?_; apply h", None, None),
    ("", None, None),
])
def test_tactic_class_reads_the_first_word_or_the_literal_prefix(tactic, word, prefix):
    assert tactic_class(tactic) == word
    assert tactic_class(tactic, rule="prefix") == prefix


def test_an_unknown_rule_is_an_error():
    with pytest.raises(DataError, match=r"`rule` must be 'word' or 'prefix', got 'regex'"):
        tactic_class("intro x", rule="regex")


def test_intro_apply_rows_keeps_and_labels_intros_and_applies_only():
    rows = rows_of(2, 3, 4)
    out = intro_apply_rows(rows)
    assert [r.label for r in out] == ["intro"] * 2 + ["apply"] * 3
    assert [(r.state, r.tactic, r.theorem, r.index) for r in out] == [
        (r.state, r.tactic, r.theorem, r.index) for r in rows[:5]]


# --------------------------------------------------------------------------- balanced sets


def test_balanced_draws_half_of_each_class_the_same_way_for_the_same_seed():
    rows = labelled(40, 70)
    a, b, c = balanced(rows, n=60, seed=1), balanced(rows, n=60, seed=1), balanced(rows, n=60, seed=2)
    assert a == b and a != c
    assert sum(r.label == "intro" for r in a) == sum(r.label == "apply" for r in a) == 30
    assert len(set(a)) == 60 and set(a) <= set(rows)
    assert [r.label for r in a] != sorted(r.label for r in a)  # shuffled, not grouped by class


def test_balanced_with_too_few_rows_of_a_class_says_how_many_there_are():
    with pytest.raises(DataError, match=(r"`n`=5000 needs 2500 'apply' rows but `rows` has only 70 "
                                         r"\(intro: 4000, apply: 70\); lower `n` to at most 140 or supply more data")):
        balanced(labelled(4000, 70), n=5000, seed=0)


@pytest.mark.parametrize("n", [0, 7, -2, 2.0, True, "10"])
def test_balanced_needs_a_positive_even_n(n):
    with pytest.raises(DataError, match=r"`n` must be a positive even integer \(half of each class\), got"):
        balanced(labelled(10, 10), n=n, seed=0)


def test_unlabelled_rows_are_an_error_that_says_to_label_them():
    with pytest.raises(DataError, match=r"row 0 of `rows` has label None; .* \(pass the rows through intro_apply_rows first\)"):
        balanced(rows_of(5, 5), n=4, seed=0)


# --------------------------------------------------------------------------- splits


def test_split_is_seeded_stratified_and_partitions_the_rows():
    rows = balanced(labelled(300, 300), n=400, seed=0)
    a, b = split(rows, test_fraction=0.25, seed=3), split(rows, test_fraction=0.25, seed=3)
    assert a == b and a != split(rows, test_fraction=0.25, seed=4)
    assert len(a.test) == 100 and len(a.train) == 300
    assert sum(r.label == "intro" for r in a.test) == 50
    assert set(a.train).isdisjoint(a.test) and set(a.train) | set(a.test) == set(rows)
    assert a.hashes == {"train": content_hash(list(a.train)), "test": content_hash(list(a.test))}


def test_a_saved_split_loads_equal_and_verifies_its_hashes(tmp_path):
    parts = split(labelled(30, 30), test_fraction=0.5, seed=0)
    path = save_split(parts, tmp_path / "deep" / "split.json")
    assert load_split(path) == parts
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["test"]["hash"] == parts.hashes["test"] and doc["seed"] == 0
    doc["test"]["rows"][0]["label"] = "apply" if doc["test"]["rows"][0]["label"] == "intro" else "intro"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"the 'test' part hashes to \w{12}… but the file records \w{12}…; "
                                        r"the rows were edited or corrupted. Rebuild the split"):
        load_split(path)


def test_loading_a_split_that_is_missing_or_not_a_split_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match=r"split file `path` '.*none.json' does not exist; write one with save_split"):
        load_split(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match=r"is not JSON .*; rewrite it with save_split"):
        load_split(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(DataError, match=r"is not a split file written by save_split \(no 'format': 'interp-claims/split'\)"):
        load_split(tmp_path / "other.json")
    (tmp_path / "part.json").write_text('{"format": "interp-claims/split", "train": {"rows": []}}')
    with pytest.raises(DataError, match=r"has a malformed 'train' part \(KeyError\('hash'\)\); rewrite it with save_split"):
        load_split(tmp_path / "part.json")


def test_a_split_of_rows_missing_a_class_is_an_error_naming_the_class():
    with pytest.raises(DataError, match=r"`rows` has no 'apply' rows \(intro: 10, apply: 0\); a split needs both classes"):
        split(labelled(10, 0), seed=0)
    with pytest.raises(DataError, match=r"`rows` has no 'intro' rows"):
        split(labelled(0, 3), seed=0)


def test_a_split_whose_test_part_would_miss_a_class_names_the_part_and_the_class():
    with pytest.raises(DataError, match=(r"the test part has no 'apply' rows \(intro: 4, apply: 0\); every part "
                                         r"needs both classes: supply 'apply' rows or change `test_fraction`")):
        split(labelled(20, 2), test_fraction=0.2, seed=0)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.2"])
def test_split_needs_a_test_fraction_strictly_between_0_and_1(fraction):
    with pytest.raises(DataError, match=r"`test_fraction` must be a number strictly between 0 and 1"):
        split(labelled(5, 5), test_fraction=fraction, seed=0)


def test_an_empty_split_is_an_error():
    with pytest.raises(DataError, match=r"`rows` is empty"):
        split([], seed=0)


# --------------------------------------------------------------------------- slices


def test_test500_and_test200_are_the_first_balanced_rows_of_the_test_part():
    parts = split(balanced(labelled(800, 800), n=1600, seed=0), test_fraction=0.5, seed=0)
    for name, n in (("test500", 500), ("test200", 200)):
        part = parts.part(name)
        assert len(part) == n and sum(r.label == "intro" for r in part) == n // 2
        positions = [parts.test.index(r) for r in part]
        assert positions == sorted(positions)  # test order kept
        intro_first = [r for r in parts.test if r.label == "intro"][: n // 2]
        assert [r for r in part if r.label == "intro"] == intro_first
    assert parts.part("train") == list(parts.train) and parts.part("test") == list(parts.test)
    with pytest.raises(DataError, match=r"`name` must be one of \['train', 'test', 'test500', 'test200'\], got 'dev'"):
        parts.part("dev")


def test_a_slice_fills_from_the_other_class_when_one_is_short():
    rows = labelled(3, 20)
    out = first_balanced(rows, 10)
    assert len(out) == 10 and sum(r.label == "intro" for r in out) == 3
    assert first_balanced(rows, 100) == rows  # fewer rows than asked: all of them
    odd = first_balanced(labelled(10, 10), 5)
    assert [r.label for r in odd].count("intro") == 3


def test_a_slice_needs_a_positive_n():
    with pytest.raises(DataError, match=r"`n` must be a positive integer, got 0"):
        first_balanced(labelled(2, 2), 0)


# --------------------------------------------------------------------------- content hashes


def test_content_hash_reads_content_not_spelling():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": (1, 2), "a": 1})
    assert content_hash([1, 2]) != content_hash([2, 1])
    row = TacticRow("⊢ p", "exact h", "t", 0)
    assert content_hash(row) == content_hash({"state": "⊢ p", "tactic": "exact h", "theorem": "t", "index": 0,
                                              "label": None})
    assert len(content_hash([])) == 64
    with pytest.raises(DataError, match=r"`obj` holds a set .* which has no canonical JSON"):
        content_hash({"a": {1, 2}})


@given(st.lists(st.tuples(st.text(max_size=20), st.sampled_from(CLASSES)), min_size=2, max_size=30))
@settings(max_examples=50, deadline=None)
def test_a_split_round_trips_through_json_for_any_text(tmp_path_factory, items):
    rows = [TacticRow(s + "\n⊢ g", f"{c} h", f"t{i}", i, c) for i, (s, c) in enumerate(items)]
    if {r.label for r in rows} != set(CLASSES):
        rows.append(TacticRow("⊢ q", "apply h", "x", 0, "apply"))
        rows.append(TacticRow("⊢ q → q", "intro h", "y", 0, "intro"))
    rows = rows + rows  # enough of each class for both parts
    try:
        parts = split(rows, test_fraction=0.5, seed=0)
    except DataError:
        return
    path = save_split(parts, tmp_path_factory.mktemp("split") / "s.json")
    assert load_split(path) == parts


# --------------------------------------------------------------------------- goal spans


def tokens(tokenizer, state: str, max_length: int | None) -> list[int]:
    kw = {"truncation": True, "max_length": max_length} if max_length else {}
    return tokenizer(state, **kw)["input_ids"]


def ids_of(text: str) -> list[int]:
    return [b + 3 for b in text.encode("utf-8")]


def test_goal_spans_cover_the_context_and_the_goal_of_a_state(tokenizer):
    state = "x : ℕ\nh₁ : p → q\n⊢ ∀ (n : ℕ), n ≤ n + x"
    s = goal_spans(state, head=6)
    ids = tokens(tokenizer, state, 384)
    context, goal = state.split("⊢")
    assert ids[slice(*s.context)] == ids_of(context)
    assert ids[slice(*s.goal)] == ids_of("⊢" + goal)
    assert ids[slice(*s.goal_head)] == ids_of("⊢ ∀")[:6]
    assert s.length == len(ids) and ids[s.length - 1] == tokenizer.eos_token_id
    assert list(s.positions("goal")) == list(range(*s.goal))


def test_only_the_first_goal_of_a_multi_goal_state_is_the_goal(tokenizer):
    state = "case left\nhp : p\n⊢ p\n\ncase right\nhp : p\n⊢ q"
    s = goal_spans(state)
    ids = tokens(tokenizer, state, 384)
    assert ids[slice(*s.context)] == ids_of("case left\nhp : p\n")
    assert ids[slice(*s.goal)] == ids_of("⊢ p")
    assert s.goal[1] < s.length - 1  # the second goal belongs to neither span


def test_goal_spans_are_clipped_where_the_tokenizer_truncates(tokenizer):
    state = "h : " + "p ∧ " * 30 + "p\n⊢ q ∧ r"
    full = goal_spans(state, max_length=None)
    mark = full.goal[0]
    inside = goal_spans(state, max_length=mark + 3)          # keeps mark + 2 bytes: ⊢ is cut in two
    assert inside.goal == (mark, mark + 2) and inside.length == mark + 3
    assert len(tokens(tokenizer, state, mark + 3)) == inside.length
    cut = goal_spans(state, max_length=20)                    # the goal is cut off entirely
    assert cut.context == (0, 19) and cut.goal == cut.goal_head == (19, 19) and cut.length == 20
    assert goal_spans(state, max_length=2).context == (0, 1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_length": 1}, r"`max_length` must be at least 2 \(one byte and </s>\), got 1; the source study uses 384"),
    ({"max_length": 0}, r"`max_length` must be at least 2"),
    ({"head": 0}, r"`head` must be a positive integer \(bytes of the goal\), got 0"),
])
def test_goal_spans_reject_bad_lengths(kwargs, message):
    with pytest.raises(DataError, match=message):
        goal_spans("⊢ p", **kwargs)


def test_a_state_without_a_goal_line_is_an_error():
    with pytest.raises(DataError, match=r"`state` has no goal line \(no '⊢'\): 'h : p'; a proof state lists hypotheses"):
        goal_spans("h : p")
    with pytest.raises(DataError, match=r"`state` must be a string, got bytes"):
        goal_spans(b"\xe2\x8a\xa2 p")


def test_a_state_holding_a_special_token_string_is_an_error():
    with pytest.raises(DataError, match=r"`state` contains the ByT5 special token '</s>' at character 4"):
        goal_spans("h : </s>\n⊢ p")


context_lines = st.lists(st.text(st.characters(blacklist_characters="⊢<\n", blacklist_categories=("Cs",)),
                                 max_size=12), max_size=4)
goal_text = st.text(st.characters(blacklist_characters="⊢<\n", blacklist_categories=("Cs",)), max_size=40)


@given(context_lines, goal_text, st.booleans(), st.one_of(st.none(), st.integers(2, 120)), st.integers(1, 24))
@settings(max_examples=200, deadline=None)
def test_goal_spans_match_the_tokenizer_for_any_state(tokenizer, lines, goal, second, max_length, head):
    state = "".join(line + "\n" for line in lines) + "⊢ " + goal + ("\n\n⊢ other" if second else "")
    s = goal_spans(state, max_length=max_length, head=head)
    ids = tokens(tokenizer, state, max_length)
    assert s.length == len(ids) and ids[-1] == tokenizer.eos_token_id
    kept = ids[:-1]
    assert kept[slice(*s.context)] == ids_of("".join(line + "\n" for line in lines))[: len(kept)]
    whole_goal = ids_of("⊢ " + goal)
    assert kept[slice(*s.goal)] == whole_goal[: max(0, len(kept) - s.goal[0])]
    assert kept[slice(*s.goal_head)] == whole_goal[:head][: max(0, len(kept) - s.goal[0])]
    assert s.context[1] == s.goal[0] and s.goal_head[0] == s.goal[0] and s.goal_head[1] <= s.goal[1]
