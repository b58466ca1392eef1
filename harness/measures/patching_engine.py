"""The patching engine: every activation-patching map is a set of cells, each replayed from its block.

    Column          one column of a map at one block: the site its cells patch, the clean and
                    corrupt values that site's activation is cut from, and the cut (``select``)
    Block           the columns of one block and the positions each cell patches, ``[rows, cols, pos]``
    patch_cells     the metric of every cell of every block ``[rows, blocks, cols]``: cells that
                    change nothing take the corrupt metric, the rest are replayed from their block
    PairRuns        the plain runs of a map's clean and corrupt prompts (with recorded sites)
    pair_runs       check a map's arguments, tokenize and pad the pairs, run both plainly
    plain_run       the plain run of some inputs that `patch_cells` replays (causal tracing's)
    check_map_args  the `metric` and `batch_size` checks every map shares
    check_at        ``at`` must be "all" or "last"
    token_rows      prompts (strings or token-id lists) as token-id lists
    token_pairs     clean/corrupt prompts as token rows, pair i of one length in both
    where_at        the positions an ``at`` of "all" or "last" patches, ``[rows, pos]``
    each_position   one column per position: ``[rows, pos, pos]``, cell (r, p) patches position p
    every_column    the same positions for every column: ``[rows, cols, pos]`` (a view)

A *cell* is row r of the corrupt run(s) with column c of block j patched: the activation at
``columns[c].site`` replaced, at the positions ``where[r, c]``, by the clean value
``columns[c].clean[source_rows[r], :, select]``. The metric is read at the last real token
(the metric protocol is `harness.measures.patching`'s). A cell whose clean value equals the
corrupt one bit for bit at every patched position is the corrupt run itself: its value is the
corrupt metric, with no forward. The others are replayed from block j
(`harness.measures.replay`), in chunks of ``batch_size`` cells (``"auto"``: sized from the memory
available and one cell's measured peak, at most `AUTO_CAP`; a block whose chunk runs out of
memory runs again at half the size, `harness.measures.batching`), each chunk one forward in which
every site of the block that some cell of the chunk patches gets one `Patch` (its rows patched
where their cell is at that site, nowhere else; a column's ``edit`` may give another kind). Columns that share a site share their values
(a map of positions patches one site at a different position per column).

A named map is a thin entry point: it makes the runs (`pair_runs`), says per block which
columns (site, values, cut) and where each patches, and shapes `patch_cells`' values into its
result (`harness.measures.patching`, `harness.measures.patching_outputs`,
`harness.measures.tracing`, `harness.measures.patching_units`: a column per neuron of
``mlp_post``, or per head of ``attn.q`` / ``attn.k`` / ``attn.v``, each cut from the whole
point's recorded value). A map of some blocks only passes those blocks as ``n_blocks``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from harness.errors import DataError, InterventionError, ShapeError
from harness.interventions import Intervention, Patch, Positions, Record, intervene
from harness.measures.batching import AUTO, auto_batch_size, with_backoff
from harness.models.loaded import LoadedModel, pad_rows
from harness.models.sites import Site
from harness.measures.replay import _plain, _replay_cells, _Run, _suffix_ok

if TYPE_CHECKING:
    from harness.measures.patching import Metric

__all__ = ["Column", "Block", "patch_cells", "PairRuns", "pair_runs", "plain_run", "check_map_args", "check_at",
           "token_rows", "token_pairs", "where_at", "each_position", "every_column"]


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Column:
    """What the cells of one column of a map patch at one block.

    ``site``: where the `Patch` goes (its activation is ``[rows, pos, width]``, a head's
    ``d_head`` columns for a head site). ``clean``: ``[n_source, pos, D]``, the value the patch
    takes, cut by ``select`` to the site's width (a mean: a ``[1, pos, D]`` expanded to
    ``n_source`` rows). ``corrupt``: ``[rows, pos, D]``, the corrupt run's value there, cut
    alike (compared with the clean value to skip cells that change nothing). ``select``: the
    columns of ``D`` that are the site's activation (``slice(h * d_head, (h + 1) * d_head)``
    for head h of the output projection's input), None for all of them. ``edit``: how a chunk
    of cells patches the site, ``edit(source [rows, pos, width], positions) -> Intervention``;
    `Patch` by default, or any kind (one's own too) that changes nothing where the source
    equals the activation, e.g. an interchange along a subspace (a cell whose clean and
    corrupt values agree is not run). ``within``: the site whose activation ``clean`` is, when
    ``site`` is a part of it (a neuron of ``mlp_post``, a head of ``attn.q``) cut by ``select``:
    a chunk then patches all such columns of one ``within`` (same ``clean``, same width,
    default `Patch`) with one edit there, each row at its own columns, instead of one `Patch`
    per site (a map of d_mlp neurons would otherwise install d_mlp hooks, each copying the
    whole activation).
    """

    site: Site
    clean: torch.Tensor
    corrupt: torch.Tensor
    select: slice | None = None
    edit: Callable[[torch.Tensor, Positions], Intervention] = Patch
    within: Site | None = None

    def cut(self, value: torch.Tensor) -> torch.Tensor:
        return value if self.select is None else value[..., self.select]


@dataclass(frozen=True)
class Block:
    """The columns of one block of a map and where each cell patches.

    ``columns[c]``: column c. ``where``: bool ``[rows, cols, pos]``, the positions cell
    (r, c) patches (`each_position`, `every_column` build the usual two).
    """

    columns: Sequence[Column]
    where: torch.Tensor


def patch_cells(model: LoadedModel, corrupt: _Run, mask: torch.Tensor, metric: "Metric", *,
                blocks: Callable[[int], Block], n_blocks: int | Sequence[int], batch_size: int | str,
                valid: torch.Tensor | None = None, source_rows: torch.Tensor | None = None) -> torch.Tensor:
    """The metric of every cell, ``[rows, n_blocks, cols]`` float32.

    `corrupt`: the plain run (`harness.measures.replay`) of the ``rows`` corrupt inputs, `mask`
    its attention mask ``[rows, pos]``. `n_blocks`: the map's blocks, an int n for the 0-based
    blocks ``0..n-1`` or the 0-based blocks themselves (a map of some layers), one per row of
    the map in that order. ``blocks(j)``: the `Block` of 0-based block j (its cells replay
    blocks j..); every block has the same number of columns. `valid`: bool
    ``[rows, cols]``, the cells that exist (NaN elsewhere; a position past a row's length),
    all by default. `source_rows`: ``[rows]``, the row of the clean values each corrupt row
    takes its patches from (several noise samples of one prompt), ``arange(rows)`` by default.
    The metric's ``pairs`` are the corrupt rows. `batch_size`: cells per forward, or ``"auto"``
    (sized once, at the first block with cells to replay); a block that runs out of memory runs
    again at half the size, and later blocks keep it (`harness.measures.batching.with_backoff`).

    Raises `ShapeError` for a block whose ``where`` is not ``[rows, cols, pos]``.
    """
    rows_n, width = mask.shape
    src_of = torch.arange(rows_n, device=mask.device) if source_rows is None else source_rows.to(mask.device)
    order = list(range(n_blocks)) if isinstance(n_blocks, numbers.Integral) else [int(j) for j in n_blocks]
    values: torch.Tensor | None = None
    size, earlier = batch_size, 0   # earlier: the most cells a block before this one replayed
    for i, j in enumerate(order):
        block = blocks(j)
        n_cols = len(block.columns)
        if tuple(block.where.shape) != (rows_n, n_cols, width):
            raise ShapeError(f"`where` of block {j} is {tuple(block.where.shape)}, expected "
                             f"[{rows_n}, {n_cols}, {width}] (rows, columns, positions)")
        if values is None:
            values = torch.full((rows_n, len(order), n_cols), float("nan"))
            fill = torch.ones(rows_n, n_cols, dtype=torch.bool) if valid is None else valid.cpu()
        values[:, i, :] = torch.where(fill, corrupt.metric[:, None], values[:, i, :])  # unchanged: corrupt
        sites = _by_site(block.columns)
        differs = torch.zeros(rows_n, n_cols, width, dtype=torch.bool, device=mask.device)
        for cols in sites.values():
            column = block.columns[cols[0]]
            clean = column.cut(column.clean)           # on its block's device (a model split by a device map)
            clean = clean.index_select(0, src_of.to(clean.device))
            changed = (clean != column.cut(column.corrupt)).any(-1).to(mask.device)   # [rows, pos]
            differs[:, cols] = block.where[:, cols] & changed[:, None]
        todo = differs.any(-1).nonzero()                                          # (row, column) cells
        if todo.numel() == 0:
            continue
        cell_rows, col_of = todo[:, 0], todo[:, 1]
        position = torch.arange(width, device=mask.device)
        first = torch.where(differs[cell_rows, col_of], position, width).amin(-1)  # [cells]: first changed
        plan = _plan(block, sites, cell_rows, col_of, src_of)

        def replay(b: int, n: int | None = None) -> torch.Tensor:
            return _replay_cells(model, corrupt, mask, block=j, pairs=cell_rows[:n], firsts=first[:n],
                                 plan=plan, metric=metric, batch_size=b)

        if size == AUTO:   # one cell's peak, measured at the first block that replays any
            size = auto_batch_size(lambda: replay(1, 1), device=mask.device, cap=AUTO_CAP)
        got, size = with_backoff(replay, size, what="patching map cells", after=f"block {j}", earlier=earlier)
        earlier = max(earlier, int(cell_rows.shape[0]))
        values[cell_rows.cpu(), i, col_of.cpu()] = got
    return values if values is not None else torch.empty(rows_n, 0, 0)  # no blocks: no cells


def _by_site(columns: Sequence[Column]) -> dict[Site, list[int]]:
    """The column indices of each site, in column order (columns of one site share values)."""
    out: dict[Site, list[int]] = {}
    for c, column in enumerate(columns):
        out.setdefault(column.site, []).append(c)
    return out


def _plan(block: Block, sites: dict[Site, list[int]], cell_rows: torch.Tensor, col_of: torch.Tensor,
          src_of: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor, int], dict]:
    """``plan(rows, cells, start)`` for `_replay_cells`: one `Patch` per site that a cell of the
    chunk patches, acting on that cell's row at its positions ``start..``."""
    device = col_of.device
    site_of_col = torch.empty(len(block.columns), dtype=torch.long, device=device)
    for s, cols in enumerate(sites.values()):
        site_of_col[cols] = s

    def plan(rows: torch.Tensor, cells: torch.Tensor, start: int) -> dict:
        where = block.where[cell_rows[cells], col_of[cells]][:, start:]           # [chunk, pos - start]
        at = site_of_col[col_of[cells]]
        present = set(at.unique().tolist())   # one read per chunk, however many sites the block has
        out: dict = {}
        merged: dict[tuple, list[int]] = {}
        for s, (site, cols) in enumerate(sites.items()):
            if s in present:
                column = block.columns[cols[0]]
                if _mergeable(column):
                    width = column.select.stop - column.select.start  # type: ignore[union-attr]
                    merged.setdefault((column.within, id(column.clean), width), []).append(s)
                    continue
                on = at == s
                src = column.cut(column.clean)[:, start:]                  # cut first: a neuron's column
                src = src.index_select(0, src_of[rows].to(src.device))
                out[site] = column.edit(src, Positions.of_mask(where & on[:, None]))
        for (within, _, width), group in merged.items():
            on = torch.zeros_like(at, dtype=torch.bool)
            first = torch.zeros_like(at)                                          # [chunk]: each row's first column
            for s in group:
                column = block.columns[starts_of[s]]
                on |= at == s
                first = torch.where(at == s, column.select.start, first)  # type: ignore[union-attr]
            index = first[:, None] + torch.arange(width, device=device)           # [chunk, width]
            clean = block.columns[starts_of[group[0]]].clean[:, start:]
            clean = clean.index_select(0, src_of[rows].to(clean.device))
            src = clean.gather(-1, index.to(clean.device)[:, None, :].expand(-1, clean.shape[1], -1))
            edit = _PatchColumns(src, index, Positions.of_mask(where & on[:, None]))
            out[within] = [*out[within], edit] if within in out else edit  # type: ignore[index]
        return out

    starts_of = [cols[0] for cols in sites.values()]

    return plan


def _mergeable(column: Column) -> bool:
    return (column.within is not None and column.edit is Patch and isinstance(column.select, slice)
            and column.select.step in (None, 1) and column.select.start is not None
            and column.select.stop is not None)


@dataclass(frozen=True)
class _PatchColumns(Intervention):
    """`Patch` of a different set of columns per row: row r's columns ``index[r]`` (``[rows,
    w]``) of the activation take ``source[r]`` (``[rows, pos, w]``) at the chosen positions,
    the other columns left as they are (the cells of many neuron or head sites of one
    activation in one edit)."""

    source: torch.Tensor
    index: torch.Tensor
    positions: Positions = Positions.all()

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: Any,
              context: Any = None) -> torch.Tensor:
        if act.shape[:2] != self.source.shape[:2] or act.shape[-1] <= int(self.index.max()):
            raise ShapeError(f"the patch of {site} has source {tuple(self.source.shape)} for columns up to "
                             f"{int(self.index.max())}, but the activation is {tuple(act.shape)}")
        index = self.index.to(act.device)[:, None, :].expand(-1, act.shape[1], -1)
        new = torch.where(where[..., None], self.source.to(act.device, act.dtype), act.gather(-1, index))
        return act.scatter(-1, index, new)


def each_position(on: torch.Tensor) -> torch.Tensor:
    """``[rows, pos, pos]``: column p of each row patches position p alone, where `on` ``[rows,
    pos]`` allows it (a map whose columns are positions)."""
    width = on.shape[1]
    return torch.eye(width, dtype=torch.bool, device=on.device)[None] & on.bool()[:, None, :]


def every_column(on: torch.Tensor, n_cols: int) -> torch.Tensor:
    """``[rows, n_cols, pos]``: every column patches the positions `on` ``[rows, pos]`` (a view)."""
    return on.bool()[:, None, :].expand(-1, n_cols, -1)


# --------------------------------------------------------------------------- inputs and runs


# The largest batch of cells an "auto" batch size chooses.
AUTO_CAP = 1024


def check_map_args(metric: Any, batch_size: Any, *, auto: bool = False) -> None:
    """Raise `DataError` unless `metric` is callable and `batch_size` a positive integer (or,
    with `auto`, ``"auto"``: sized from the memory available)."""
    if auto and isinstance(batch_size, str) and batch_size == AUTO:
        pass
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        also = "; or 'auto' (sized from the memory available)" if auto else ""
        raise DataError(f"`batch_size` must be a positive integer, got {batch_size!r}{also}")
    if not callable(metric):
        raise DataError(f"`metric` must be a callable metric(logits, pairs) -> [rows], got {metric!r}")


def token_rows(model: LoadedModel, items: Sequence[Any], name: str) -> list[list[int]]:
    """`items` (a list of strings, tokenized with ``model.tokenize``, of token-id lists, or a 2-D
    tensor of ids) as token-id lists; `name` names the argument in the errors (`DataError`)."""
    if isinstance(items, (str, torch.Tensor)):
        if isinstance(items, torch.Tensor) and items.dim() == 2:
            return [list(map(int, row)) for row in items.tolist()]
        raise DataError(f"`{name}` must be a list of strings (or of token-id lists), got a single "
                        f"{type(items).__name__}; wrap it in a list")
    items = list(items)
    if all(isinstance(x, str) for x in items):
        return model.tokenize(items)
    if any(isinstance(x, str) for x in items):
        raise DataError(f"`{name}` mixes strings and token-id lists; give one kind")
    return [list(map(int, x)) for x in items]


def token_pairs(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], *,
                names: tuple[str, str] = ("clean", "corrupt"), what: str = "patching maps",
                swap: str = "activation patching swaps") -> tuple[list, list]:
    """Token rows of equally long lists of prompts, pair i of equal length in both (`names` name
    the two arguments in the errors, `what` the caller, `swap` what needs equal lengths).

    Raises `InterventionError` for an encoder-decoder model; `DataError` for empty or unequal
    lists or an empty prompt; `ShapeError` for a pair of two lengths."""
    first, second = names
    if model.is_encoder_decoder:
        raise InterventionError(
            f"{what} need a decoder-only model; {model.name} is an encoder-decoder")
    a, b = token_rows(model, clean, first), token_rows(model, corrupt, second)
    if not a or not b:
        raise DataError(f"`{first}` and `{second}` are empty; give at least one pair of prompts")
    if len(a) != len(b):
        raise DataError(f"`{first}` has {len(a)} prompts but `{second}` has {len(b)}; give one {second} "
                        f"prompt per {first} prompt")
    for i, (x, y) in enumerate(zip(a, b)):
        if len(x) != len(y):
            raise ShapeError(
                f"pair {i}: the {first} prompt is {len(x)} tokens but the {second} prompt is {len(y)}; "
                f"{swap} activations position by position, so choose {first}/{second} "
                "pairs of the same token length")
        if not x:
            raise DataError(f"pair {i} has no tokens; each prompt needs at least one token")
    return a, b


