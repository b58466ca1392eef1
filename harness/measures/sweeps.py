"""Sweeps: a score measured over a grid of intervention strengths, rows in the batch dimension.

    symmetric(limit, steps=)   an odd, symmetric alpha grid that contains 0
    Curve                      scores ``[n_examples, n_alphas]`` with their alphas and site;
                               ``curve.slope(near=0.25, seed=...)`` is a `stats.slope_near_zero`
    sweep                      add (or RMS-scaled add) alpha * direction at a site, for every
                               example x alpha, and score each row; a `Direction` sweeps at its
                               own site (an `at` naming another site is an error)
    sweep_directions           `sweep` of several directions (a control's k random draws) in one
                               pass over the examples: one Curve per direction

A sweep lays out example-major rows (example 0 at every alpha, then example 1, ...) and runs
them in chunks of ``batch_size`` rows, each chunk one forward with a per-row alpha vector.
Row results equal one-example runs within 1e-4 (pinned by tests). ``batch_size="auto"`` sizes
the chunks from the memory available and one row's measured peak (at most `AUTO_CAP`); a chunk
that runs out of memory runs again at half the size and later chunks keep it
(`harness.measures.batching`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from harness import progress
from harness.errors import DataError, ShapeError, SiteError
from harness.stats.estimate import Estimate
from harness.interventions.edits import Add, RmsAdd
from harness.interventions.positions import ALL, Positions
from harness.measures.batching import resolve_batch_size, run_batched
from harness.models.loaded import LoadedModel, length_order
from harness.models.sites import Site

if TYPE_CHECKING:
    from harness.measures.directions import Direction

__all__ = ["symmetric", "Curve", "sweep", "sweep_directions", "Scorer", "scorer"]


def symmetric(limit: float, *, steps: int) -> np.ndarray:
    """``steps`` alphas evenly spaced in ``[-limit, limit]``; `steps` must be odd so 0 is on it.

    Example::

        symmetric(0.25, steps=11)   # -0.25, -0.2, ..., 0.25
    """
    if steps < 3 or steps % 2 == 0:
        raise DataError(f"`steps` must be an odd integer >= 3 so the grid contains 0, got {steps}")
    if not limit > 0:
        raise DataError(f"`limit` must be positive, got {limit}")
    return np.linspace(-limit, limit, steps)


@dataclass(frozen=True)
class Scorer:
    """A score function with its fixed arguments: ``scorer(logprob_diff, "intro", "apply")``."""

    fn: Callable[..., torch.Tensor]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model: LoadedModel, inputs: Sequence[str], *,
                 interventions: dict | None = None) -> torch.Tensor:
        return self.fn(model, inputs, *self.args, interventions=interventions, **self.kwargs)

    @property
    def name(self) -> str:
        shown = ", ".join(repr(a) for a in self.args)
        return f"{self.fn.__name__}({shown})"


def scorer(fn: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> Scorer:
    """Bind a score's arguments, e.g. ``scorer(logprob_diff, "intro", "apply", max_length=384)``."""
    return Scorer(fn, tuple(args), dict(kwargs))


