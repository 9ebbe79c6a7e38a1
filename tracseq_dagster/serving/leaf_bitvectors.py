"""Small trees scored 64 rows at a time with vector instructions: QuickScorer's leaf bit vectors.

The node walk of :mod:`.compiled_trees` follows one row down one tree at a time: about 15
instructions a level, ~7 levels a tree (eight rows in lockstep go as deep as the deepest of
them), 12 µs of CPU per row on the 1,200-tree champion here. This kernel instead asks every
split of a tree the question for 64 rows at once (QuickScorer, Lucchese et al., SIGIR 2015):

* Each row of a block of 64 is *binned* per feature as a byte, the number of the forest's
  thresholds of that feature below its value, so ``x <= threshold`` is a byte comparison and
  one vector compare answers a split for all 64 rows. NaN has two encodings, one column each:
  0 (below every limit: it goes left) and 255 (above every limit: it goes right); a split reads
  the column of the side its NaNs go to.
* Each row keeps a bit per leaf of the tree (leaves numbered left to right), all set at first.
  A split that sends a row right clears the bits of its left subtree's leaves. The row's leaf
  is then the lowest bit still set: splits in any order, no branch, no dependent loads.

About 1.3 µs of CPU per row for the 1,200 trees (with binning), against 12 for the node walk.
Scoring (each leaf's value into its class's raw score, in LightGBM's tree order, so the sums are
the same bits) and the path credits (24-wide rows of 8-double vector adds) bring it to about
4 µs. It takes forests whose trees have at most 32 leaves (a 32-bit word per row; 64-bit words
cost twice as much here), at most 253 thresholds per feature and 128 features; others keep the
node walk (:meth:`LeafBitvectors.of` returns None).

The vector code is portable LLVM IR (a 64-lane byte compare, selects, ``cttz``) generated in
numba intrinsics; LLVM lowers it to what the CPU has: AVX-512 here, narrower vectors elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import llvmlite.ir as ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from tracseq_dagster.serving.threshold_bins import cuts_below

if TYPE_CHECKING:
    from tracseq_dagster.serving.compiled_trees import CompiledForest

_ROWS = 64  # rows per block: one byte lane each in a 512-bit compare
_LEAVES = 32  # leaf bits per row: a 32-bit word
_WORD_LANES = 16  # 32-bit leaf words to a 512-bit vector
_WORDS = _ROWS // _WORD_LANES  # vectors of leaf words per block
_NAN_RIGHT_BIN = 255
_MAX_CUTS = 253  # bins 1..254 for values, 0 and 255 for NaN
_CREDIT_LANES = 8  # doubles per vector add of path credit

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_BYTES = ir.VectorType(_I8, _ROWS)
_WORD_VECTOR = ir.VectorType(_I32, _WORD_LANES)
_DOUBLES = ir.VectorType(ir.DoubleType(), _CREDIT_LANES)


@dataclass(frozen=True)
class LeafBitvectors:
    """Every split of every tree as (bin column, limit, leaf bits kept on a right turn)."""

    column: np.ndarray  # uint8 per split: the feature's bin column (feature, or width + feature when NaN goes right)
    limit: np.ndarray  # uint8 per split: a row goes right when its bin is above this
    keeps: np.ndarray  # uint32 per split: the leaf bits a right turn keeps (all but its left subtree's)
    first: np.ndarray  # int64 per tree: its first split (each tree's splits together)
    splits: np.ndarray  # int64 per tree: how many splits it has
    leaf: np.ndarray  # int64 (trees, 32): the forest's leaf number of each tree's k-th leaf from the left
    credit: np.ndarray  # float64 (leaves, features rounded up to 8): the forest's path credits, zero padded

    @classmethod
    def of(cls, forest: CompiledForest) -> LeafBitvectors | None:
        """From the nodes of a :class:`.compiled_trees.CompiledForest`; None if it is too large for bytes and words."""
        width = forest.cuts.shape[0]
        if 2 * width > 256 or forest.cut_count.max(initial=0) > _MAX_CUTS:
            return None
        columns: list[int] = []
        limits: list[int] = []
        keeps: list[int] = []
        first, splits = [], []
        leaf = np.zeros((len(forest.roots), _LEAVES), dtype=np.int64)
        for t, root in enumerate(forest.roots):
            first.append(len(columns))
            left_to_right: list[int] = []
            if not _collect(forest, int(root), left_to_right, columns, limits, keeps):
                return None
            splits.append(len(columns) - first[-1])
            leaf[t, : len(left_to_right)] = forest.leaf_of_node[left_to_right]
        padded = -(-width // _CREDIT_LANES) * _CREDIT_LANES
        return cls(
            column=np.asarray(columns, dtype=np.uint8),
            limit=np.asarray(limits, dtype=np.uint8),
            keeps=np.asarray(keeps, dtype=np.uint32),
            first=np.asarray(first, dtype=np.int64),
            splits=np.asarray(splits, dtype=np.int64),
            leaf=leaf,
            credit=np.ascontiguousarray(np.pad(forest.credit, ((0, 0), (0, padded - width)))),
        )

    def score(self, x: np.ndarray, forest: CompiledForest, raw: np.ndarray, contributions: np.ndarray, parallel: bool) -> None:
        """Writes each row's raw score per class into ``raw`` and its summed path credit into ``contributions``."""
        kernel = _score if parallel else _score_serial
        kernel(x, forest.cuts, forest.cut_count, self.column, self.limit, self.keeps, self.first, self.splits, self.leaf,
               forest.tree_class, forest.explains, forest.leaf_value, self.credit, raw, contributions)  # fmt: skip


