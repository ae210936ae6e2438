"""The graph walk: the valid-size table and output windows of a SavedModel signature, read from its graph.

Walk the serving signature's graph, inside the functions it calls, and propagate per op the facts it needs: a
feature map's geometry (engine.graph.index_maps), the value of small constant computations, a weight's shape.
Each op's rule comes from engine.graph.ops. Ops that cannot be interpreted are named; their outputs become
unknown and the measurement (engine.analysis) stands alone there.
"""

import re
from dataclasses import dataclass
from fractions import Fraction
from math import lcm

import numpy as np

from ..records import Layer, Theory
from .index_maps import UNKNOWN, Geo, NotInterpreted, Span, Static
from .ops import CALLS, PASS_THROUGH, fold, geometry, shape_value


@dataclass(frozen=True)
class Step:
    scope: tuple
    name: str
    op: str
    out: object
    kernel: tuple | None = None
    stride: tuple | None = None
    formula: str = ""
    textbook: tuple | None = None


def output_args(node, library) -> list:
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


def topological(nodes) -> list:
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


class Walker:
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
            raise NotInterpreted("functions nested too deep")
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
            for arg, count in output_args(by_name[name], self.library):
                if arg == out:
                    break
                flat += count
            return facts.get((name, flat + int(index or 0)))

        for node in topological(nodes):
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
        count = sum(c for _, c in output_args(node, self.library))
        if op in CALLS or op in self.library:
            name = node.attr["f"].func.name if op in CALLS else op
            return self.call(name, ins, scope + tuple(node.name.split("/")[:-1]), depth)
        if op == "Placeholder":
            return [self.seeds.get(node.name)]
        geos = [f for f in ins if isinstance(f, Geo)]
        if op in ("Shape", "ShapeN") and not any(f is UNKNOWN for f in ins):
            return [shape_value(f) for f in ins] if op == "ShapeN" else [shape_value(ins[0])]
        if any(f is UNKNOWN for f in ins):
            return [UNKNOWN] * count
        if not geos:
            try:
                return [fold(node, ins)]
            except Exception:  # a value we do not need to know
                return [None]
        step_scope = scope + tuple(node.name.split("/")[:-1])
        try:
            result = geometry(node, ins, geos)
        except Exception as exc:  # never stop the walk: name the op, its outputs become unknown
            reason = str(exc) if isinstance(exc, NotInterpreted) else f"{exc.__class__.__name__}: {exc}"
            self.issues.append(f"{op} ({node.name}): {reason}")
            self.steps.append(Step(step_scope, node.name, op, UNKNOWN))
            return [UNKNOWN] * count
        outs = [o for o in result.outs if isinstance(o, Geo)]
        self.pixels.update(p for o in outs for p in (o.x.step, o.y.step))
        if op not in PASS_THROUGH:
            self.steps.append(Step(step_scope, node.name, op, outs[0] if outs else None, result.kernel,
                                    result.stride, result.formula, result.textbook))
        return result.outs + [None] * (count - len(result.outs))


def px(value) -> str:
    if value is None:
        return "?"
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def span_text(window) -> str:
    if window is None:
        return "?"
    (x0, x1), (y0, y1) = window
    if x1 <= x0 or y1 <= y0:
        return "none"
    return f"[{x0}, {x1 - 1}]" if (x0, x1) == (y0, y1) else f"x [{x0}, {x1 - 1}], y [{y0}, {y1 - 1}]"


def layer_rows(steps: list, inputs: list) -> tuple:
    """Group the walk's steps into layers by name scope, in graph order: the model's own scope stripped, nested
    models (Keras 3 Functional or Sequential sub-models) walked into ("backbone/conv_a"); an op directly in the
    model's scope is its own row."""
    deep = [s.scope for s in steps if len(s.scope) > 1]
    common = 0
    while deep and all(len(sc) > common + 1 for sc in deep) and len({sc[common] for sc in deep}) == 1:
        common += 1
    parts = [list(s.scope[common:]) if s.scope[:common] == (deep[0][:common] if deep else ()) else list(s.scope)
             for s in steps]
    scoped = [p for part in parts for p in part]
    if scoped and all(re.search(r"._\d+$", p) for p in scoped):  # Keras 3 exports add "_1" to every scope
        parts = [[re.sub(r"_\d+$", "", p) for p in part] for part in parts]
    names = ["/".join(part) or step.name.split("/")[-1] for part, step in zip(parts, steps)]
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


def textbook_notes(steps: list) -> list:
    """Where a textbook formula and the exact index propagation give different valid sizes."""
    notes = []
    for step in steps:
        if step.textbook and isinstance(step.out, Geo) and step.textbook != (step.out.x.valid, step.out.y.valid):
            notes.append(f"{step.name} ({step.op}): the textbook formula gives {px(step.textbook)} valid pixels, "
                         f"the exact index propagation {px((step.out.x.valid, step.out.y.valid))} (window "
                         f"{span_text(step.out.window)} of {px(step.out.size)}).")
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
            except Exception:  # nosec B110  # a resource that is not a variable: nothing to know
                pass
    walker = Walker(library, seeds)
    walker.pixels.update(Fraction(v) for s in (steps or {}).values() for v in s)
    try:
        resolve = walker.walk(graph_def.node, {}, (), False)
        names = sorted(function.structured_outputs)  # TensorFlow flattens a dict in key order
        outputs = {n: resolve(t.name) for n, t in zip(names, function.outputs)}
    except (NotInterpreted, RecursionError) as exc:
        walker.issues.append(f"graph ({exc})")
        outputs = {}
    outputs = {n: f if isinstance(f, Geo) else None for n, f in outputs.items()}
    stride = lcm(*(pixel.numerator for pixel in walker.pixels or {Fraction(1)}))
    return Theory(layer_rows(walker.steps, inputs), outputs, tuple(dict.fromkeys(walker.issues)),
                  tuple(textbook_notes(walker.steps)), stride)
