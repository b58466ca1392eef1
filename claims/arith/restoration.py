"""Patching runs of the arithmetic study, by name, computed once and judged as estimates.

A *run* patches a set of heads, at all prompt positions or some of them, from each pair's
clean prompt into its corrupt prompt (`measure.patched`). Every head is a run of its own name
(``"layer1-head0"``: that head, all positions, the correctly answered pairs); controls and
variants are `define`\\ d under names of their own; a control that is k random draws (k random
heads, k random sets of heads) is `define_mean`\\ d as the mean of its draws' runs, pair by pair.
Two estimates per run:

- `exact`: the share of pairs whose whole clean answer comes out (Wilson interval; pairs are
  the trials); for a mean of runs, the mean over pairs of the share of the runs that restore
  the pair (bootstrap over pairs);
- `recovery`: ``mean(patched - corrupt) / mean(clean - corrupt)`` of the first answer token's
  logit difference (clean answer token - corrupt answer token), bootstrapping pairs: 0 is the
  corrupt run, 1 the clean run; for a mean of runs, `patched` is each pair's mean over the runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from claims.arith import measure
from harness import DataError, Estimate, LoadedModel, stats
from harness.plugin import derive_seed

POSITIONS = ("all", "inside", "outside")


@dataclass(frozen=True)
class RunSpec:
    heads: tuple[str, ...]
    pairs: str = "clean"         # which pair set: "clean" (correct sources) or "wrong" (incorrect sources)
    positions: str = "all"       # "all", "inside" or "outside" the parentheses (of either prompt)


class Restoration:
    """Named patching runs over named pair sets (``{"clean": Pairs, "wrong": Pairs}``)."""

    def __init__(self, model: LoadedModel, pairs: dict[str, measure.Pairs], *, seed: int, n_resamples: int):
        self.model, self.pairs = model, pairs
        self.seed, self.n_resamples = seed, n_resamples
        self.specs: dict[str, RunSpec] = {}
        self.means: dict[str, tuple[str, ...]] = {}
        self._runs: dict[str, measure.Patched] = {}
        self._baselines: dict[str, tuple[measure.Patched, measure.Patched]] = {}

    @property
    def heads(self) -> dict[str, tuple[str, ...]]:
        """The heads each run patches (for a mean of runs, every member's heads in order)."""
        out = {name: spec.heads for name, spec in self.specs.items()}
        for name, members in self.means.items():
            out[name] = tuple(h for m in members for h in self._spec(m).heads)
        return out

    def define(self, name: str, heads: Sequence[str], *, pairs: str = "clean", positions: str = "all") -> None:
        if pairs not in self.pairs:
            raise DataError(f"pair set {pairs!r} is unknown; use one of {sorted(self.pairs)}")
        if positions not in POSITIONS:
            raise DataError(f"positions {positions!r} is unknown; use one of {POSITIONS}")
        if not heads:
            raise DataError(f"run {name!r} patches no head; give at least one 'layerL-headH'")
        self.specs[name] = RunSpec(tuple(heads), pairs, positions)

    def define_mean(self, name: str, members: Sequence[str]) -> None:
        """A control summarised over several runs (each a name of its own: a head, or a
        `define`\\ d run), averaged pair by pair: a control's k random draws. The members must
        patch the same pair set."""
        if not members:
            raise DataError(f"mean run {name!r} has no members; give the names of its draws' runs")
        sets = {self._spec(m).pairs for m in members}
        if len(sets) > 1:
            raise DataError(f"mean run {name!r} mixes pair sets {sorted(sets)}; its members must share one")
        self.means[name] = tuple(members)

    def _pair_set(self, name: str) -> str:
        return self._spec(self.means[name][0]).pairs if name in self.means else self._spec(name).pairs

    def _sites(self, name: str) -> str:
        heads = self.heads[name] if name in self.means else self._spec(name).heads
        return ", ".join(dict.fromkeys(measure.head_site(h) for h in heads))

    def _spec(self, name: str) -> RunSpec:
        if name not in self.specs:
            measure.head_id(name)  # a head's own run, or a clear error for an unknown name
            self.specs[name] = RunSpec((name,))
        return self.specs[name]

    def run(self, name: str) -> measure.Patched:
        if name not in self._runs:
            spec = self._spec(name)
            pairs = self.pairs[spec.pairs]
            positions = None
            if spec.positions != "all":
                inside = measure.inside_positions(pairs)
                positions = inside if spec.positions == "inside" else [[not x for x in row] for row in inside]
            sites = [measure.head_site(h) for h in spec.heads]
            self._runs[name] = measure.patched(self.model, pairs, sites, positions)
        return self._runs[name]

    def baselines(self, pair_set: str) -> tuple[measure.Patched, measure.Patched]:
        """The unpatched clean and corrupt runs of a pair set."""
        if pair_set not in self._baselines:
            pairs = self.pairs[pair_set]
            self._baselines[pair_set] = (measure.patched(self.model, pairs, source="clean", target="clean"),
                                         measure.patched(self.model, pairs))
        return self._baselines[pair_set]

    def _what(self, name: str) -> str:
        if name in self.means:
            members = self.means[name]
            drawn = "; ".join("+".join(self._spec(m).heads) for m in members)
            return (f"{name}: the mean of {len(members)} runs ({drawn}); "
                    f"{len(self.pairs[self._pair_set(name)])} pairs")
        spec = self._spec(name)
        where = "" if spec.positions == "all" else f", {spec.positions} the parentheses"
        source = "" if spec.pairs == "clean" else ", incorrectly answered sources"
        return f"{name}: {'+'.join(spec.heads)}{where}{source}; {len(self.pairs[spec.pairs])} pairs"

    def exact(self, name: str) -> Estimate:
        if name in self.means:
            shares = np.mean([self.run(m).exact for m in self.means[name]], 0)
            est = stats.bootstrap_mean(shares, seed=derive_seed(self.seed, f"arith/exact/{name}"),
                                       n_resamples=self.n_resamples)
            return est.with_context(statistic=f"restored whole answers, pair by pair the share of the runs "
                                               f"({self._what(name)})",
                                    site=self._sites(name), fingerprint=self.model.fingerprint)
        return stats.proportion_of(self.run(name).exact).with_context(
            statistic=f"restored whole answers ({self._what(name)})",
            site=self._sites(name), fingerprint=self.model.fingerprint)

    def recovery(self, name: str) -> Estimate:
        clean, corrupt = self.baselines(self._pair_set(name))
        patched = (np.mean([self.run(m).logit_diff for m in self.means[name]], 0) if name in self.means
                   else self.run(name).logit_diff)
        return stats.paired_ratio(patched - corrupt.logit_diff,
                                  clean.logit_diff - corrupt.logit_diff,
                                  seed=derive_seed(self.seed, f"arith/recovery/{name}"),
                                  n_resamples=self.n_resamples).with_context(
            statistic=f"recovered first-token logit difference ({self._what(name)})",
            site=self._sites(name), fingerprint=self.model.fingerprint)
