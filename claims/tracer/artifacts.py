"""What the tracer study writes beside the report, under ``tracer/``:

    pairs.jsonl               every pair (the source's fields, its split and both runs' answer logits)
    residual_map.png          normalised recovery by layer x role (ROME's heat map, averaged over pairs)
    traces.png                per-role recovery over layers, with 95% bootstrap bands (ROME's per-token traces)
    example_pair.png          one pair's whole layer x token map, the divergence token marked ``*``
    tracing_vs_patching.png   the causal-tracing map beside the patching map, same pairs and roles
    heads.png                 each head's recovery at the final position (test half)
    maps.json                 the numbers behind the plots
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from harness import stats
from harness.atomic import write_text_atomic
from harness.reports.plots import plot_heatmap, plot_heatmaps, plot_layers

from claims.tracer.measure import pair_mean, summary
from claims.tracer.settings import ROLES


def _update_json(folder: Path, key: str, value) -> None:
    path = folder / "maps.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def write_pairs(folder: Path, pairs: dict) -> Path:
    """``pairs.jsonl``: one pair a line, with its split."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"split": name, **pair}) for name, rows in pairs.items() for pair in rows]
    path = folder / "pairs.jsonl"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _layer_labels(n: int) -> list[str]:
    return [f"blocks.{layer}" for layer in range(1, n + 1)]


def write_residual(folder: Path, model, recovery: np.ndarray, resid_map, positions: list[dict], every_pair: list[dict]) -> None:
    """The residual map's plots and numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    n_layers = recovery.shape[1]
    plot_heatmap(pair_mean(recovery), folder / "residual_map.png",
                 title=f"patching resid_pre from a into b: normalised recovery, mean of {recovery.shape[0]} pairs",
                 row_labels=_layer_labels(n_layers), col_labels=list(ROLES), xlabel="position (role)",
                 ylabel="resid_pre of", colorbar_label="(patched - b) / (a - b)")
    curves = {}
    with warnings.catch_warnings():      # a role that is exactly 0 at a layer (causality) has no band: fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        for r, name in enumerate(ROLES):
            column = recovery[:, :, r]
            keep = np.isfinite(column[:, 0])
            if keep.sum() >= 2:
                curves[name] = [stats.bootstrap_mean(column[keep, layer], method="percentile",
                                                     n_resamples=1000) for layer in range(n_layers)]
    plot_layers(curves, folder / "traces.png", title="recovery by position over layers (95% bootstrap bands)",
                ylabel="normalised recovery", layers=list(range(1, n_layers + 1)), reference=0.0)
    pair, where = every_pair[0], positions[0]
    tokens = [model.tokenizer.decode([t]) for t in model.tokenize([pair["program_a"]])[0]]
    labels = [f"{t}*" if i == where["divergence"][0] else t for i, t in enumerate(tokens)]
    one = resid_map.normalized()[0, :, : len(tokens)].numpy()
    plot_heatmap(one, folder / "example_pair.png", title=f"{pair['program_a']} -> {pair['program_b']}",
                 row_labels=_layer_labels(n_layers), col_labels=labels, xlabel="token (* the divergence)",
                 ylabel="resid_pre of", colorbar_label="normalised recovery", annotate=False)
    _update_json(folder, "residual", {"pairs": recovery.shape[0], **summary(recovery),
                                      "clean_minus_corrupt_mean": round(float((resid_map.clean - resid_map.corrupt)
                                                                              .mean()), 4)})


def write_tracing(folder: Path, effect: np.ndarray, patching: np.ndarray, total: np.ndarray, std: float) -> None:
    """The tracing map beside the patching map over the same pairs, and the numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    n_layers = effect.shape[1]
    plot_heatmaps({"patching: normalised recovery": pair_mean(patching), "tracing: indirect effect on P(answer)":
                   pair_mean(effect)}, folder / "tracing_vs_patching.png",
                  title=f"the same {effect.shape[0]} pairs: token replacement (left) and Gaussian noise of std {std:.3g} "
                        "(3x the embeddings' std) on the changed step (right)", row_labels=_layer_labels(n_layers), col_labels=list(ROLES),
                  xlabel="position (role)", ylabel="resid_pre of")
    _update_json(folder, "tracing", {"pairs": effect.shape[0], "noise_std": round(std, 6),
                                     "total_effect_mean": round(float(np.mean(total)), 4), **summary(effect)})


def write_components(folder: Path, head_map: np.ndarray, layer_map: np.ndarray, test_rows: np.ndarray) -> None:
    """Per-head and per-output recoveries at the final position (test half)."""
    folder.mkdir(parents=True, exist_ok=True)
    heads = pair_mean(head_map[test_rows])
    plot_heatmap(heads, folder / "heads.png", title=f"each head's output patched at the final position "
                 f"({len(test_rows)} test-half pairs)", row_labels=_layer_labels(heads.shape[0]),
                 col_labels=[f"head{h}" for h in range(heads.shape[1])], xlabel="head", ylabel="block",
                 colorbar_label="normalised recovery")
    outputs = pair_mean(layer_map[test_rows])
    _update_json(folder, "components", {
        "heads": [[round(float(v), 4) for v in row] for row in heads],
        "attn_out": [round(float(v), 4) for v in outputs[:, 0]],
        "mlp_out": [round(float(v), 4) for v in outputs[:, 1]]})
