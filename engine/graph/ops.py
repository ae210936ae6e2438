"""The rule of each TensorFlow op type: how it changes a feature map's geometry (a table, op type -> rule).

`RULES[op](node, ins, geo)` returns the op's outputs as a `Result` (engine.graph.index_maps) or raises
NotInterpreted with the reason. `fold(node, ins)` evaluates the small constant computations a graph does on
shapes (sizes, slice bounds) so that the spatial ops that take them can be read.
"""

from dataclasses import replace

import numpy as np

from ..dependencies import import_tensorflow
from .index_maps import (Geo, NotInterpreted, Result, Static, conv_axis, drop_axes, intersection, pad_axis, resize_axis,
                         slice_axis, spatial, transposed_axis)

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
ARITHMETIC = {"Mul": np.multiply, "Add": np.add, "AddV2": np.add, "Sub": np.subtract, "RealDiv": np.true_divide,
               "FloorDiv": np.floor_divide, "FloorMod": np.mod, "Maximum": np.maximum, "Minimum": np.minimum}


RULES = {}


def rule(*ops):
    """Register the decorated function as the rule of these op types."""
    def register(function):
        for op in ops:
            RULES[op] = function
        return function
    return register


@rule(*CONVOLUTIONS)
def convolution(node, ins, geo) -> Result:
    """Convolutions and pooling: kernel, stride, dilation and padding per axis."""
    strides, dilations, padding, explicit = conv_attrs(node, ins[0])
    if node.op in ("MaxPool", "AvgPool"):
        kernel = [attr_ints(node, "ksize")[a] for a in geo.axes]
    else:
        kernel = list(kernel_shape(ins[1]))
    params = [(kernel[i], strides[i], dilations[i], padding, explicit[i]) for i in (0, 1)]
    return spatial(ins[0], conv_axis, *params, (kernel[1], kernel[0]), (strides[1], strides[0]))


@rule("Conv2DBackpropInput")
def transposed(node, ins, geo) -> Result:
    """Transposed convolution: the output size comes from input_sizes when it is computable."""
    geo = ins[2]
    strides, dilations, padding, explicit = conv_attrs(node, geo)
    kernel = kernel_shape(ins[1])
    sizes = ints(ins[0]) if isinstance(ins[0], np.ndarray) else None
    params = [(kernel[i], strides[i], dilations[i], padding, sizes[a] if sizes and sizes[a] > 0 else None,
               explicit[i]) for i, a in enumerate(geo.axes)]
    return spatial(geo, transposed_axis, *params, (kernel[1], kernel[0]), (strides[1], strides[0]))


@rule(*ELEMENTWISE)
def elementwise(node, ins, geo) -> Result:
    """Pixel-by-pixel ops: the intersection of the operands' windows (softmax along channels only)."""
    if node.op in ("Softmax", "LogSoftmax") and geo.rank - 1 in geo.axes:
        raise NotInterpreted("softmax along a spatial axis")
    return intersection([f for f in ins if isinstance(f, Geo)])


@rule("ConcatV2")
def concatenation(node, ins, geo) -> Result:
    """Concatenation along channels: the intersection of the operands' windows."""
    if axis_of(ins[-1], geo.rank) in geo.axes:
        raise NotInterpreted("concatenation along a spatial axis")
    return intersection([f for f in ins if isinstance(f, Geo)])


@rule("Split", "SplitV")
def split(node, ins, geo) -> Result:
    """Split along channels: every part keeps the geometry."""
    if axis_of(ins[0] if node.op == "Split" else ins[2], geo.rank) in geo.axes:
        raise NotInterpreted("split along a spatial axis")
    return Result([geo] * node.attr["num_split"].i)


@rule("ResizeBilinear", "ResizeNearestNeighbor")
def resize(node, ins, geo) -> Result:
    """Resize: each output pixel reads the input pixels it interpolates."""
    size = ints(known(ins[1], "output size"))
    mode = (node.op != "ResizeBilinear", node.attr["align_corners"].b, node.attr["half_pixel_centers"].b)
    return spatial(geo, resize_axis, (size[0],) + mode, (size[1],) + mode)


@rule("Pad", "PadV2", "MirrorPad")
def pad(node, ins, geo) -> Result:
    """Padding adds pixels that are not exact."""
    pads = np.asarray(known(ins[1], "paddings")).reshape(-1, 2)
    return spatial(geo, pad_axis, tuple(ints(pads[geo.axes[0]])), tuple(ints(pads[geo.axes[1]])))


@rule("StridedSlice")
def strided_slice(node, ins, geo) -> Result:
    """A slice with begin/end masks and strides; shrunk axes are dropped."""
    if node.attr["ellipsis_mask"].i or node.attr["new_axis_mask"].i:
        raise NotInterpreted("ellipsis or new axis in a slice of a feature map")
    begin, end, strides = (ints(known(v, "slice bounds")) for v in ins[1:4])
    masks = {m: node.attr[m].i for m in ("begin_mask", "end_mask", "shrink_axis_mask")}
    params = []
    for a in geo.axes:
        if a >= len(begin):
            params.append((None, None, 1))
            continue
        if masks["shrink_axis_mask"] >> a & 1:
            raise NotInterpreted("a slice that removes a spatial axis")
        params.append((None if masks["begin_mask"] >> a & 1 else begin[a],
                       None if masks["end_mask"] >> a & 1 else end[a], strides[a]))
    result = spatial(geo, slice_axis, *params)
    shrunk = {a for a in range(len(begin)) if masks["shrink_axis_mask"] >> a & 1}
    return replace(result, outs=[drop_axes(result.outs[0], shrunk)])


