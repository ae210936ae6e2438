"""Receptive field and valid part of a SavedModel: the theory read from its graph, checked by a measurement.

Theory: walk the serving signature's graph, inside the functions it calls, and propagate per op and per spatial
axis the tensor's size and its VALID WINDOW [first, end): the pixels computed only from pixels of the tile,
never from the padding at its border. An output pixel is exact when every input pixel it reads is exact, so
the window follows from each op's index map (otbtf-semantics.md 5, 5.2): TF "same" padding puts the odd pixel
after the data, hence asymmetric windows ([31, 112) of 128 for the sample model), and a skip sum keeps the
intersection of its operands' windows. The textbook sizes, floor((x - k) / s) + 1 for a convolution and
s x + s - k for a transposed convolution, are shown next to them.

Measurement: engine.analysis.probe_model on random data (or real rasters). The crop recommended is the larger
of the two answers: the theory can only over-estimate what a border pollutes (it ignores zero weights), the
measurement can only under-estimate it (a change that these data happen not to show).
"""

import html
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from math import ceil, gcd

import numpy as np

from .analysis import ProbeResult, ProbeSource, probe_model, recommended_crop
from .dependencies import import_tensorflow
from .errors import EngineError
from .grid import build_lattice
from .inference import Source, _probe_sources
from .model import SavedModel, read_signature, split_crop
from .raster import raster_info

# Random virtual images when no raster is given: normalised data and raw digital numbers (the sample's PAN and
# XS are about 100..1600). Both are probed and the larger loss kept: a saturated softmax or dead ReLUs at one
# scale could hide a polluted pixel.
DATA_SCALES = ((0.0, 1.0), (500.0, 250.0))

CALLS = ("PartitionedCall", "StatefulPartitionedCall")
PASS_THROUGH = frozenset("Identity IdentityN Snapshot StopGradient PreventGradient EnsureShape CheckNumerics".split())
# ops that combine their inputs pixel by pixel (a per-channel or scalar operand has no window: ignored)
ELEMENTWISE = PASS_THROUGH | frozenset("""
    Cast Relu Relu6 Elu Selu LeakyRelu Sigmoid Tanh Softplus Softsign Gelu Exp Expm1 Log Log1p Sqrt Rsqrt Square
    Abs Neg Sign Floor Ceil Round Rint Reciprocal Inv Erf Erfc Sin Cos IsNan IsFinite LogicalNot ZerosLike OnesLike
    BiasAdd LRN FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 Softmax LogSoftmax
    Add AddV2 AddN Sub Mul MulNoNan RealDiv Div DivNoNan TruncateDiv FloorDiv FloorMod Maximum Minimum Pow
    SquaredDifference Equal NotEqual Greater GreaterEqual Less LessEqual LogicalAnd LogicalOr Select SelectV2
    ClipByValue Bitcast BitwiseAnd BitwiseOr BitwiseXor Invert LeftShift RightShift""".split())
REDUCTIONS = frozenset("Sum Mean Max Min Prod All Any ArgMax ArgMin EuclideanNorm".split())
CONVOLUTIONS = frozenset("Conv2D _FusedConv2D DepthwiseConv2dNative MaxPool AvgPool".split())
_ARITHMETIC = {"Mul": np.multiply, "Add": np.add, "AddV2": np.add, "Sub": np.subtract, "RealDiv": np.true_divide,
               "FloorDiv": np.floor_divide, "FloorMod": np.mod, "Maximum": np.maximum, "Minimum": np.minimum}


@dataclass(frozen=True)
class Span:
    """One spatial axis of a tensor: size and valid window [first, end) in its pixels, pixel in source-1 px."""

    size: int
    first: int
    end: int
    step: Fraction = Fraction(1)

    @property
    def valid(self) -> int:
        """Number of exact pixels."""
        return max(0, self.end - self.first)


@dataclass(frozen=True)
class Geo:
    """The geometry of a feature map: spans along height (y) and width (x), their axes, the tensor's rank."""

    y: Span
    x: Span
    axes: tuple = (1, 2)
    rank: int = 4

    @property
    def size(self) -> tuple:
        """(width, height) in this tensor's pixels."""
        return self.x.size, self.y.size

    @property
    def window(self) -> tuple:
        """Exact pixels: ((x_first, x_end), (y_first, y_end))."""
        return (self.x.first, self.x.end), (self.y.first, self.y.end)


@dataclass(frozen=True)
class Static:
    """A tensor whose shape is known but not its value (a layer's weights)."""

    shape: tuple


class _Unknown:
    """A tensor downstream of a spatial op that could not be interpreted: its geometry is unknown."""

    def __repr__(self):
        return "UNKNOWN"


UNKNOWN = _Unknown()


class _NotInterpreted(Exception):
    """An op the walk cannot follow; the message says why."""


@dataclass(frozen=True)
class Layer:
    """One row of the valid-size table: a layer (name scope) and the geometry of its output.

    size: (w, h) output pixels; window: ((x_first, x_end), (y_first, y_end)) exact pixels; both None when the
    layer could not be interpreted. kernel and stride are (x, y) of its convolution or pooling, if any.
    """

    name: str
    operation: str
    kernel: tuple | None
    stride: tuple | None
    size: tuple | None
    window: tuple | None
    formula: str = ""

    @property
    def valid(self) -> tuple | None:
        """(w, h) of the valid window."""
        if self.window is None:
            return None
        return tuple(max(0, end - first) for first, end in self.window)


@dataclass(frozen=True)
class Theory:
    """What the graph says: the table, each signature output's geometry, what could not be read."""

    layers: tuple
    outputs: dict                 # signature output name -> Geo, or None when not interpreted
    issues: tuple                 # "OpType (node): reason"
    notes: tuple                  # textbook formulas that the index propagation corrects
    stride: int | None            # total stride in source-1 pixels (lcm of every tensor's pixel)


@dataclass(frozen=True)
class _Step:
    scope: tuple
    name: str
    op: str
    out: object
    kernel: tuple | None = None
    stride: tuple | None = None
    formula: str = ""
    textbook: tuple | None = None