def where_at(at: Any, mask: torch.Tensor) -> torch.Tensor:
    """Bool ``[rows, pos]``: the positions a patch ``at`` "all" (every real token) or "last" (the
    last real token of each row) touches; `DataError` for any other `at`."""
    check_at(at)
    return mask.bool() if at == "all" else Positions.last().resolve(mask)


def check_at(at: Any) -> None:
    """Raise `DataError` unless `at` is "all" or "last"."""
    if at not in ("all", "last"):
        raise DataError(f"`at` must be 'all' (every position) or 'last' (the last real token of each pair), "
                        f"got {at!r}")


@dataclass(frozen=True)
class PairRuns:
    """The plain runs of a map's pairs: ``mask`` ``[n, pos]`` (right padded), the clean and the
    corrupt `harness.measures.replay` runs (the corrupt one with the suffix replay's keys and
    values where it applies), and the values of the recorded sites in each, ``[n, pos, d]``."""

    mask: torch.Tensor
    clean: _Run
    corrupt: _Run
    clean_at: dict[Site, torch.Tensor] = field(default_factory=dict)
    corrupt_at: dict[Site, torch.Tensor] = field(default_factory=dict)


def pair_runs(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: "Metric", *,
              batch_size: int | str, heads: bool = False, record: Sequence[Site] = ()) -> PairRuns:
    """Check a map's arguments, tokenize and pad the pairs, and run clean and corrupt plainly,
    capturing every block's input (and, with `heads`, every attention output projection's input)
    and recording the sites in `record`.

    Raises the errors of `check_map_args` (``"auto"`` allowed) and `token_pairs`."""
    check_map_args(metric, batch_size, auto=True)
    a, b = token_pairs(model, clean, corrupt)
    ids_c, mask = pad_rows(a, pad_id=model.pad_id, device=model.device)
    ids_x, _ = pad_rows(b, pad_id=model.pad_id, device=model.device)
    clean_run, clean_at = _recorded(model, ids_c, mask, metric, heads=heads, kv=False, record=record)
    corrupt_run, corrupt_at = _recorded(model, ids_x, mask, metric, heads=heads, kv=_suffix_ok(model),
                                        record=record)
    return PairRuns(mask=mask, clean=clean_run, corrupt=corrupt_run, clean_at=clean_at, corrupt_at=corrupt_at)


def plain_run(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, metric: "Metric", *,
              suffix: bool) -> _Run:
    """The plain run of `ids` (``[rows, pos]``, `mask` alike) that `patch_cells` replays, with
    the suffix replay's keys and values where `suffix` asks for them and the model allows them;
    run inside an `intervene` block it captures the intervened forward (causal tracing's noise)."""
    return _plain(model, ids, mask, metric, heads=False, kv=suffix and _suffix_ok(model))


def _recorded(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, metric: "Metric", *, heads: bool,
              kv: bool, record: Sequence[Site]) -> tuple[_Run, dict[Site, torch.Tensor]]:
    if not record:
        return _plain(model, ids, mask, metric, heads=heads, kv=kv), {}
    with intervene(model, {site: Record() for site in record}, masks={model.main_stack: mask}) as rec:
        run = _plain(model, ids, mask, metric, heads=heads, kv=kv)
    return run, rec.recorded
