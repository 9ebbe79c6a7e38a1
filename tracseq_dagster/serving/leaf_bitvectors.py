"""Trees scored 64 rows at a time with vector instructions: QuickScorer's leaf bit vectors.

The node walk of :mod:`.compiled_trees` follows one row down one tree at a time: about 15
instructions a level, ~7 levels a tree (eight rows in lockstep go as deep as the deepest of
them), 12 µs of CPU per row on the 1,200-tree champion here. This kernel instead asks every
split of a tree the question for 64 rows at once (QuickScorer, Lucchese et al., SIGIR 2015):

* The rows' bins (:func:`.threshold_bins.bin_rows`: how many of the forest's thresholds of a
  feature lie below the value) become bytes, 64 rows to a column, so one vector compare
  answers a split for all 64 rows. NaN has two columns per feature: in one NaN is 0 (below
  every limit: it goes left), in the other 255 (above every limit: it goes right), and a
  value's bin one less; a split reads the column of the side its NaNs go to.
* Each row keeps a bit per leaf of the tree (leaves numbered left to right), all set at first.
  A split that sends a row right clears the bits of its left subtree's leaves. The row's leaf
  is then the lowest bit still set: splits in any order, no branch, no dependent loads. A row
  has one 32-bit word per 32 leaves; each tree takes the variant for its own size (1, 2 or 4
  words, up to 128 leaves: the AutoML's largest ``num_leaves``).

About 0.75 µs of CPU per row for the 1,200 trees of 24 leaves, against 12 for the node walk.
Scoring (each leaf's value into its class's raw score, in LightGBM's tree order, so the sums are
the same bits) and the path credits (24-wide rows of 8-double vector adds) bring it to about
4 µs with binning. Forests with more than 128 leaves in a tree, more than 254 thresholds of a
feature (LightGBM's default ``max_bin`` of 255 gives at most 254) or more than 128 features keep
the node walk (:meth:`LeafBitvectors.of` returns None).

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

from tracseq_dagster.serving.threshold_bins import PAD_ROWS

if TYPE_CHECKING:
    from tracseq_dagster.serving.compiled_trees import CompiledForest

_ROWS = 64  # rows per block: one byte lane each in a 512-bit compare
assert PAD_ROWS % _ROWS == 0  # a block never reads past the binned rows
_WORD_LANES = 16  # 32-bit leaf words to a 512-bit vector
_GROUPS = _ROWS // _WORD_LANES  # lane groups of a block, one vector of words each
_MAX_WORDS = 4  # leaf words per row at most: trees of up to 128 leaves
#: The most leaves a tree may have for this kernel (a forest with a larger tree takes the node walk).
MAX_LEAVES = 32 * _MAX_WORDS
_MAX_CUTS = 254  # a value's bins: 1..255 (NaN 0) and 0..254 (NaN 255); limits up to 254
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
    keeps: np.ndarray  # uint32 (splits, 4): the leaf bits a right turn keeps (all but its left subtree's), 32 a word
    first: np.ndarray  # int64 per tree: its first split (each tree's splits together)
    splits: np.ndarray  # int64 per tree: how many splits it has
    words: np.ndarray  # int64 per tree: leaf words per row, 1, 2 or 4 (up to 32, 64 or 128 leaves)
    leaf: np.ndarray  # int64 (trees, 128): the forest's leaf number of each tree's k-th leaf from the left
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
        first, splits, words = [], [], []
        leaf = np.zeros((len(forest.roots), 32 * _MAX_WORDS), dtype=np.int64)
        for t, root in enumerate(forest.roots):
            first.append(len(columns))
            left_to_right: list[int] = []
            if not _collect(forest, int(root), left_to_right, columns, limits, keeps):
                return None
            splits.append(len(columns) - first[-1])
            words.append(next(w for w in (1, 2, 4) if len(left_to_right) <= 32 * w))
            leaf[t, : len(left_to_right)] = forest.leaf_of_node[left_to_right]
        credited = forest.credit.shape[1]  # the features; derived columns of categorical splits (if any) get no credit
        padded = -(-credited // _CREDIT_LANES) * _CREDIT_LANES
        return cls(
            column=np.asarray(columns, dtype=np.uint8),
            limit=np.asarray(limits, dtype=np.uint8),
            keeps=np.asarray([[(keep >> (32 * k)) & 0xFFFFFFFF for k in range(_MAX_WORDS)] for keep in keeps], dtype=np.uint32),
            first=np.asarray(first, dtype=np.int64),
            splits=np.asarray(splits, dtype=np.int64),
            words=np.asarray(words, dtype=np.int64),
            leaf=leaf,
            credit=np.ascontiguousarray(np.pad(forest.credit, ((0, 0), (0, padded - credited)))),
        )

    def score(self, bins: np.ndarray, forest: CompiledForest, raw: np.ndarray, contributions: np.ndarray, parallel: bool) -> None:
        """Writes each row's raw score per class into ``raw`` and its summed path credit into
        ``contributions``, from the rows' :func:`.threshold_bins.bin_rows`."""
        kernel = _score if parallel else _score_serial
        kernel(bins, self.column, self.limit, self.keeps.reshape(-1), self.first, self.splits, self.words, self.leaf,
               forest.tree_class, forest.explains, forest.leaf_value, self.credit, raw, contributions)  # fmt: skip