def _collect(forest: CompiledForest, node: int, leaves: list[int], columns: list[int], limits: list[int], keeps: list[int]) -> bool:
    """Appends the splits under ``node`` (children before parents) and its leaves left to right; False past 32 leaves."""
    feature, nan_right, limit, child = forest.fields(node)
    if child == node:  # a leaf leads to itself
        leaves.append(node)
        return len(leaves) <= _LEAVES
    before = len(leaves)
    if not _collect(forest, child, leaves, columns, limits, keeps):
        return False
    left = range(before, len(leaves))
    if not _collect(forest, child + 1, leaves, columns, limits, keeps):
        return False
    # The node walk reads a NaN-right split's bin less one, modulo 2^16 (NaN above every limit):
    # the NaN-right column holds exactly that, with 255 for NaN.
    columns.append(feature + forest.cuts.shape[0] * nan_right)
    limits.append(limit)
    keeps.append(0xFFFFFFFF & ~sum(1 << k for k in left))
    return True


def _splat(builder: ir.IRBuilder, value: ir.Value, vector: ir.VectorType) -> ir.Value:
    """``value`` in every lane of a ``vector``."""
    lanes = vector.count
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


@intrinsic
def _leaf_exits(typingctx, bins, column, limit, keeps, first, splits, exits):  # type: ignore[no-untyped-def]
    """``exits[r]`` = the leaf (left to right) where row ``r`` of the block leaves the tree whose
    splits are ``first .. first + splits``; ``bins`` is the block's bytes, 64 per column."""
    signature = types.void(bins, column, limit, keeps, first, splits, exits)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        bins_, column_, limit_, keeps_, exits_ = (context.make_array(sig.args[i])(context, builder, args[i]) for i in (0, 1, 2, 3, 6))
        words = [cgutils.alloca_once(builder, _WORD_VECTOR) for _ in range(_WORDS)]  # promoted to registers by LLVM
        for word in words:
            builder.store(ir.Constant(_WORD_VECTOR, [0xFFFFFFFF] * _WORD_LANES), word)
        with cgutils.for_range(builder, args[5]) as loop:
            split = builder.add(args[4], loop.index)
            at = builder.mul(builder.zext(builder.load(builder.gep(column_.data, [split])), _I64), ir.Constant(_I64, _ROWS))
            row_bins = builder.load(builder.bitcast(builder.gep(bins_.data, [at]), _BYTES.as_pointer()), align=1)
            right = builder.icmp_unsigned(">", row_bins, _splat(builder, builder.load(builder.gep(limit_.data, [split])), _BYTES))
            keep = _splat(builder, builder.load(builder.gep(keeps_.data, [split])), _WORD_VECTOR)
            for w, word in enumerate(words):
                lanes = ir.Constant(ir.VectorType(_I32, _WORD_LANES), list(range(w * _WORD_LANES, (w + 1) * _WORD_LANES)))
                turned = builder.shuffle_vector(right, ir.Constant(right.type, ir.Undefined), lanes)
                bits = builder.load(word)
                builder.store(builder.select(turned, builder.and_(bits, keep), bits), word)
        cttz = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_WORD_VECTOR, [_WORD_VECTOR, _I1]), "llvm.cttz.v16i32")
        for w, word in enumerate(words):
            lowest = builder.call(cttz, [builder.load(word), ir.Constant(_I1, 0)])
            target = builder.gep(exits_.data, [ir.Constant(_I64, w * _WORD_LANES)])
            builder.store(lowest, builder.bitcast(target, _WORD_VECTOR.as_pointer()), align=4)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def _add_lanes(typingctx, total, at, values, start):  # type: ignore[no-untyped-def]
    """``total[at : at + 8] += values[start : start + 8]``: one vector add of eight doubles."""
    signature = types.void(total, at, values, start)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        total_ = context.make_array(sig.args[0])(context, builder, args[0])
        values_ = context.make_array(sig.args[2])(context, builder, args[2])
        target = builder.bitcast(builder.gep(total_.data, [args[1]]), _DOUBLES.as_pointer())
        source = builder.bitcast(builder.gep(values_.data, [args[3]]), _DOUBLES.as_pointer())
        builder.store(builder.fadd(builder.load(target, align=8), builder.load(source, align=8)), target, align=8)
        return context.get_dummy_value()

    return signature, codegen


