"""A compiled walk of the booster's trees for a few rows: the answer XGBoost gives, bit for bit, without its per-call
cost.

Why: `Booster.inplace_predict` costs ~250-350 us per call here whatever the size (array-interface JSON, config,
thread-pool set-up: ~135 us in the C library alone), so one record over HTTP spent most of its time there. Walking
the trees in numba-compiled code takes ~5 us for one row of a 200-tree model. For large matrices XGBoost's blocked
predictor is faster (2x at 10k rows), so `ModelBundle.predict_encoded` uses this walker up to `MAX_ROWS` rows.

Why the two paths agree exactly: the walker does XGBoost's arithmetic (float32 features against float32 split
conditions, `x < split` goes left, a missing value takes the node's default side, leaf values added in tree order
to the base margin in float32, then 1 / (1 + expf(-margin)) in float32). `TreeWalker.for_booster` checks that on
probe rows built around every split condition (with missing values) before it is used; a model it cannot mirror
(another objective, categorical splits, dart, several targets) or any probe that differs returns None, and XGBoost
answers everything. So the same record gets the same probability through HTTP, Kinesis, batch and pyfunc.

Why one packed record per node (16 bytes: feature and default side, split condition or leaf value, both children)
rather than an array per field: a row visits ~1,000 nodes of a 200-tree model, and with the fields in six arrays of
8-byte indices each visit touched five cache lines of a 400 KB model. Under load the server's caches are cold
between requests (the network stack and the other threads pass through them), so those misses, not the arithmetic,
were the cost: encoding + walk took ~36 us a request at saturation against ~7 us in a warm loop. Packed, a visit
is one line, and the model a third of the size (137 KB for 200 trees of depth 5).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAX_ROWS = 64  # up to here the walker is faster than XGBoost's predictor (measured: 1 row 5 us vs 265 us)
PROBE_ROWS = 512


DEFAULT_RIGHT = 0x40000000  # in a node's first field: a missing value goes to the right child
FEATURE_MASK = DEFAULT_RIGHT - 1
LEAF = -1  # the first field of a leaf
FEATURE, VALUE, LEFT, RIGHT = range(4)  # a node's fields: VALUE is the split condition, or a leaf's value


@dataclass(frozen=True)
class TreeWalker:
    """The trees as one int32 array of nodes, shape (n, 4): [feature | DEFAULT_RIGHT, or LEAF; the condition or leaf
    value as float32 bits; left child; right child], children as global node indices."""

    nodes: np.ndarray  # int32 (n, 4)
    roots: np.ndarray  # int32, one per tree, in tree order
    base_margin: np.float32
    n_features: int

    @property
    def values(self) -> np.ndarray:
        """The VALUE field as float32 (the same memory, read as floats)."""
        return self.nodes.view(np.float32)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities (float32, as XGBoost's) of the rows of an encoded matrix."""
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} features, got shape {rows.shape}")
        return _kernels()[0](rows, self.nodes, self.values, self.roots, self.base_margin)

    @classmethod
    def for_booster(cls, booster: Any) -> TreeWalker | None:
        """The walker of `booster`, or None where it would not give XGBoost's answer (logged once, with why)."""
        try:
            walker = cls._from_model(json.loads(booster.save_raw("json")))
        except _Unsupported as why:
            log.info("tree walker not used (%s): XGBoost answers every size", why)
            return None
        except Exception as error:  # a model layout this code does not know
            log.warning("tree walker not used (cannot read the model: %s): XGBoost answers every size", error)
            return None
        probe = walker._probe_rows()
        expected = np.asarray(booster.inplace_predict(probe, validate_features=False), dtype=np.float32)
        try:
            got = walker.predict(probe)
        except Exception as error:  # numba cannot compile here: XGBoost answers, slower but the same
            log.warning("tree walker not used (%s: %s): XGBoost answers every size", type(error).__name__, error)
            return None
        if expected.shape != got.shape or not np.array_equal(expected, got):
            worst = float(np.max(np.abs(expected.astype(np.float64) - got))) if expected.shape == got.shape else None
            log.warning("tree walker not used: it differs from XGBoost on probe rows (max %s)", worst)
            return None
        return walker

    @classmethod
    def _from_model(cls, model: dict[str, Any]) -> TreeWalker:
        learner = model["learner"]
        objective = learner["objective"]["name"]
        if objective != "binary:logistic":
            raise _Unsupported(f"objective {objective}")
        booster = learner["gradient_booster"]
        if booster.get("name") != "gbtree":
            raise _Unsupported(f"booster {booster.get('name')}")
        params = learner["learner_model_param"]
        if int(params.get("num_target", 1)) != 1 or int(params.get("num_class", 0)) > 1:
            raise _Unsupported("several targets or classes")
        trees = booster["model"]["trees"]
        if any(int(x) != 0 for x in booster["model"].get("tree_info", [])):
            raise _Unsupported("trees of several groups")
        blocks: list[np.ndarray] = []
        roots: list[int] = []
        offset = 0
        for tree in trees:
            if tree.get("categories_nodes"):
                raise _Unsupported("categorical splits")
            left = np.asarray(tree["left_children"], dtype=np.int64)
            right = np.asarray(tree["right_children"], dtype=np.int64)
            condition = np.asarray(tree["split_conditions"], dtype=np.float32)  # a leaf's value, at a leaf
            leaf = left == -1
            default_right = ~np.asarray(tree["default_left"], dtype=bool)
            feature = np.asarray(tree["split_indices"], dtype=np.int64) | np.where(default_right, DEFAULT_RIGHT, 0)
            block = np.empty((len(left), 4), dtype=np.int32)
            block[:, FEATURE] = np.where(leaf, LEAF, feature)
            block[:, VALUE] = condition.view(np.int32)
            block[:, LEFT] = np.where(leaf, -1, left + offset)
            block[:, RIGHT] = np.where(leaf, -1, right + offset)
            blocks.append(block)
            roots.append(offset)
            offset += len(left)
        if offset >= 2**31 or int(params["num_feature"]) > FEATURE_MASK:
            raise _Unsupported("a model too large for 32-bit node indices")
        base_score = np.float32(float(str(params["base_score"]).strip("[]").split(",")[0]))
        # XGBoost turns the base score into a margin in float32: -logf(1/p - 1), with the C library's logf (numpy's
        # float32 log differs from it by an ulp on some values)
        base_margin = np.float32(-_logf(np.float32(1) / base_score - np.float32(1)))
        return cls(
            nodes=np.ascontiguousarray(np.concatenate(blocks)),
            roots=np.asarray(roots, dtype=np.int32),
            base_margin=base_margin,
            n_features=int(params["num_feature"]),
        )

    def _probe_rows(self) -> np.ndarray:
        """Rows whose values sit on, just below and just above the split conditions, some missing: where a
        different comparison or default side would show."""
        rng = np.random.default_rng(0)
        codes = self.nodes[:, FEATURE]
        inner = codes != LEAF
        features = codes & FEATURE_MASK
        by_feature: list[np.ndarray] = []
        for column in range(self.n_features):
            cuts = self.values[:, VALUE][inner & (features == column)]
            if cuts.size == 0:
                cuts = np.asarray([0.0], dtype=np.float32)
            near = np.concatenate(
                [cuts, np.nextafter(cuts, np.float32(-np.inf)), np.nextafter(cuts, np.float32(np.inf))]
            )
            by_feature.append(near.astype(np.float32))
        probe = np.empty((PROBE_ROWS, self.n_features), dtype=np.float32)
        for column, values in enumerate(by_feature):
            probe[:, column] = rng.choice(values, size=PROBE_ROWS)
        probe[rng.random(probe.shape) < 0.1] = np.nan
        return probe