@dataclass(frozen=True)
class Curve:
    """Scores of every example at every alpha: ``scores[i, j]`` is example i at ``alphas[j]``."""

    alphas: np.ndarray
    scores: np.ndarray
    site: str
    fingerprint: str
    score_name: str
    kind: str = "add"

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    def at(self, alpha: float) -> np.ndarray:
        """Per-example scores at one alpha of the grid, ``[n]``."""
        hits = np.flatnonzero(np.isclose(self.alphas, alpha))
        if hits.size == 0:
            raise DataError(f"`alpha` {alpha} is not on the grid {self.alphas.tolist()}")
        return self.scores[:, hits[0]]

    def example_slopes(self, *, near: float | None = None) -> np.ndarray:
        """Each example's least-squares slope of score vs alpha over ``|alpha| <= near``, ``[n]``."""
        keep = np.ones(self.alphas.size, dtype=bool) if near is None else np.abs(self.alphas) <= near + 1e-12
        if np.unique(self.alphas[keep]).size < 2:
            raise DataError(f"fewer than 2 alphas within |alpha| <= {near} on the grid {self.alphas.tolist()}")
        a = self.alphas[keep] - self.alphas[keep].mean()
        y = self.scores[:, keep] - self.scores[:, keep].mean(1, keepdims=True)
        return (y @ a) / float(a @ a)

    def slope(self, *, near: float | None = None, seed: int | None = None, level: float = 0.95,
              n_resamples: int | None = None, method: str = "BCa") -> Estimate:
        """Least-squares slope of score vs alpha over ``|alpha| <= near``, CI over examples."""
        from harness import stats

        est = stats.slope_near_zero(self.alphas, self.scores, near=near, level=level,
                                    n_resamples=n_resamples, method=method, seed=seed)
        label = "slope vs alpha" + (f", |alpha| <= {near:g}" if near else "")
        return est.with_context(statistic=label, site=self.site, fingerprint=self.fingerprint)


def _row_positions(positions: Positions, example_index: np.ndarray) -> Positions:
    if positions.kind in ("all", "last"):
        return positions
    if positions.kind == "spans":
        return Positions("spans", spans=tuple(positions.spans[i] for i in example_index))
    raise DataError(
        "`positions` given as a mask cannot be split across sweep rows; give token spans "
        "(Positions.of_spans) or Positions.all()/last()"
    )


def _site_and_vector(model: LoadedModel, at: Site | str | None, direction: object) -> tuple[Site, torch.Tensor]:
    """The validated site of a sweep and its direction as a float32 tensor: `at`, or the site
    of a `Direction` when `at` is None; a Direction whose site differs from `at` is an error."""
    from harness.measures.directions import Direction

    if isinstance(direction, Direction):
        own = str(direction.site).strip()
        if at is None:
            if not own:
                raise DataError(
                    f"`direction` is a Direction ({direction.kind}) without a site and `at` is not given; "
                    "pass at='STACK.LAYER.POINT'"
                )
            return model.site(own), direction.vector.to(torch.float32)
        site = model.site(at)
        if own:
            try:
                same = model.site(own) == site
            except SiteError:
                same = own == str(site)
            if not same:
                raise DataError(
                    f"`direction` was computed at {own} ({direction.kind}) but `at` is {site}; sweep it at "
                    f"{own} (or omit `at`), or pass `direction.vector` to sweep it at {site} on purpose"
                )
        return site, direction.vector.to(torch.float32)
    if isinstance(direction, torch.Tensor):
        if at is None:
            raise DataError(
                "`at` is required when `direction` is a tensor (only a Direction carries its site); "
                "pass at='STACK.LAYER.POINT', e.g. at='encoder.12.resid_post'"
            )
        return model.site(at), direction.to(torch.float32)
    shown = repr(direction)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise DataError(
        f"`direction` must be a torch.Tensor [d] or a Direction, got {type(direction).__name__} {shown}; "
        "pass torch.as_tensor(...) of the values, or a Direction (harness.measures.directions)"
    )