def _collect(
    forest: CompiledForest, node: int, leaves: list[int], columns: list[int], limits: list[int], keeps: list[int]
) -> bool:
    """Appends the splits under ``node`` (children before parents) and its leaves left to right; False past 128 leaves."""
    feature, nan_right, limit, child = forest.fields(node)
    if child == node:  # a leaf leads to itself
        leaves.append(node)
        return len(leaves) <= 32 * _MAX_WORDS
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
    keeps.append(~sum(1 << k for k in left))  # two's complement: every bit but the left subtree's
    return True


def _splat(builder: ir.IRBuilder, value: ir.Value, vector: ir.VectorType) -> ir.Value:
    """``value`` in every lane of a ``vector``."""
    lanes = vector.count
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _leaf_exits_of(words: int):  # type: ignore[no-untyped-def]
    """The intrinsic that finds the exit leaves of a tree of up to ``32 * words`` leaves."""

    @intrinsic
    def leaf_exits(typingctx, bins, column, limit, keeps, first, splits, exits):  # type: ignore[no-untyped-def]
        """``exits[r]`` = the leaf (left to right) where row ``r`` of the block leaves the tree whose
        splits are ``first .. first + splits``; ``bins`` is the block's bytes, 64 per column."""
        signature = types.void(bins, column, limit, keeps, first, splits, exits)

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            bins_, column_, limit_, keeps_, exits_ = (
                context.make_array(sig.args[i])(context, builder, args[i]) for i in (0, 1, 2, 3, 6)
            )
            # bits[g][k]: word k of the leaf bits of the rows of lane group g; allocas LLVM keeps in registers
            # (the ignore: numba.core.cgutils has no annotations)
            bits = [[cgutils.alloca_once(builder, _WORD_VECTOR) for _ in range(words)] for _ in range(_GROUPS)]  # type: ignore[no-untyped-call]
            for word in (word for group in bits for word in group):
                builder.store(ir.Constant(_WORD_VECTOR, [0xFFFFFFFF] * _WORD_LANES), word)
            with cgutils.for_range(builder, args[5]) as loop:
                split = builder.add(args[4], loop.index)
                at = builder.mul(builder.zext(builder.load(builder.gep(column_.data, [split])), _I64), ir.Constant(_I64, _ROWS))
                row_bins = builder.load(builder.bitcast(builder.gep(bins_.data, [at]), _BYTES.as_pointer()), align=1)
                right = builder.icmp_unsigned(
                    ">", row_bins, _splat(builder, builder.load(builder.gep(limit_.data, [split])), _BYTES)
                )
                keep_at = builder.mul(split, ir.Constant(_I64, _MAX_WORDS))
                keep = [_splat(builder, builder.load(builder.gep(keeps_.data, [builder.add(keep_at, ir.Constant(_I64, k))])), _WORD_VECTOR)
                        for k in range(words)]  # fmt: skip
                for g, group in enumerate(bits):
                    lanes = ir.Constant(ir.VectorType(_I32, _WORD_LANES), list(range(g * _WORD_LANES, (g + 1) * _WORD_LANES)))
                    turned = builder.shuffle_vector(right, ir.Constant(right.type, ir.Undefined), lanes)
                    for k, word in enumerate(group):
                        value = builder.load(word)
                        builder.store(builder.select(turned, builder.and_(value, keep[k]), value), word)
            cttz = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]  # untyped numba.core.cgutils
                builder.module, ir.FunctionType(_WORD_VECTOR, [_WORD_VECTOR, _I1]), "llvm.cttz.v16i32"
            )
            for g, group in enumerate(bits):
                # the lowest bit set: in the first word that has one (the last word always has the row's leaf if no other does)
                lowest = None
                for k in reversed(range(words)):
                    value = builder.load(group[k])
                    here = builder.add(
                        builder.call(cttz, [value, ir.Constant(_I1, 0)]), ir.Constant(_WORD_VECTOR, [32 * k] * _WORD_LANES)
                    )
                    if lowest is None:
                        lowest = here
                    else:
                        found = builder.icmp_unsigned("!=", value, ir.Constant(_WORD_VECTOR, [0] * _WORD_LANES))
                        lowest = builder.select(found, here, lowest)
                target = builder.gep(exits_.data, [ir.Constant(_I64, g * _WORD_LANES)])
                builder.store(lowest, builder.bitcast(target, _WORD_VECTOR.as_pointer()), align=4)
            return context.get_dummy_value()

        return signature, codegen

    return leaf_exits


