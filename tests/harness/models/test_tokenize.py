"""Text that a tokenizer can only map to its unknown token is never silent: `LoadedModel.tokenize`
warns with the words or pieces and the text, once per distinct text, and keeps the ids."""

from __future__ import annotations

import re
import warnings

import pytest

from harness.errors import UnknownTokenWarning
from harness.models.load import from_module
from harness.models.loaded import LoadedModel
from tests._support.tiny import tiny_model

VOCAB = ["<pad>", "<eos>", "<unk>", "a", "b", "=", ";"]


@pytest.fixture(scope="module")
def word_tokenizer():
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def fresh(tokenizer) -> LoadedModel:
    """A model of its own (the once-per-text memory belongs to a model)."""
    return from_module(tiny_model("gpt2").module, tokenizer, name="fixture:words")


class SlowWords:
    """A tokenizer without offsets (like a Python "slow" tokenizer): whitespace words, unknown -> 2."""

    unk_token, unk_token_id, is_fast = "<unk>", 2, False

    def __call__(self, text, add_special_tokens=True, **kw):
        return {"input_ids": [VOCAB.index(w) if w in VOCAB else 2 for w in text.split()]}


def caught(fn):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in seen if issubclass(w.category, UnknownTokenWarning)]


def test_unknown_words_are_listed_with_their_text_and_the_ids_are_kept(word_tokenizer):
    m = fresh(word_tokenizer)
    texts = ["a = zed ; b = zed qux", "a = b"]
    ids, seen = caught(lambda: m.tokenize(texts))
    assert ids == [word_tokenizer(t)["input_ids"] for t in texts] == [[3, 5, 2, 6, 4, 5, 2, 2], [3, 5, 4]]
    (warning,) = seen
    assert issubclass(warning.category, UserWarning)
    assert str(warning.message).startswith(
        "3 piece(s) of a text became the unknown token '<unk>' (id 2) of fixture:words's tokenizer: "
        "'zed' x2, 'qux'; in text 'a = zed ; b = zed qux'. The token ids are kept")
    assert warning.filename == __file__  # points at the caller of tokenize


def test_a_text_is_warned_about_once_and_each_distinct_text_once(word_tokenizer):
    m = fresh(word_tokenizer)
    _, first = caught(lambda: m.tokenize(["a zed", "a zed", "b qux"]))
    _, again = caught(lambda: m.tokenize(["a zed", "b qux"]))
    assert [re.search(r"in text ('.*?')\.", str(w.message))[1] for w in first] == ["'a zed'", "'b qux'"]
    assert again == []


def test_a_long_text_is_truncated_in_the_warning(word_tokenizer):
    text = "a " * 100 + "zed"
    _, (warning,) = caught(lambda: fresh(word_tokenizer).tokenize([text]))
    message = str(warning.message)
    assert "'zed'" in message and repr(text[:117] + "...") in message and text not in message


def test_truncation_warns_only_of_unknown_words_that_are_kept(word_tokenizer):
    m = fresh(word_tokenizer)
    ids, seen = caught(lambda: m.tokenize(["a b zed"], max_length=2))
    assert ids == [[3, 4]] and seen == []


def test_the_unknown_token_written_out_in_the_text_is_not_warned_about(word_tokenizer):
    ids, seen = caught(lambda: fresh(word_tokenizer).tokenize(["a <unk> b"]))
    assert ids == [[3, 2, 4]] and seen == []


def test_a_tokenizer_without_offsets_lists_the_unknown_words():
    ids, (warning,) = caught(lambda: fresh(SlowWords()).tokenize(["a = zed ; qux"]))
    assert ids == [[3, 5, 2, 6, 2]]
    assert "became the unknown token '<unk>' (id 2) of fixture:words's tokenizer: 'zed', 'qux'; " \
           "in text 'a = zed ; qux'" in str(warning.message)


def test_a_byte_tokenizer_never_warns():
    _, seen = caught(lambda: tiny_model("gpt2").tokenize(["anything at all ⊢ ∀ x, p x → q"]))
    assert seen == []


def test_a_repeated_text_is_tokenized_once_per_call_and_each_row_is_its_own_list():
    calls = []

    class Counting(SlowWords):
        def __call__(self, text, add_special_tokens=True, **kw):
            calls.append(text)
            return super().__call__(text, add_special_tokens, **kw)

    m = fresh(Counting())
    rows = m.tokenize(["a = b", "b", "a = b", "b", "a = b"])
    assert rows == [[3, 5, 4], [4], [3, 5, 4], [4], [3, 5, 4]]
    assert calls == ["a = b", "b"]
    rows[0].append(9)
    assert rows[2] == [3, 5, 4]