def sweep(model: LoadedModel, inputs: Sequence[str], *, at: Site | str | None = None,
          direction: "torch.Tensor | Direction", alphas: Sequence[float] | np.ndarray, score: Scorer,
          positions: Positions = ALL, rms_scaled: bool = False, batch_size: int | str = 64,
          cache: bool = True) -> Curve:
    """Score every example at every alpha with ``alpha * direction`` added at `at`.

    Example::

        curve = sweep(tacgen, test, at="encoder.12.resid_post", direction=d,
                      alphas=symmetric(0.25, steps=11), score=scorer(logprob_diff, "intro", "apply"))
        curve.slope(near=0.25, seed=claim_seed)
        sweep(tacgen, test, direction=d12, alphas=..., score=...)   # a Direction: at d12.site

    `direction` is a ``[d]`` tensor or a `Direction` (its vector is used). A Direction
    carries its site: without `at` the sweep runs there, and an `at` that names another site
    is an error naming both (pass ``direction.vector`` to sweep a direction elsewhere on
    purpose). A bare tensor needs `at`. With ``rms_scaled=True`` the edit is
    ``alpha * rms(act) * direction`` at each position. `batch_size`: rows per forward, or
    ``"auto"`` (from the memory available and one row's measured peak, at most `AUTO_CAP`); a
    chunk that runs out of memory runs again at half the size (`harness.measures.batching`).

    With ``cache=True`` (the default), a sweep at an encoder site of an encoder-decoder scored
    with `logprob_diff` or `logprob` runs the encoder up to the site once per example, re-runs
    only the blocks after it for each alpha, and decodes both continuations in one pass
    (`harness.interventions.prefix`); the scores equal the plain path (``cache=False``) within 1e-4 under the
    ``eager`` and ``sdpa`` attention implementations (under ``flex_attention``, whose block
    masks a replay cannot index by rows, the sweep takes the plain path).
    """
    site, vector = _site_and_vector(model, at, direction)
    curve, = _sweep_many(model, inputs, site=site, vectors=[vector], alphas=alphas, score=score,
                         positions=positions, rms_scaled=rms_scaled, batch_size=batch_size, cache=cache)
    return curve


def sweep_directions(model: LoadedModel, inputs: Sequence[str], *, at: Site | str | None = None,
                     directions: "Sequence[torch.Tensor | Direction]", alphas: Sequence[float] | np.ndarray,
                     score: Scorer, positions: Positions = ALL, rms_scaled: bool = False, batch_size: int | str = 64,
                     cache: bool = True) -> list[Curve]:
    """`sweep` of each of several directions over the same examples, alphas and positions, in
    one pass: ``curves[i]`` equals ``sweep(..., direction=directions[i])`` within 1e-4.

    Example::

        draws = [random_direction(d12, seed=CONTROL_SEED + i) for i in range(5)]
        curves = sweep_directions(tacgen, test, directions=draws, alphas=symmetric(0.25, steps=3),
                                  score=scorer(logprob_diff, "intro", "apply"))
        control = stats.strongest_of([c.slope(near=0.25) for c in curves])

    Made for a control's k random draws. The rows are (example, direction, alpha); each chunk
    is one forward with one edit per direction chained at the site, each with a per-row alpha
    that is 0 on the other directions' rows (adding 0 changes nothing). With the encoder prefix
    cache (see `sweep`) the encoder runs up to the site once per example for all k directions,
    so k draws cost about one sweep plus k times the replay. Every direction must sit at the
    same site (`at`, or the site each Direction carries); the arguments are checked as in
    `sweep`, and an empty `directions` is a `DataError`.
    """
    if isinstance(directions, (torch.Tensor, str)) or not isinstance(directions, Sequence):
        raise DataError(f"`directions` must be a list of [d] tensors or Directions, got "
                        f"{type(directions).__name__}; for one direction use sweep(direction=...)")
    if not directions:
        raise DataError("`directions` is empty; give at least one direction (e.g. a control's k random draws)")
    resolved = [_site_and_vector(model, at, d) for d in directions]
    sites = {str(site) for site, _ in resolved}
    if len(sites) > 1:
        raise DataError(f"`directions` sit at different sites {sorted(sites)}; sweep_directions runs at one "
                        "site: pass at= and each direction's vector, or sweep each site on its own")
    return _sweep_many(model, inputs, site=resolved[0][0], vectors=[v for _, v in resolved], alphas=alphas,
                       score=score, positions=positions, rms_scaled=rms_scaled, batch_size=batch_size, cache=cache)


def _edits(kind: type, vectors: list[torch.Tensor], alpha: torch.Tensor, direction_of: np.ndarray,
           positions: Positions) -> Any:
    """The edit of a chunk of rows: one `kind` edit, or with several directions one per
    direction, chained, each with the rows' alpha where the row is its direction's and 0 elsewhere."""
    if len(vectors) == 1:
        return kind(vectors[0], alpha=alpha, positions=positions)
    mine = [torch.as_tensor(direction_of == j) for j in range(len(vectors))]
    return [kind(v, alpha=torch.where(m, alpha, torch.zeros_like(alpha)), positions=positions)
            for v, m in zip(vectors, mine)]