# ---------------------------------------------------------------------------------------------------------------
# per-axis index maps: which input pixels each output pixel reads
# ---------------------------------------------------------------------------------------------------------------
def _window(ok: np.ndarray) -> tuple:
    hit = np.flatnonzero(ok)
    return (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)


def _reading(span: Span, size: int, reads: np.ndarray, step: Fraction) -> Span:
    """The output span whose pixel i reads input pixels reads[i] (-1 in a row = no read)."""
    inside = (reads >= span.first) & (reads < span.end)
    return Span(size, *_window(inside.all(axis=1)), step)


def _conv_axis(span, k, s, d, padding, explicit=(0, 0)):
    keff, n = (k - 1) * d + 1, span.size
    if padding == "SAME":
        out = -(-n // s)
        before = max((out - 1) * s + keff - n, 0) // 2
    else:
        before = explicit[0] if padding == "EXPLICIT" else 0
        out = (n + sum(explicit) - keff) // s + 1 if padding == "EXPLICIT" else (n - keff) // s + 1
    if out < 1:
        raise _NotInterpreted(f"a {n} px input is smaller than its {keff} px kernel")
    reads = np.arange(out)[:, None] * s - before + np.arange(k)[None, :] * d
    textbook = max(0, (span.valid - keff) // s + 1)
    return _reading(span, out, reads, span.step * s), f"⌊({span.valid} − {keff})/{s}⌋ + 1 = {textbook}", textbook


def _transposed_axis(span, k, s, d, padding, out=None, explicit=(0, 0)):
    keff, n = (k - 1) * d + 1, span.size
    if out is None:
        out = n * s if padding == "SAME" else (n - 1) * s + keff - sum(explicit)
    before = {"SAME": max((n - 1) * s + keff - out, 0) // 2, "EXPLICIT": explicit[0]}.get(padding, 0)
    # output i receives input j through tap t when j s - before + t d = i
    num = np.arange(out)[:, None] + before - np.arange(k)[None, :] * d
    inside = np.where(num % s == 0, (num // s >= span.first) & (num // s < span.end), True)
    textbook = max(0, s * span.valid + s - keff)
    return (Span(out, *_window(inside.all(axis=1)), span.step / s),
            f"{s}·{span.valid} + {s} − {keff} = {textbook}", textbook)


def _resize_axis(span, out, nearest, align_corners, half_pixel):
    n, i = span.size, np.arange(out, dtype=np.float64)
    if align_corners and out > 1:
        src = i * (n - 1) / (out - 1)
    elif half_pixel:
        src = (i + 0.5) * n / out - (0.0 if nearest else 0.5)
    else:
        src = i * n / out
    if nearest:
        lo = hi = np.round(src) if align_corners else np.floor(src)
    else:
        lo, hi = np.floor(src), np.ceil(src)
    reads = np.stack([lo, hi], axis=1).astype(np.int64)
    result = _reading(span, out, reads, span.step * Fraction(n, out))
    return result, f"resize {n} → {out}: {result.valid}", None


def _slice_axis(span, start, stop, stride):
    start, stop, stride = slice(start, stop, stride).indices(span.size)
    out = len(range(start, stop, stride))
    result = _reading(span, out, (start + np.arange(out) * stride)[:, None], span.step * abs(stride))
    return result, f"[{start}, {max(start, stop)}) of {span.size}: {result.valid}", None


def _pad_axis(span, before, after):
    result = Span(span.size + before + after, span.first + before, span.end + before, span.step)
    return result, f"{span.valid} (+{before}, +{after} padding, not exact)", None


def _spatial(geo: Geo, rule, params_y, params_x, kernel=None, stride=None) -> "_Result":
    """Apply a per-axis rule to both axes."""
    y, fy, ty = rule(geo.y, *params_y)
    x, fx, tx = rule(geo.x, *params_x)
    textbook = None if tx is None else (tx, ty)
    return _Result([replace(geo, y=y, x=x)], kernel, stride, fx if fx == fy else f"x: {fx}; y: {fy}", textbook)


@dataclass(frozen=True)
class _Result:
    """What a spatial op gives: its outputs, kernel and stride (x, y) if any, formula, textbook valid (x, y)."""

    outs: list
    kernel: tuple | None = None
    stride: tuple | None = None
    formula: str = ""
    textbook: tuple | None = None


# ---------------------------------------------------------------------------------------------------------------
# the graph walk
# ---------------------------------------------------------------------------------------------------------------
def _output_args(node, library) -> list:
    """[(output arg name, number of tensors)] of a node, from its op definition or the called function."""
    if node.op in library:
        return [(a.name, 1) for a in library[node.op].signature.output_arg]
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    if op_def is None:
        return [("output", 1)]
    args = []
    for arg in op_def.output_arg:
        if arg.number_attr:
            count = node.attr[arg.number_attr].i
        elif arg.type_list_attr:
            count = len(node.attr[arg.type_list_attr].list.type)
        else:
            count = 1
        args.append((arg.name, count))
    return args


def _topological(nodes) -> list:
    """Nodes in an order where every node comes after its data inputs (listed order kept where possible)."""
    by_name = {n.name: n for n in nodes}
    done, order = set(), []
    for root in nodes:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node.name in done:
                continue
            if expanded:
                done.add(node.name)
                order.append(node)
                continue
            stack.append((node, True))
            for ref in reversed(node.input):
                dep = by_name.get(ref.lstrip("^").split(":")[0])
                if dep is not None and dep.name not in done:
                    stack.append((dep, False))
    return order


def _attr_ints(node, name, default=()):
    return list(node.attr[name].list.i) if name in node.attr else list(default)


def _attr_str(node, name, default=""):
    return node.attr[name].s.decode() if name in node.attr else default


def _ints(value) -> list:
    return [int(v) for v in np.atleast_1d(value)]


class _Walker:
    """Propagates facts (Geo, numpy value, Static shape, UNKNOWN or None) through graphs and their functions."""

    def __init__(self, library: dict, seeds: dict):
        self.library = library
        self.seeds = seeds
        self.steps = []
        self.issues = []
        self.pixels = set()

    def walk(self, nodes, args: dict, scope: tuple, in_function: bool, depth: int = 0) -> callable:
        """Evaluate `nodes`; return a resolver from a tensor reference to its fact."""
        if depth > 32:
            raise _NotInterpreted("functions nested too deep")
        by_name = {n.name: n for n in nodes}
        facts = {}

        def resolve(ref):
            name, _, rest = ref.partition(":")
            if in_function and not rest:
                return args.get(name)
            if not in_function:
                return facts.get((name, int(rest or 0)))
            out, _, index = rest.partition(":")
            flat = 0
            for arg, count in _output_args(by_name[name], self.library):
                if arg == out:
                    break
                flat += count
            return facts.get((name, flat + int(index or 0)))

        for node in _topological(nodes):
            ins = [resolve(r) for r in node.input if not r.startswith("^")]
            for index, fact in enumerate(self.evaluate(node, ins, scope, depth)):
                facts[(node.name, index)] = fact
        return resolve

    def call(self, function: str, ins: list, scope: tuple, depth: int) -> list:
        fdef = self.library[function]
        args = {a.name: ins[i] if i < len(ins) else None for i, a in enumerate(fdef.signature.input_arg)}
        resolve = self.walk(fdef.node_def, args, scope, True, depth + 1)
        return [resolve(fdef.ret[a.name]) for a in fdef.signature.output_arg]

    def evaluate(self, node, ins: list, scope: tuple, depth: int) -> list:
        op = node.op
        count = sum(c for _, c in _output_args(node, self.library))
        if op in CALLS or op in self.library:
            name = node.attr["f"].func.name if op in CALLS else op
            return self.call(name, ins, scope + tuple(node.name.split("/")[:-1]), depth)
        if op == "Placeholder":
            return [self.seeds.get(node.name)]
        geos = [f for f in ins if isinstance(f, Geo)]
        if op in ("Shape", "ShapeN") and not any(f is UNKNOWN for f in ins):
            return [_shape_value(f) for f in ins] if op == "ShapeN" else [_shape_value(ins[0])]
        if any(f is UNKNOWN for f in ins):
            return [UNKNOWN] * count
        if not geos:
            try:
                return [_value(node, ins)]
            except Exception:  # a value we do not need to know
                return [None]
        step_scope = scope + tuple(node.name.split("/")[:-1])
        try:
            result = self.geometry(node, ins, geos)
        except Exception as exc:  # never stop the walk: name the op, its outputs become unknown
            reason = str(exc) if isinstance(exc, _NotInterpreted) else f"{exc.__class__.__name__}: {exc}"
            self.issues.append(f"{op} ({node.name}): {reason}")
            self.steps.append(_Step(step_scope, node.name, op, UNKNOWN))
            return [UNKNOWN] * count
        outs = [o for o in result.outs if isinstance(o, Geo)]
        self.pixels.update(p for o in outs for p in (o.x.step, o.y.step))
        if op not in PASS_THROUGH:
            self.steps.append(_Step(step_scope, node.name, op, outs[0] if outs else None, result.kernel,
                                    result.stride, result.formula, result.textbook))
        return result.outs + [None] * (count - len(result.outs))

    def geometry(self, node, ins, geos) -> _Result:
        """The outputs and table entries of a spatial op; raises _NotInterpreted."""
        op, geo = node.op, geos[0]
        if op in CONVOLUTIONS:
            return self.convolution(node, ins)
        if op == "Conv2DBackpropInput":
            return self.transposed(node, ins)
        if op == "Softmax" or op == "LogSoftmax":
            if geo.rank - 1 in geo.axes:
                raise _NotInterpreted("softmax along a spatial axis")
        if op in ELEMENTWISE:
            return _intersection(geos)
        if op == "ConcatV2":
            if _axis(ins[-1], geo.rank) in geo.axes:
                raise _NotInterpreted("concatenation along a spatial axis")
            return _intersection(geos)
        if op in ("Split", "SplitV"):
            axis = ins[0] if op == "Split" else ins[2]
            if _axis(axis, geo.rank) in geo.axes:
                raise _NotInterpreted("split along a spatial axis")
            return _Result([geo] * node.attr["num_split"].i)
        if op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            size = _ints(_known(ins[1], "output size"))
            mode = (op != "ResizeBilinear", node.attr["align_corners"].b, node.attr["half_pixel_centers"].b)
            return _spatial(geo, _resize_axis, (size[0],) + mode, (size[1],) + mode)
        if op in ("Pad", "PadV2", "MirrorPad"):
            pads = np.asarray(_known(ins[1], "paddings")).reshape(-1, 2)
            return _spatial(geo, _pad_axis, tuple(_ints(pads[geo.axes[0]])), tuple(_ints(pads[geo.axes[1]])))
        if op == "StridedSlice":
            return self.strided_slice(node, ins, geo)
        if op == "Slice":
            begin, size = _ints(_known(ins[1], "begin")), _ints(_known(ins[2], "size"))
            params = [(begin[a], None if size[a] < 0 else begin[a] + size[a], 1) for a in geo.axes]
            return _spatial(geo, _slice_axis, *params)
        if op in ("DepthToSpace", "SpaceToDepth"):
            b = node.attr["block_size"].i
            rule = _transposed_axis if op == "DepthToSpace" else _conv_axis
            return _spatial(geo, rule, (b, b, 1, "VALID"), (b, b, 1, "VALID"), (b, b), (b, b))
        if op in REDUCTIONS:
            axes = {a % geo.rank for a in _ints(_known(ins[1], "axes"))}
            if axes & set(geo.axes):
                raise _NotInterpreted("reduction over the spatial axes (global pooling): no pixel of a tile "
                                      "is exact")
            keep = node.attr["keep_dims"].b if "keep_dims" in node.attr else False
            return _Result([geo if keep else _drop_axes(geo, axes)])
        if op == "ExpandDims":
            at = int(np.asarray(_known(ins[1], "axis")).ravel()[0])
            at = at if at >= 0 else at + geo.rank + 1
            return _Result([replace(geo, axes=tuple(a + (a >= at) for a in geo.axes), rank=geo.rank + 1)])
        if op == "Squeeze":
            dims = {a % geo.rank for a in _attr_ints(node, "squeeze_dims")}
            if not dims or dims & set(geo.axes):
                raise _NotInterpreted("squeeze of unknown or spatial dimensions")
            return _Result([_drop_axes(geo, dims)])
        if op == "Transpose":
            perm = _ints(_known(ins[1], "permutation"))
            return _Result([replace(geo, axes=(perm.index(geo.axes[0]), perm.index(geo.axes[1])))])
        raise _NotInterpreted("op type not supported by the graph analysis")

    def convolution(self, node, ins) -> _Result:
        geo = ins[0]
        strides, dilations, padding, explicit = _conv_attrs(node, geo)
        if node.op in ("MaxPool", "AvgPool"):
            kernel = [_attr_ints(node, "ksize")[a] for a in geo.axes]
        else:
            kernel = list(_kernel_shape(ins[1]))
        params = [(kernel[i], strides[i], dilations[i], padding, explicit[i]) for i in (0, 1)]
        return _spatial(geo, _conv_axis, *params, (kernel[1], kernel[0]), (strides[1], strides[0]))

    def transposed(self, node, ins) -> _Result:
        geo = ins[2]
        strides, dilations, padding, explicit = _conv_attrs(node, geo)
        kernel = _kernel_shape(ins[1])
        sizes = _ints(ins[0]) if isinstance(ins[0], np.ndarray) else None  # input_sizes, when computable
        params = [(kernel[i], strides[i], dilations[i], padding, sizes[a] if sizes and sizes[a] > 0 else None,
                   explicit[i]) for i, a in enumerate(geo.axes)]
        return _spatial(geo, _transposed_axis, *params, (kernel[1], kernel[0]), (strides[1], strides[0]))

    def strided_slice(self, node, ins, geo) -> _Result:
        if node.attr["ellipsis_mask"].i or node.attr["new_axis_mask"].i:
            raise _NotInterpreted("ellipsis or new axis in a slice of a feature map")
        begin, end, strides = (_ints(_known(v, "slice bounds")) for v in ins[1:4])
        masks = {m: node.attr[m].i for m in ("begin_mask", "end_mask", "shrink_axis_mask")}
        params = []
        for a in geo.axes:
            if a >= len(begin):
                params.append((None, None, 1))
                continue
            if masks["shrink_axis_mask"] >> a & 1:
                raise _NotInterpreted("a slice that removes a spatial axis")
            params.append((None if masks["begin_mask"] >> a & 1 else begin[a],
                           None if masks["end_mask"] >> a & 1 else end[a], strides[a]))
        result = _spatial(geo, _slice_axis, *params)
        shrunk = {a for a in range(len(begin)) if masks["shrink_axis_mask"] >> a & 1}
        return replace(result, outs=[_drop_axes(result.outs[0], shrunk)])


def _conv_attrs(node, geo) -> tuple:
    """Strides, dilations, padding mode and explicit paddings along (y, x) of a convolution or pooling node."""
    if not isinstance(geo, Geo):
        raise _NotInterpreted("the kernel, not the image, is spatial")
    axes = (1, 2) if _attr_str(node, "data_format", "NHWC").startswith("NH") else (2, 3)
    if geo.axes != axes:
        raise _NotInterpreted("its data layout differs from the tensor's")
    strides, dilations = _attr_ints(node, "strides"), _attr_ints(node, "dilations", [1] * 4)
    explicit = np.asarray(_attr_ints(node, "explicit_paddings") or [0] * 8).reshape(-1, 2)
    return ([strides[a] for a in axes], [dilations[a] for a in axes], _attr_str(node, "padding"),
            [tuple(int(v) for v in explicit[a]) for a in axes])


def _kernel_shape(fact) -> tuple:
    """(height, width) of a filter tensor: a variable's or a constant's shape."""
    shape = fact.shape if isinstance(fact, (np.ndarray, Static)) else None
    if shape is None:
        raise _NotInterpreted("unknown kernel size")
    return tuple(shape[:2])


def _intersection(geos: list) -> _Result:
    """Pixel-by-pixel combination: same sizes, valid where every operand is valid (the skip-sum rule)."""
    rank = max(g.rank for g in geos)
    aligned = [replace(g, axes=tuple(a + rank - g.rank for a in g.axes), rank=rank) for g in geos]
    ref = aligned[0]
    for other in aligned[1:]:
        if other.axes != ref.axes or other.size != ref.size or (other.x.step, other.y.step) != (ref.x.step,
                                                                                                 ref.y.step):
            raise _NotInterpreted(f"operands of different sizes {ref.size} and {other.size} (a broadcast "
                                  "pooled map?)")
    spans = []
    for axis in ("y", "x"):
        first = max(getattr(g, axis).first for g in aligned)
        end = min(getattr(g, axis).end for g in aligned)
        spans.append(replace(getattr(ref, axis), first=first, end=max(first, end)))
    out = replace(ref, y=spans[0], x=spans[1])
    return _Result([out], formula=" ∩ ".join(str(g.x.valid) for g in geos) + f" = {out.x.valid}"
                   if len(geos) > 1 else "")


def _drop_axes(geo: Geo, dropped: set) -> Geo:
    return replace(geo, axes=tuple(a - sum(d < a for d in dropped) for a in geo.axes), rank=geo.rank - len(dropped))


def _axis(value, rank) -> int:
    axis = int(np.asarray(_known(value, "axis")).ravel()[0])
    return axis % rank


def _known(value, what):
    if not isinstance(value, np.ndarray):
        raise _NotInterpreted(f"the {what} is computed at run time")
    return value


def _shape_value(fact):
    """The value of tf.shape(): batch 1 and the spatial sizes of a feature map (other dimensions -1)."""
    if isinstance(fact, Geo):
        shape = [1] + [-1] * (fact.rank - 1)
        shape[fact.axes[0]], shape[fact.axes[1]] = fact.y.size, fact.x.size
        return np.array(shape, np.int32)
    shape = fact.shape if isinstance(fact, (np.ndarray, Static)) else None
    return None if shape is None or None in shape else np.array(shape, np.int32)


def _value(node, ins):
    """The value of a small constant computation (shapes, sizes, slice bounds), or None."""
    op = node.op
    if op == "Const":
        return import_tensorflow().make_ndarray(node.attr["value"].tensor)
    if op == "Cast" and isinstance(ins[0], np.ndarray):
        return ins[0].astype(import_tensorflow().as_dtype(node.attr["DstT"].type).as_numpy_dtype)
    if op in PASS_THROUGH or op in ("ReadVariableOp", "Cast"):
        return ins[0] if ins else None
    if not ins or not all(isinstance(v, np.ndarray) for v in ins):
        return None
    if op in _ARITHMETIC:
        return _ARITHMETIC[op](*ins)
    if op == "Pack":
        return np.stack(ins, axis=node.attr["axis"].i)
    if op == "ConcatV2":
        return np.concatenate(ins[:-1], axis=int(ins[-1]))
    if op == "Reshape":
        return np.reshape(ins[0], _ints(ins[1]))
    if op == "StridedSlice" and not node.attr["ellipsis_mask"].i and not node.attr["new_axis_mask"].i:
        begin, end, strides = (_ints(v) for v in ins[1:4])
        index = []
        for a in range(len(begin)):
            if node.attr["shrink_axis_mask"].i >> a & 1:
                index.append(begin[a])
            else:
                index.append(slice(None if node.attr["begin_mask"].i >> a & 1 else begin[a],
                                   None if node.attr["end_mask"].i >> a & 1 else end[a], strides[a]))
        return np.asarray(ins[0][tuple(index)])
    return None


def _layer_rows(steps: list, inputs: list) -> tuple:
    """Group the walk's steps into layers by name scope (the model's own scope stripped), in graph order."""
    scoped = [s.scope for s in steps if s.scope]
    common = 0
    while scoped and all(len(sc) > common + 1 for sc in scoped) and len({sc[common] for sc in scoped}) == 1:
        common += 1
    names = [s.scope[common] if s.scope else s.name.split("/")[-1] for s in steps]
    if names and all(re.search(r"._\d+$", n) for n in names):  # Keras 3 exports add "_1" to every layer scope
        names = [re.sub(r"_\d+$", "", n) for n in names]
    groups = {}
    for name, step in zip(names, steps):
        groups.setdefault(name, []).append(step)
    rows = list(inputs)
    for name, group in groups.items():
        main = next((s for s in group if s.kernel), group[0])
        last = group[-1].out
        known = isinstance(last, Geo)
        operations = list(dict.fromkeys(s.op for s in group))
        formulas = list(dict.fromkeys(s.formula for s in group if s.formula))
        rows.append(Layer(name, " + ".join(operations), main.kernel, main.stride, last.size if known else None,
                          last.window if known else None, "; ".join(formulas)))
    return tuple(rows)


def _textbook_notes(steps: list) -> list:
    """Where a textbook formula and the exact index propagation give different valid sizes."""
    notes = []
    for step in steps:
        if step.textbook and isinstance(step.out, Geo) and step.textbook != (step.out.x.valid, step.out.y.valid):
            notes.append(f"{step.name} ({step.op}): the textbook formula gives {_px(step.textbook)} valid pixels, "
                         f"the exact index propagation {_px((step.out.x.valid, step.out.y.valid))} (window "
                         f"{_span_text(step.out.window)} of {_px(step.out.size)}).")
    return notes


def read_theory(function, sizes: dict, steps: dict | None = None) -> Theory:
    """The valid-size table and output windows of a loaded signature function for inputs of `sizes`.

    sizes: {placeholder: (w, h)} in each input's pixels; steps: {placeholder: (x, y)} pixel sizes in source-1
    pixels (default 1). Ops that cannot be interpreted are listed in `issues`; their outputs are unknown.
    """
    graph_def = function.graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    _, kwargs = function.structured_input_signature
    keys = sorted(kwargs)
    seeds, inputs = {}, []
    for key, tensor in zip(keys, function.inputs):
        w, h = sizes[key]
        sx, sy = (Fraction(v) for v in (steps or {}).get(key, (1, 1)))
        rank = kwargs[key].shape.rank or 4  # [N, H, W, C] (or [H, W, C])
        seeds[tensor.op.name] = Geo(Span(h, 0, h, sy), Span(w, 0, w, sx), (rank - 3, rank - 2), rank)
        inputs.append(Layer(key, "Input", None, None, (w, h), ((0, w), (0, h))))
    variables = {id(v.handle): v for v in function.variables}
    for external, internal in function.graph.captures:
        if id(external) in variables:
            seeds[internal.op.name] = Static(tuple(variables[id(external)].shape.as_list()))
        elif hasattr(external, "numpy"):
            try:
                seeds[internal.op.name] = np.asarray(external.numpy())
            except Exception:  # a resource that is not a variable: nothing to know
                pass
    walker = _Walker(library, seeds)
    walker.pixels.update(Fraction(v) for s in (steps or {}).values() for v in s)
    try:
        resolve = walker.walk(graph_def.node, {}, (), False)
        names = sorted(function.structured_outputs)  # TensorFlow flattens a dict in key order
        outputs = {n: resolve(t.name) for n, t in zip(names, function.outputs)}
    except (_NotInterpreted, RecursionError) as exc:
        walker.issues.append(f"graph ({exc})")
        outputs = {}
    outputs = {n: f if isinstance(f, Geo) else None for n, f in outputs.items()}
    stride = 1
    for pixel in walker.pixels or {Fraction(1)}:
        stride = stride * pixel.numerator // gcd(stride, pixel.numerator)
    return Theory(_layer_rows(walker.steps, inputs), outputs, tuple(dict.fromkeys(walker.issues)),
                  tuple(_textbook_notes(walker.steps)), stride)


# ---------------------------------------------------------------------------------------------------------------
# theory + measurement
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelAnalysis:
    """Receptive field and valid part of one output: the graph's table and windows, and the measurement.

    sizes: (w, h) per source in its own pixels; steps: (x, y) pixel size per source in source-1 pixels;
    probe: the measured valid window of `output_name` (the raw output) for tiles of those sizes.
    """

    model_dir: str
    output_name: str
    placeholders: tuple
    sizes: tuple
    steps: tuple
    theory: Theory | None
    probe: ProbeResult
    crops: dict                     # {crop: output name}, 0 = the analysed output itself
    data: str                       # what the measurement ran on
    notes: tuple = field(default_factory=tuple)

    @property
    def rfield(self) -> int:
        """Receptive field of source 1 (its pixels): the given size."""
        return self.sizes[0][0]

    @property
    def output_size(self) -> tuple:
        """(w, h) of the analysed output for one receptive-field tile (output pixels)."""
        return self.probe.tile_output

    @property
    def measured_window(self) -> tuple:
        """Exact output pixels measured: ((x_first, x_end), (y_first, y_end))."""
        return self.probe.valid_window

    @property
    def theory_window(self) -> tuple | None:
        """Exact output pixels by the graph, or None when it could not be followed."""
        geo = self.theory.outputs.get(self.output_name) if self.theory else None
        return geo.window if geo else None

    @property
    def theory_lost(self) -> tuple | None:
        """Pixels the graph says a tile border pollutes: (left, top, right, bottom)."""
        window = self.theory_window
        if window is None:
            return None
        (x0, x1), (y0, y1) = window
        w, h = self.theory.outputs[self.output_name].size
        return (x0, y0, w - x1, h - y1) if x1 > x0 and y1 > y0 else (w, h, w, h)

    @property
    def exact_crop(self) -> int:
        """Smallest symmetric crop (output pixels a side) keeping only exact pixels: the larger of both answers."""
        return max(self.probe.exact_crop, max(self.theory_lost or (0,)))

    @property
    def total_stride(self) -> int:
        """Measured total stride (source-1 pixels): tile origins must be multiples of it."""
        return max(self.probe.stride)

    @property
    def output_pixel(self) -> Fraction:
        """An output pixel in source-1 pixels."""
        return Fraction(self.rfield, self.output_size[0])

    def on_stride_lattice(self, crop: int) -> bool:
        """Whether efield = output size - 2 crop keeps OTBTF's tiles on the total-stride lattice."""
        return (2 * crop * self.output_pixel) % self.total_stride == 0

    def recommended_crop(self, available=None) -> int:
        """Smallest exact crop among `available` (default: the model's `_cropN` outputs) that leaves an
        expression field on the stride lattice; else the exact crop rounded up to the lattice (the engine then
        crops the raw output itself)."""
        return recommended_crop(self.crops if available is None else available, self.exact_crop,
                                self.total_stride, min(self.output_size), self.output_pixel)

    @property
    def recommended_output(self) -> str:
        """The `_cropN` output to serve, or the analysed output when none is exact."""
        crop = self.recommended_crop()
        return self.crops.get(crop, self.output_name) if crop else self.output_name

    @property
    def efield(self) -> int:
        """Expression field (output pixels) for the recommended crop: output size - 2 x crop (0: none fits)."""
        return max(0, self.output_size[0] - 2 * self.recommended_crop())

    @property
    def disagreements(self) -> tuple:
        """Where the textbook, the graph and the measurement differ, in sentences."""
        out = []
        lost, size = self.probe.lost, self.output_size[0]
        theory_lost = self.theory_lost
        if self.theory is not None and theory_lost is None:
            out.append(f"The graph analysis could not follow {self.output_name} back to the inputs (see the ops "
                       "not interpreted): the measurement alone sets the crop.")
        elif theory_lost is not None and tuple(theory_lost) != tuple(lost):
            why = ("the measurement found fewer polluted pixels: the weights or these data hide some of the "
                   "border's influence, so the graph's larger crop is used"
                   if all(t >= m for t, m in zip(theory_lost, lost)) else
                   "the measurement found more polluted pixels than the graph explains: an op is read wrongly")
            out.append(f"The graph says {self.output_name} loses {tuple(theory_lost)} px (left, top, right, "
                       f"bottom) of a tile, the measurement {tuple(lost)}: {why}.")
        if self.theory is not None and self.theory.stride and self.theory.stride != self.total_stride:
            out.append(f"The graph's total stride is {self.theory.stride} px, the measured one "
                       f"{self.total_stride} px.")
        valid = size - lost[0] - lost[2]
        half = (size - valid) / 2
        if lost[0] != lost[2] or lost[1] != lost[3]:
            (x0, x1), _ = self.measured_window
            out.append(f"The textbook crop (x − valid)/2 = ({size} − {valid})/2 = {half:g} assumes a centred valid "
                       f"part, but the window is [{x0}, {x1 - 1}] (asymmetric): a symmetric crop must be ≥ "
                       f"{self.exact_crop}" + (f", so {ceil(half)} is not enough." if ceil(half) < self.exact_crop
                                              else "."))
        return tuple(out) + (self.theory.notes if self.theory else ())

    def html(self) -> str:
        """The report: recommendation, measured window, the valid-size table, disagreements, formulas."""
        return report_html(self)


def _sizes_list(sizes, placeholders) -> list:
    if isinstance(sizes, dict):
        sizes = [sizes.get(p) for p in placeholders]
    out = []
    for size in sizes:
        if not size:
            out.append(None)
        elif isinstance(size, (int, np.integer)):
            out.append((int(size), int(size)))
        else:
            out.append((int(size[0]), int(size[1])))
    return out


def _setup(signature, sizes, rasters) -> tuple:
    """Per model input: sizes (w, h), pixel steps (x, y) in lattice units, and the lattice (rasters only),
    the rasters and notes, from the given sizes and optional rasters."""
    placeholders = signature.input_names
    count = len(placeholders)
    sizes = _sizes_list(sizes, placeholders)
    rasters = list(rasters or [])
    notes = []
    for index in range(count, max(len(sizes), len(rasters))):
        if index < len(rasters) and rasters[index]:
            raise EngineError(f"Source {index + 1} is given but the model has only {count} input(s): "
                              f"{', '.join(placeholders)}.", f"SOURCE{index + 1}")
        if index < len(sizes) and sizes[index]:
            notes.append(f"Source {index + 1}'s size is ignored: the model has only {count} input(s).")
    sizes = (sizes + [None] * count)[:count]
    rasters = (rasters + [None] * count)[:count]
    if any(rasters) and not all(rasters):
        missing = rasters.index(None) + 1
        raise EngineError(f"Give a raster for every model input or for none (source {missing} has none).",
                          f"SOURCE{missing}")
    if sizes[0] is None:
        raise EngineError("Give source 1's size (its receptive field, in its pixels).", "SOURCE1_SIZE")
    lattice = None
    if all(rasters):
        infos = [raster_info(p, f"source {i + 1}", f"SOURCE{i + 1}") for i, p in enumerate(rasters)]
        lattice = build_lattice([i.grid for i in infos])
        steps = [(ax.step, ay.step) for ax, ay in zip(lattice.sources_x, lattice.sources_y)]
    else:
        missing = [i + 1 for i, s in enumerate(sizes) if s is None]
        if missing:
            raise EngineError(f"The model has {count} inputs ({', '.join(placeholders)}): give source "
                              f"{missing[0]}'s size.", f"SOURCE{missing[0]}_SIZE")
        steps = []
        for axis in (0, 1):
            ground = 1
            for size in sizes:
                ground = ground * size[axis] // gcd(ground, size[axis])
            steps.append([ground // s[axis] for s in sizes])
        steps = list(zip(*steps))
    for index in range(count):
        if sizes[index] is None:
            sizes[index] = tuple(sizes[0][a] * steps[0][a] // steps[index][a] for a in (0, 1))
        if any(sizes[index][a] * steps[index][a] != sizes[0][a] * steps[0][a] for a in (0, 1)):
            raise EngineError(f"Source {index + 1}'s size {sizes[index][0]} does not cover the ground of source "
                              f"1's {sizes[0][0]} px with pixels {steps[index][0] / steps[0][0]:g} times source "
                              f"1's.", f"SOURCE{index + 1}_SIZE")
    return sizes, steps, lattice, rasters, notes


def _random_sources(signature, sizes, steps, scale) -> list:
    """ProbeSources cutting windows of one fixed random virtual image per source (variant 1: another one)."""
    probes = []
    for index, name in enumerate(signature.input_names):
        bands = signature.input(name).channels or 1
        cache = {}

        def make_input(width, height, variant, index=index, bands=bands, cache=cache):
            if (width, height, variant) not in cache:
                rng = np.random.default_rng((index, variant, int(scale[0])))
                cache[(width, height, variant)] = rng.normal(scale[0], scale[1], (height, width, bands)).astype(
                    np.float32)
            return cache[(width, height, variant)]

        probes.append(ProbeSource(name, steps[index][0], steps[index][1], sizes[index], make_input))
    return probes


def _measure(model, name, probe_sets, tolerance) -> ProbeResult:
    """Probe `name` with each set of sources; keep the largest loss and stride (see DATA_SCALES)."""
    results = []
    for sources in probe_sets:
        ref = sources[0]
        feeds = {s.placeholder: s.make_input(s.rfield[0], s.rfield[1], 0)[np.newaxis] for s in sources}
        try:
            out = model.run(feeds, [name])[name]
        except EngineError as exc:
            raise EngineError(f"{exc} (sizes: " + ", ".join(f"{s.placeholder} {s.rfield[0]}x{s.rfield[1]}"
                                                              for s in sources) + ")", "SOURCE1_SIZE") from exc
        tile = (ref.rfield[0] * ref.step_x, ref.rfield[1] * ref.step_y)
        out_h, out_w = out.shape[1:3]
        if out_w < 1 or out_h < 1 or tile[0] % out_w or tile[1] % out_h:
            raise EngineError(f"Output {name} is {out_w}x{out_h} px for a {ref.rfield[0]}x{ref.rfield[1]} px "
                              "tile of source 1: not a whole ratio; it cannot be measured.", "OUTPUT_NAME_BASE")
        run = lambda feeds: model.run(feeds, [name])  # noqa: E731
        results.append(probe_model(run, sources, (tile[0] // out_w, tile[1] // out_h), name, tolerance))
    first = results[0]
    return replace(first, lost=tuple(max(v) for v in zip(*(r.lost for r in results))),
                   stride=tuple(max(v) for v in zip(*(r.stride for r in results))))


def analyse_model(model_dir: str, sizes, rasters=None, output_name: str | None = None,
                  tolerance: float = 1e-5) -> ModelAnalysis:
    """Theory and measurement of `output_name` (default: the first output that is not a `_cropN`).

    sizes: per source (the model's inputs in alphabetical order, as OTBTF) an int or (w, h) in its own pixels,
    or {placeholder: size}; a source's size may be None/0 when rasters are given (same ground as source 1).
    rasters: optional path per source; their pixel-size ratios and data are then used.
    """
    signature = read_signature(model_dir)
    wanted = output_name or signature.base_outputs()[0]
    if signature.output(wanted) is None:
        raise EngineError(f"Output {wanted!r} is not in the model's signature; its outputs are: "
                          f"{', '.join(signature.output_names)}.", "OUTPUT_NAME_BASE")
    base = split_crop(wanted)[0]
    base = base if signature.output(base) is not None else wanted
    sizes, steps, lattice, rasters, notes = _setup(signature, sizes, rasters)
    placeholders = signature.input_names
    model = SavedModel.load(model_dir)
    ratios = {p: tuple(Fraction(s[a], steps[0][a]) for a in (0, 1)) for p, s in zip(placeholders, steps)}
    try:
        theory = read_theory(model.function, dict(zip(placeholders, sizes)), ratios)
    except Exception as exc:  # never let the theory stop the measurement
        theory = Theory((), {}, (f"graph ({exc.__class__.__name__}: {exc})",), (), None)
    if lattice is not None:
        sources = [Source((p,), s, n) for p, s, n in zip(rasters, sizes, placeholders)]
        probe_sets = [_probe_sources(sources, placeholders, lattice, sizes)]
        data = "the rasters (around their centres, mirror padded)"
    else:
        probe_sets = [_random_sources(signature, sizes, steps, scale) for scale in DATA_SCALES]
        data = "random normal noise, " + " and ".join(f"mean {m:g} std {s:g}" for m, s in DATA_SCALES)
    probe = _measure(model, base, probe_sets, tolerance)
    crops = signature.crops_of(base)
    return ModelAnalysis(model_dir, base, tuple(placeholders), tuple(sizes), tuple(ratios.values()), theory, probe,
                         crops, data, tuple(notes))


# ---------------------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------------------
def _px(value) -> str:
    if value is None:
        return "?"
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def _span_text(window) -> str:
    if window is None:
        return "?"
    (x0, x1), (y0, y1) = window
    if x1 <= x0 or y1 <= y0:
        return "none"
    return f"[{x0}, {x1 - 1}]" if (x0, x1) == (y0, y1) else f"x [{x0}, {x1 - 1}], y [{y0}, {y1 - 1}]"


def _table(rows, header=None) -> str:
    cells = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table border='1' cellspacing='0' cellpadding='3'>{cells}{body}</table>"


FORMULAS = """
<ul>
<li>Convolution and pooling, kernel k (dilated: (k − 1)·d + 1), stride s, on x valid pixels:
 <b>⌊(x − k)/s⌋ + 1</b> valid pixels.</li>
<li>Transposed convolution, TF "same": <b>s·x + s − k</b>. otbtf's tutorial writes x·s − k + 2, which is exact
 only for s = 2.</li>
<li>Element-wise ops on several maps (skip sums, concatenation): the valid window is the <b>intersection</b> of
 the operands' windows, not only the smaller length.</li>
<li>Cropping (<code>&lt;name&gt;_cropN</code>, slices): the window shifts by the crop; padding adds pixels that
 are not exact; a resize maps each output pixel to the input pixels it interpolates.</li>
<li>The valid window itself comes from each op's exact index map: an output pixel is exact when every input
 pixel it reads is exact. TF "same" padding puts the odd padding pixel after the data, hence windows that are
 not centred.</li>
<li>Recommended: receptive field rf = source 1's size, crop c = the smallest <code>_cropN</code> output ≥ the
 exact crop whose expression field <b>efield = rf − 2c</b> keeps tiles on the total-stride lattice.</li>
</ul>
"""


def report_html(analysis: ModelAnalysis) -> str:
    """An HTML page for QGIS's Results Viewer (or a browser)."""
    a = analysis
    crop, lost = a.recommended_crop(), a.probe.lost
    sources = ", ".join(f"{p} {_px(s)} px (pixel = {st[0]} source-1 px)"
                        for p, s, st in zip(a.placeholders, a.sizes, a.steps))
    recommendation = [("Receptive field (source 1, rf)", f"{a.rfield} px"),
                      ("Output to serve", a.recommended_output),
                      ("Crop (output pixels a side)", crop if crop in a.crops else f"{crop} (engine crop of "
                                                                                   f"{a.output_name})"),
                      ("Expression field (efield = rf − 2 × crop)", f"{a.efield} px"),
                      ("Total stride (tile origins on multiples of it)", f"{a.total_stride} px")]
    measured = [("Output size for one tile", _px(a.output_size)),
                ("Pixels lost (left, top, right, bottom)", ", ".join(map(str, lost))),
                ("Valid window", _span_text(a.measured_window)),
                ("Exact crop (smallest symmetric crop)", a.probe.exact_crop),
                ("Measured on", a.data)]
    parts = [f"<h2>Model analysis: receptive field and valid part</h2><p>Model <code>{html.escape(a.model_dir)}"
             f"</code>; sources {html.escape(sources)}; output analysed: <b>{html.escape(a.output_name)}</b>.</p>",
             "<h3>Recommendation</h3>", _table(recommendation)]
    if a.efield == 0:
        parts.append(f"<p><b>No exact valid part fits a {a.rfield} px receptive field</b>: raise source 1's size "
                     f"above {2 * crop * a.output_pixel} px.</p>")
    parts += ["<h3>Valid window, measured</h3>", _table(measured)]
    if a.theory is not None and a.theory.layers:
        rows = [(layer.name, layer.operation, _px(layer.kernel) if layer.kernel else "–",
                 _px(layer.stride) if layer.stride else "–", _px(layer.size), _px(layer.valid),
                 _span_text(layer.window), layer.formula) for layer in a.theory.layers]
        parts += ["<h3>Valid sizes, from the graph</h3>",
                  _table(rows, ("layer", "operation", "kernel", "stride", "output size", "valid output size",
                                "valid window", "formula (textbook)"))]
        outs = [(name, _px(geo.size), _px((geo.x.valid, geo.y.valid)), _span_text(geo.window),
                 "empty" if 0 in geo.size else "yes" if (geo.x.valid, geo.y.valid) == geo.size else "no")
                if geo else (name, "?", "?", "?", "?")
                for name, geo in sorted(a.theory.outputs.items(), key=lambda item: split_crop(item[0]))]
        parts += ["<h3>Outputs, from the graph</h3>",
                  _table(outs, ("output", "size", "valid size", "valid window", "exact"))]
    disagreements = a.disagreements
    if disagreements:
        parts += ["<h3>Theory and measurement</h3><ul>"] + [f"<li>{html.escape(d)}</li>" for d in disagreements]
        parts.append("</ul>")
    if a.theory is not None and a.theory.issues:
        parts += ["<h3>Not interpreted (the measurement stands alone there)</h3><ul>"]
        parts += [f"<li>{html.escape(i)}</li>" for i in a.theory.issues] + ["</ul>"]
    if a.notes:
        parts += ["<h3>Notes</h3><ul>"] + [f"<li>{html.escape(n)}</li>" for n in a.notes] + ["</ul>"]
    parts += ["<h3>Formulas</h3>", FORMULAS]
    return "<html><head><meta charset='utf-8'><title>Model analysis</title></head><body>" + "".join(parts) + \
        "</body></html>"