class _Unsupported(ValueError):
    pass


def _logf(value: np.float32) -> np.float32:
    import ctypes
    import ctypes.util

    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        libm.logf.restype, libm.logf.argtypes = ctypes.c_float, [ctypes.c_float]
        return np.float32(libm.logf(float(value)))
    except (OSError, AttributeError):  # no C library to ask: numpy's, and the probe check decides
        return np.float32(np.log(value))


def _walk(rows, nodes, values, roots, base_margin):  # type: ignore[no-untyped-def]
    """Compiled by numba (`_kernels`; the layout's module constants are compile-time constants there); plain Python
    here, so it is also readable as the rule it follows. `values` is `nodes` read as float32."""
    out = np.empty(rows.shape[0], dtype=np.float32)
    one = np.float32(1.0)
    for r in range(rows.shape[0]):
        margin = base_margin
        for t in range(roots.shape[0]):
            node = roots[t]
            code = nodes[node, FEATURE]
            while code != LEAF:
                value = rows[r, code & FEATURE_MASK]
                if np.isnan(value):
                    node = nodes[node, RIGHT] if code & DEFAULT_RIGHT else nodes[node, LEFT]
                elif value < values[node, VALUE]:
                    node = nodes[node, LEFT]
                else:
                    node = nodes[node, RIGHT]
                code = nodes[node, FEATURE]
            margin = np.float32(margin + values[node, VALUE])
        out[r] = one / (np.float32(np.exp(-margin)) + one)
    return out


_COMPILED: list[Any] = []


def _kernels() -> list[Any]:
    """Compiled on first use (about a second; cached on disk by numba where the package folder is writable)."""
    if not _COMPILED:
        import numba

        try:
            kernel = numba.njit(cache=True)(_walk)
            kernel(*_TINY)  # compiles now, so a cache that cannot be written fails here
        except Exception as error:  # e.g. a read-only package folder in a container: no disk cache then
            log.info("tree walker compiled without numba's disk cache (%s)", error)
            kernel = numba.njit(cache=False)(_walk)
        _COMPILED.append(kernel)
    return _COMPILED


_TINY_NODES = np.asarray([[LEAF, 0, -1, -1]], dtype=np.int32)  # one leaf: the smallest model, to compile the kernel
_TINY = (
    np.zeros((1, 1), dtype=np.float32),
    _TINY_NODES,
    _TINY_NODES.view(np.float32),
    np.zeros(1, dtype=np.int32),
    np.float32(0.0),
)