def _sweep_many(model: LoadedModel, inputs: Sequence[str], *, site: Site, vectors: list[torch.Tensor],
                alphas: Sequence[float] | np.ndarray, score: Scorer, positions: Positions, rms_scaled: bool,
                batch_size: int | str, cache: bool) -> list[Curve]:
    """The sweeps of `vectors` (all at `site`): columns are (direction, alpha), direction-major."""
    if isinstance(inputs, str):
        raise DataError("`inputs` must be a list of strings, got a single str; wrap it in a list")
    rows_in = list(inputs)
    if not rows_in:
        raise DataError("`inputs` is empty; a sweep needs at least one example")
    grid = np.asarray(alphas, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2:
        raise DataError(f"`alphas` must be a 1-D grid of at least 2 values, got shape {grid.shape}")
    for direction in vectors:
        if direction.dim() != 1 or direction.shape[0] != model.width(site):
            raise ShapeError(
                f"`direction` must have shape [{model.width(site)}] for site {site}, got {tuple(direction.shape)}"
            )
    if positions.kind == "spans" and len(positions.spans) != len(rows_in):
        raise ShapeError(f"`positions` has spans for {len(positions.spans)} examples but `inputs` has {len(rows_in)}")
    kind = RmsAdd if rms_scaled else Add
    columns = np.tile(grid, len(vectors))               # column c: alpha grid[c % a] ...
    direction_of = np.repeat(np.arange(len(vectors)), grid.size)   # ... along direction c // a

    def one_row() -> None:   # the peak of one row (the longest example), for batch_size="auto"
        longest = np.asarray(length_order(model.tokenize(rows_in, max_length=score.kwargs.get("max_length")))[:1])
        edit = _edits(kind, vectors, torch.as_tensor(columns[:1], dtype=torch.float32), direction_of[:1],
                      _row_positions(positions, longest))
        score(model, [rows_in[int(longest[0])]], interventions={site: edit})

    batch_size = resolve_batch_size(batch_size, probe=one_row, rows=len(rows_in) * columns.size, cap=AUTO_CAP,
                                    device=model.device)
    if cache and _cacheable(model, site, score):
        scores = _encoder_cached_sweep(model, rows_in, site=site, columns=columns, direction_of=direction_of,
                                       vectors=vectors, kind=kind, positions=positions, score=score,
                                       batch_size=batch_size)
    else:
        scores = _plain_sweep(model, rows_in, site=site, columns=columns, direction_of=direction_of,
                              vectors=vectors, kind=kind, positions=positions, score=score, batch_size=batch_size)
    return [Curve(alphas=grid, scores=scores[:, j * grid.size:(j + 1) * grid.size], site=str(site),
                  fingerprint=model.fingerprint, score_name=score.name, kind="rms_add" if rms_scaled else "add")
            for j in range(len(vectors))]


def _plain_sweep(model: LoadedModel, rows_in: list[str], *, site: Site, columns: np.ndarray,
                 direction_of: np.ndarray, vectors: list[torch.Tensor], kind: type, positions: Positions,
                 score: Scorer, batch_size: int) -> np.ndarray:
    n, k = len(rows_in), columns.size
    order = length_order(model.tokenize(rows_in, max_length=score.kwargs.get("max_length")))
    example_of_row = np.repeat(np.asarray(order), k)  # examples longest first: chunks pad less
    alpha_of_row = np.tile(np.arange(k), n)
    out = np.empty((n, k), dtype=np.float64)
    with progress.task(f"sweep {site}", total=n, unit="examples") as bar:
        def step(start: int, stop: int) -> None:
            ex, cols = example_of_row[start:stop], alpha_of_row[start:stop]
            alpha = torch.as_tensor(columns[cols], dtype=torch.float32)
            edit = _edits(kind, vectors, alpha, direction_of[cols], _row_positions(positions, ex))
            out[ex, cols] = score(model, [rows_in[i] for i in ex], interventions={site: edit}).double().numpy()
            bar.update(stop // k)

        run_batched(step, n * k, batch_size, what="sweep rows")
    return out


# Examples whose prefix is cached together; their rows (examples x alphas) then run in chunks
# of `batch_size`. Bounds the cached state at a few MB for short inputs.
_PREFIX_EXAMPLES = 32

# The largest chunk of rows a batch_size of "auto" chooses.
AUTO_CAP = 256


def _cacheable(model: LoadedModel, site: Site, score: Scorer) -> bool:
    from harness.interventions.prefix import attention_implementation
    from harness.measures.scores import logprob, logprob_diff

    return (model.is_encoder_decoder and site.stack == model.main_stack
            and score.fn in (logprob, logprob_diff) and set(score.kwargs) <= {"max_length"}
            and "flex_attention" not in attention_implementation(model, model.main_stack))


def _encoder_cached_sweep(model: LoadedModel, rows_in: list[str], *, site: Site, columns: np.ndarray,
                          direction_of: np.ndarray, vectors: list[torch.Tensor], kind: type, positions: Positions,
                          score: Scorer, batch_size: int) -> np.ndarray:
    from harness.interventions import intervene
    from harness.models.loaded import pad_rows
    from harness.interventions.prefix import capture, replay_start
    from harness.measures.scores import _per_row, logprob_diff, logprob_diff_from_encoding

    n, k = len(rows_in), columns.size
    max_length = score.kwargs.get("max_length")
    if score.fn is logprob_diff:
        conts_a, conts_b = (_per_row(c, n, name) for c, name in zip(score.args, ("a", "b")))
    else:
        conts_a, conts_b = _per_row(score.args[0], n, "continuation"), None
    start = replay_start(model, site)
    encoder = model.module.get_encoder()
    out = np.empty((n, k), dtype=np.float64)
    tokens = model.tokenize(rows_in, max_length=max_length)
    order = np.asarray(length_order(tokens))  # examples longest first: each prefix chunk pads less
    with progress.task(f"sweep {site}", total=n, unit="examples") as bar:
        for e0 in range(0, n, _PREFIX_EXAMPLES):
            examples = order[e0:e0 + _PREFIX_EXAMPLES]
            ids, mask = pad_rows([tokens[i] for i in examples], pad_id=model.pad_id, device=model.device)
            prefix = capture(model, model.main_stack, start=start, ids=ids, mask=mask,
                             run=lambda: encoder(input_ids=ids, attention_mask=mask))
            local = np.repeat(np.arange(examples.size), k)
            alpha_idx = np.tile(np.arange(k), examples.size)

            def step(r0: int, r1: int) -> None:
                rows, cols = local[r0:r1], alpha_idx[r0:r1]
                ex = examples[rows]
                row_index = torch.as_tensor(rows, device=mask.device)
                edit = _edits(kind, vectors, torch.as_tensor(columns[cols], dtype=torch.float32),
                              direction_of[cols], _row_positions(positions, ex))
                row_mask = mask.index_select(0, row_index)
                with intervene(model, {site: edit}, masks={model.main_stack: row_mask}):
                    hidden = prefix.replay(row_index)
                a = [conts_a[i] for i in ex]
                if conts_b is None:
                    from harness.measures.scores import _decode_logprob

                    values = _decode_logprob(model, hidden, row_mask, a, {})
                else:
                    values = logprob_diff_from_encoding(model, hidden, row_mask, a, [conts_b[i] for i in ex])
                out[ex, cols] = values.double().cpu().numpy()

            _, batch_size = run_batched(step, local.size, batch_size, what="sweep rows",
                                        after=f"example {e0} (longest first)" if e0 else None)
            bar.update(e0 + examples.size)
    return out