@numba.njit(inline="always")
def _bin_block(x, lo, hi, cuts, cut_count, bins):  # pragma: no cover - compiled
    """Column ``j`` (NaN 0) and ``width + j`` (NaN 255) of each row: 1 + how many of feature j's cuts
    lie below the value, and that less one. Rows past ``hi`` repeat the first."""
    width = x.shape[1]
    for r in range(_ROWS):
        row = lo + r if lo + r < hi else lo
        for j in range(width):
            value = x[row, j]
            if np.isnan(value):
                bins[j * _ROWS + r] = 0
                bins[(width + j) * _ROWS + r] = _NAN_RIGHT_BIN
                continue
            below = cuts_below(cuts, cut_count, j, value)
            bins[j * _ROWS + r] = below + 1
            bins[(width + j) * _ROWS + r] = below


@numba.njit(inline="always")
def _score_block(b, x, cuts, cut_count, column, limit, keeps, first, splits, leaf, tree_class, explains, leaf_value, credit, raw,
                 contributions):  # fmt: skip  # pragma: no cover - compiled
    n, width, padded = x.shape[0], x.shape[1], credit.shape[1]
    lo = b * _ROWS
    hi = min(n, lo + _ROWS)
    bins = np.empty(2 * width * _ROWS, dtype=np.uint8)
    exits = np.empty(_ROWS, dtype=np.int32)
    scores = np.zeros((raw.shape[1], _ROWS))
    credits = np.zeros(_ROWS * padded)
    flat_credit = credit.reshape(-1)
    _bin_block(x, lo, hi, cuts, cut_count, bins)
    for t in range(first.shape[0]):
        _leaf_exits(bins, column, limit, keeps, first[t], splits[t], exits)
        leaves = leaf[t]
        score = scores[tree_class[t]]
        for r in range(hi - lo):  # tree by tree, as LightGBM adds them: the same sums to the bit
            score[r] += leaf_value[leaves[exits[r]]]
        if explains[t]:
            for r in range(hi - lo):
                at = leaves[exits[r]] * padded
                for j in range(0, padded, _CREDIT_LANES):
                    _add_lanes(credits, r * padded + j, flat_credit, at + j)
    for r in range(hi - lo):
        for k in range(raw.shape[1]):
            raw[lo + r, k] = scores[k, r]
        for j in range(width):
            contributions[lo + r, j] = credits[r * padded + j]


# Two kernels with their own names (numba's on-disk cache is keyed by name): see compiled_trees._walk.
@numba.njit(parallel=True, cache=True, nogil=True)
def _score(x, cuts, cut_count, column, limit, keeps, first, splits, leaf, tree_class, explains, leaf_value, credit, raw,
           contributions):  # fmt: skip  # pragma: no cover - compiled
    for b in numba.prange((x.shape[0] + _ROWS - 1) // _ROWS):
        _score_block(b, x, cuts, cut_count, column, limit, keeps, first, splits, leaf, tree_class, explains, leaf_value, credit,
                     raw, contributions)  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _score_serial(x, cuts, cut_count, column, limit, keeps, first, splits, leaf, tree_class, explains, leaf_value, credit, raw,
                  contributions):  # fmt: skip  # pragma: no cover - compiled
    for b in range((x.shape[0] + _ROWS - 1) // _ROWS):
        _score_block(b, x, cuts, cut_count, column, limit, keeps, first, splits, leaf, tree_class, explains, leaf_value, credit,
                     raw, contributions)  # fmt: skip