@rule("Slice")
def plain_slice(node, ins, geo) -> Result:
    """A slice by begin and size."""
    begin, size = ints(known(ins[1], "begin")), ints(known(ins[2], "size"))
    params = [(begin[a], None if size[a] < 0 else begin[a] + size[a], 1) for a in geo.axes]
    return spatial(geo, slice_axis, *params)


@rule("DepthToSpace", "SpaceToDepth")
def depth_to_space(node, ins, geo) -> Result:
    """Pixel shuffles: a transposed or a plain convolution of the block size, without padding."""
    b = node.attr["block_size"].i
    axis_rule = transposed_axis if node.op == "DepthToSpace" else conv_axis
    return spatial(geo, axis_rule, (b, b, 1, "VALID"), (b, b, 1, "VALID"), (b, b), (b, b))


@rule(*REDUCTIONS)
def reduction(node, ins, geo) -> Result:
    """Reductions over channels keep the geometry; over the spatial axes no pixel is exact."""
    axes = {a % geo.rank for a in ints(known(ins[1], "axes"))}
    if axes & set(geo.axes):
        raise NotInterpreted("reduction over the spatial axes (global pooling): no pixel of a tile is exact")
    keep = node.attr["keep_dims"].b if "keep_dims" in node.attr else False
    return Result([geo if keep else drop_axes(geo, axes)])


@rule("ExpandDims")
def expand_dims(node, ins, geo) -> Result:
    """A new axis moves the spatial axes."""
    at = int(np.asarray(known(ins[1], "axis")).ravel()[0])
    at = at if at >= 0 else at + geo.rank + 1
    return Result([replace(geo, axes=tuple(a + (a >= at) for a in geo.axes), rank=geo.rank + 1)])


@rule("Squeeze")
def squeeze(node, ins, geo) -> Result:
    """Removing non-spatial axes moves the spatial ones."""
    dims = {a % geo.rank for a in attr_ints(node, "squeeze_dims")}
    if not dims or dims & set(geo.axes):
        raise NotInterpreted("squeeze of unknown or spatial dimensions")
    return Result([drop_axes(geo, dims)])


@rule("Transpose")
def transpose(node, ins, geo) -> Result:
    """A permutation moves the spatial axes."""
    perm = ints(known(ins[1], "permutation"))
    return Result([replace(geo, axes=(perm.index(geo.axes[0]), perm.index(geo.axes[1])))])


def geometry(node, ins, geos) -> Result:
    """The outputs of a spatial op by its rule; raises NotInterpreted for an op type without one."""
    op_rule = RULES.get(node.op)
    if op_rule is None:
        raise NotInterpreted("op type not supported by the graph analysis")
    return op_rule(node, ins, geos[0])


def conv_attrs(node, geo) -> tuple:
    """Strides, dilations, padding mode and explicit paddings along (y, x) of a convolution or pooling node."""
    if not isinstance(geo, Geo):
        raise NotInterpreted("the kernel, not the image, is spatial")
    axes = (1, 2) if attr_str(node, "data_format", "NHWC").startswith("NH") else (2, 3)
    if geo.axes != axes:
        raise NotInterpreted("its data layout differs from the tensor's")
    strides, dilations = attr_ints(node, "strides"), attr_ints(node, "dilations", [1] * 4)
    explicit = np.asarray(attr_ints(node, "explicit_paddings") or [0] * 8).reshape(-1, 2)
    return ([strides[a] for a in axes], [dilations[a] for a in axes], attr_str(node, "padding"),
            [tuple(int(v) for v in explicit[a]) for a in axes])


def kernel_shape(fact) -> tuple:
    """(height, width) of a filter tensor: a variable's or a constant's shape."""
    shape = fact.shape if isinstance(fact, (np.ndarray, Static)) else None
    if shape is None:
        raise NotInterpreted("unknown kernel size")
    return tuple(shape[:2])



def axis_of(value, rank) -> int:
    axis = int(np.asarray(known(value, "axis")).ravel()[0])
    return axis % rank


def known(value, what):
    if not isinstance(value, np.ndarray):
        raise NotInterpreted(f"the {what} is computed at run time")
    return value


def shape_value(fact):
    """The value of tf.shape(): batch 1 and the spatial sizes of a feature map (other dimensions -1)."""
    if isinstance(fact, Geo):
        shape = [1] + [-1] * (fact.rank - 1)
        shape[fact.axes[0]], shape[fact.axes[1]] = fact.y.size, fact.x.size
        return np.array(shape, np.int32)
    shape = fact.shape if isinstance(fact, (np.ndarray, Static)) else None
    return None if shape is None or None in shape else np.array(shape, np.int32)


def fold(node, ins):
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
    if op in ARITHMETIC:
        return ARITHMETIC[op](*ins)
    if op == "Pack":
        return np.stack(ins, axis=node.attr["axis"].i)
    if op == "ConcatV2":
        return np.concatenate(ins[:-1], axis=int(ins[-1]))
    if op == "Reshape":
        return np.reshape(ins[0], ints(ins[1]))
    if op == "StridedSlice" and not node.attr["ellipsis_mask"].i and not node.attr["new_axis_mask"].i:
        begin, end, strides = (ints(v) for v in ins[1:4])
        index = []
        for a in range(len(begin)):
            if node.attr["shrink_axis_mask"].i >> a & 1:
                index.append(begin[a])
            else:
                index.append(slice(None if node.attr["begin_mask"].i >> a & 1 else begin[a],
                                   None if node.attr["end_mask"].i >> a & 1 else end[a], strides[a]))
        return np.asarray(ins[0][tuple(index)])
    return None


def attr_ints(node, name, default=()):
    return list(node.attr[name].list.i) if name in node.attr else list(default)


def attr_str(node, name, default=""):
    return node.attr[name].s.decode() if name in node.attr else default


def ints(value) -> list:
    return [int(v) for v in np.atleast_1d(value)]