# One compiled variant per width: a tree pays for the words its leaves need, not the forest's widest.
_exits_32 = _leaf_exits_of(1)
_exits_64 = _leaf_exits_of(2)
_exits_128 = _leaf_exits_of(4)


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
def _score_block(b: int, all_bins: np.ndarray, column: np.ndarray, limit: np.ndarray, keeps: np.ndarray, first: np.ndarray,
                 splits: np.ndarray, words: np.ndarray, leaf: np.ndarray, tree_class: np.ndarray, explains: np.ndarray,
                 leaf_value: np.ndarray, credit: np.ndarray, raw: np.ndarray,
                 contributions: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    width, padded = all_bins.shape[1], credit.shape[1]
    lo = b * _ROWS
    hi = min(raw.shape[0], lo + _ROWS)
    bins = np.empty(2 * width * _ROWS, dtype=np.uint8)
    for r in range(_ROWS):  # a column of 64 bytes per feature and NaN side: 0 / 255 for NaN (see the module docstring)
        for j in range(width):
            value = all_bins[lo + r, j]
            bins[j * _ROWS + r] = value
            bins[(width + j) * _ROWS + r] = (value - 1) & 0xFF
    exits = np.empty(_ROWS, dtype=np.int32)
    scores = np.zeros((raw.shape[1], _ROWS))
    credits = np.zeros(_ROWS * padded)
    flat_credit = credit.reshape(-1)
    for t in range(first.shape[0]):
        if words[t] == 1:
            _exits_32(bins, column, limit, keeps, first[t], splits[t], exits)
        elif words[t] == 2:
            _exits_64(bins, column, limit, keeps, first[t], splits[t], exits)
        else:
            _exits_128(bins, column, limit, keeps, first[t], splits[t], exits)
        leaves = leaf[t]
        score = scores[tree_class[t]]
        for r in range(hi - lo):  # tree by tree, as LightGBM adds them: the same sums to the bit
            score[r] += leaf_value[leaves[exits[r]]]
        if explains[t]:
            for r in range(hi - lo):
                at = leaves[exits[r]] * padded
                for j in range(0, padded, _CREDIT_LANES):
                    # numba's @intrinsic takes typingctx itself: the jitted call passes the other four
                    _add_lanes(credits, r * padded + j, flat_credit, at + j)  # type: ignore[call-arg]
    for r in range(hi - lo):
        for k in range(raw.shape[1]):
            raw[lo + r, k] = scores[k, r]
        for j in range(contributions.shape[1]):  # the credited features (bins may have derived columns after them)
            contributions[lo + r, j] = credits[r * padded + j]


# Two kernels with their own names (numba's on-disk cache is keyed by name): see compiled_trees._walk.
@numba.njit(parallel=True, cache=True, nogil=True)
def _score(bins: np.ndarray, column: np.ndarray, limit: np.ndarray, keeps: np.ndarray, first: np.ndarray,
           splits: np.ndarray, words: np.ndarray, leaf: np.ndarray, tree_class: np.ndarray, explains: np.ndarray,
           leaf_value: np.ndarray, credit: np.ndarray, raw: np.ndarray,
           contributions: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    for b in numba.prange(bins.shape[0] // _ROWS):
        _score_block(b, bins, column, limit, keeps, first, splits, words, leaf, tree_class, explains, leaf_value, credit,
                     raw, contributions)  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _score_serial(bins: np.ndarray, column: np.ndarray, limit: np.ndarray, keeps: np.ndarray, first: np.ndarray,
                  splits: np.ndarray, words: np.ndarray, leaf: np.ndarray, tree_class: np.ndarray, explains: np.ndarray,
                  leaf_value: np.ndarray, credit: np.ndarray, raw: np.ndarray,
                  contributions: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    for b in range(bins.shape[0] // _ROWS):
        _score_block(b, bins, column, limit, keeps, first, splits, words, leaf, tree_class, explains, leaf_value, credit,
                     raw, contributions)  # fmt: skip
