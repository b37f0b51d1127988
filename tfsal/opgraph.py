"""A loaded SavedModel, TF Serving export or TF-Hub model as one graph, run by tensor names.

A loaded SavedModel has no Keras layers: its signature is a graph of TensorFlow ops calling
nested functions. `OpGraph` inlines those functions once into one flat GraphDef (Grappler's
function inlining, the first step of TensorFlow's own variable freezing) whose variables stay
placeholders, and every compiled function of the adapter imports that GraphDef into its own
trace (`run`):

- the images are fed at the input tensor: the signature's float image input, or, for a
  signature taking encoded image bytes, the decoded float image tensor inside the graph
  (`input_tensor`), where the graph is cut;
- the variable placeholders are mapped to the loaded object's variable handles: the weights
  are shared by every compiled function, never copied;
- any tensor can be returned by name (Grad-CAM, CAM, layer attributions), and so can the
  pre-softmax logits of a softmax head;
- a backward rule is applied the RectGrad authors' way: the import runs under
  `gradient_override_map(tfsal.overrides.gradient_overrides(rule))`, and the adapter
  differentiates with `tf.gradients`. The loaded object's own functions are never touched.

Names are TensorFlow tensor names ("scope/op:0"); a unique suffix of an op name
("conv5_block3_out/Relu") is accepted too.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import tensorflow as tf

from tfsal.errors import TfsalError
from tfsal.overrides import ACTIVATION_OPS, gradient_overrides

# Ops that pass their first input through unchanged (walked over to find a model's head).
_PASS_THROUGH = ("Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient")
_DECODE_OPS = ("DecodeJpeg", "DecodePng", "DecodeImage", "DecodeBmp", "DecodeGif",
               "DecodeAndCropJpeg", "DecodeWebP")
_POOLING_OPS = ("MaxPool", "MaxPoolV2", "AvgPool", "Mean", "Max")
_CUT = "tfsal_images"  # the placeholder that replaces the input tensor of a cut graph


class OpGraph:
    """The image -> scores graph of one signature of a loaded object (see the module docstring).

    Args:
        function: the signature's (or `__call__`'s) concrete function.
        output: the function graph's output tensor holding the scores.
        input_tensor: the name of the float image tensor to feed; None: the signature's image
            input, or for a tf.string input the first float (N, H, W, 3) tensor downstream of
            the image decoding.
        keep_alive: the loaded object, kept referenced (it owns the variables).
        where: the source, for messages.
    """

    def __init__(self, function, output, *, input_tensor=None, keep_alive=None, where=""):
        self.where = where
        self._keep_alive = keep_alive
        internal = function.graph.internal_captures
        arguments = [t for t in function.graph.inputs if all(t is not c for c in internal)]
        if len(arguments) != 1:
            raise TfsalError(f"expected a function with one image input, received "
                             f"{len(arguments)} inputs in {where}")
        graph_def = _inline(function)
        variables = {t.op.name: tf.raw_ops.VariableShape(input=handle).numpy() for t, handle
                     in zip(internal, function.captured_inputs) if handle.dtype == tf.resource}
        analysis = _imported(graph_def, variables)
        argument = analysis.get_tensor_by_name(arguments[0].name)
        self.input_name = self._input(analysis, argument, input_tensor)
        self.fed_at = self.input_name  # the name in the loaded graph, before any cut
        output_name = output.name
        head = _through(analysis.get_tensor_by_name(output_name))
        # A softmax or sigmoid at the end, as for Keras models; the adapter decides whether to
        # undo it (a sigmoid only on a single-unit binary head: the softmax of a multi-label
        # head's logits would not be its probabilities).
        self.head = head.op.type if head.op.type in ("Softmax", "Sigmoid") else None
        logits_name = head.op.inputs[0].name if self.head else output_name
        self._head_op = head.op.name if self.head else None
        graph_def, self.input_name = _cut(graph_def, self.input_name, output_name, analysis)
        nodes = {n.name for n in graph_def.node}
        self._graph_def = graph_def
        self._captures = {t.name: handle for t, handle in
                          zip(internal, function.captured_inputs) if t.op.name in nodes}
        self._graph = _imported(graph_def, variables)  # names, shapes and structure only
        self.output_name = output_name
        self.logits_name = logits_name
        image = self._graph.get_tensor_by_name(self.input_name)
        self.input_dtype = image.dtype
        self.input_shape = tuple(image.shape.as_list()) if image.shape.rank is not None \
            else None
        scores = self._graph.get_tensor_by_name(output_name)
        self.output_shape = tuple(scores.shape.as_list()) if scores.shape.rank is not None \
            else None
        self.num_classes = _static_last(scores)
        self._features = self._feature_tensors()
        self._readers: dict = {}  # tensor name -> compiled reader (`evaluate`)

    # ------------------------------------------------------------------ construction
    def _input(self, analysis, argument, input_tensor) -> str:
        """The name of the float image tensor fed with the preprocessed images."""
        downstream = _downstream_floats(argument)
        if input_tensor is not None:
            found = _find(analysis, input_tensor, downstream, "input_tensor")
            tensor = analysis.get_tensor_by_name(found)
            if not tensor.dtype.is_floating or tensor.shape.rank not in (None, 4):
                raise TfsalError(f"expected input_tensor a float (N, H, W, 3) tensor, received "
                                 f"{found} of type {tensor.dtype.name} and shape {tensor.shape}")
            return found
        if argument.dtype.is_floating:
            if argument.shape.rank not in (None, 4):
                raise TfsalError(f"expected an image input of rank 4 (N, H, W, 3), received "
                                 f"shape {argument.shape} in {self.where}")
            return argument.name
        if argument.dtype != tf.string:
            raise TfsalError(f"expected a float or tf.string (encoded images) input, received "
                             f"a {argument.dtype.name} input in {self.where}")
        decoded = _after_decoding(argument)
        images = [t for t in downstream if t.shape.rank == 4 and t.shape[-1] == 3
                  and (decoded is None or t.op in decoded)]
        if not images:
            candidates = [t.name for t in downstream]
            raise TfsalError(f"expected a decoded float (N, H, W, 3) image tensor in the bytes "
                             f"signature of {self.where}, found none; name the tensor to feed "
                             f"with input_tensor= (float tensors downstream of the input: "
                             f"{', '.join(candidates[:40]) or 'none'})")
        return images[0].name

    def _feature_tensors(self) -> list:
        """Rank-4 float tensors between the input and the output, in execution order."""
        graph = self._graph
        between = _descendants([graph.get_tensor_by_name(self.input_name).op]) & _ancestors(
            graph.get_tensor_by_name(self.output_name).op)
        return [op.outputs[0] for op in graph.get_operations()
                if op in between and op.type not in _PASS_THROUGH and op.outputs
                and op.outputs[0].dtype.is_floating and op.outputs[0].shape.rank == 4
                and op.type != "Placeholder"]

    # ------------------------------------------------------------------ names
    @property
    def paths(self) -> list[str]:
        """Names of the candidate feature tensors (rank 4), in execution order."""
        return [t.name for t in self._features]

    def resolve(self, name) -> str:
        """A tensor name from a tensor name, an op name, a unique op-name suffix or an index
        into `paths`."""
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            paths = self.paths
            if not -len(paths) <= name < len(paths):
                raise TfsalError(f"expected a tensor index in [{-len(paths)}, {len(paths)}), "
                                 f"received {name}")
            return paths[name]
        return _find(self._graph, name, self._features, "layer")

    def last_feature_map(self) -> str:
        """The last rank-4 tensor before the head that no pooling op made."""
        maps = [t.name for t in self._features if t.op.type not in _POOLING_OPS]
        if not maps:
            raise TfsalError(f"expected a graph with a convolutional (N, h, w, channels) "
                             f"feature map, found no rank-4 tensor in {self.where}")
        return maps[-1]

    def activation_paths(self) -> list[str]:
        """The rank-4 outputs of the activation ops a backward rule overrides."""
        return [t.name for t in self._features if t.op.type in ACTIVATION_OPS]

    def cam_head(self) -> tuple[str, np.ndarray]:
        """For CAM: the global average pool (its input is the feature map), and the head's
        kernel (channels, classes); the head is Mean over H and W, then MatMul (+ bias)."""
        logits = _through(self._graph.get_tensor_by_name(self.logits_name))
        matmul = logits.op
        if matmul.type in ("BiasAdd", "AddV2", "Add"):
            matmul = next((_through(t).op for t in matmul.inputs
                           if _through(t).op.type == "MatMul"), matmul)
        pooled = _through(matmul.inputs[0]).op if matmul.type == "MatMul" else None
        if pooled is None or pooled.type != "Mean" or matmul.get_attr("transpose_b") \
                or not _reduces_spatial(pooled):
            raise TfsalError(f"expected a global-average-pool + MatMul head for CAM, received "
                             f"a graph whose logits come from {logits.op.type} "
                             f"({logits.op.name}) in {self.where}; use grad_cam instead")
        return pooled.outputs[0].name, self.evaluate(matmul.inputs[1].name)

    def evaluate(self, name: str) -> np.ndarray:
        """The current value of a tensor that does not depend on the images (e.g. a kernel);
        its reader is built once per tensor."""
        if name not in self._readers:
            self._readers[name] = self._reader(name)
        return np.asarray(self._readers[name]())

    def _reader(self, name: str):
        node = name.rsplit(":", 1)[0]
        sub = _sub_graph(self._graph_def, node)
        present = {n.name for n in sub.node}
        captures = {k: v for k, v in self._captures.items() if k.rsplit(":", 1)[0] in present}
        if self.input_name.rsplit(":", 1)[0] in present:
            raise TfsalError(f"expected a tensor independent of the images, received {name}")

        def value():
            graph = tf.compat.v1.get_default_graph()
            feeds = {k: graph.capture(v) for k, v in captures.items()}
            return tf.graph_util.import_graph_def(sub, input_map=feeds, return_elements=[name],
                                                  name="tfsal_graph")[0]

        return tf.compat.v1.wrap_function(value, [])

    def contents(self) -> tuple[bytes, list]:
        """Everything the outputs depend on, for digests (`tfsal.fingerprint`): the serialized
        graph with the fed and read tensor names, and [(capture, value)] of the variables
        (and constants) it reads."""
        graph_def = tf.compat.v1.GraphDef()
        graph_def.CopyFrom(self._graph_def)
        for node in graph_def.node:  # debug names carry a per-load counter
            node.ClearField("experimental_debug_info")
        for function in graph_def.library.function:
            for node in function.node_def:
                node.ClearField("experimental_debug_info")
        structure = graph_def.SerializeToString(deterministic=True) + repr(
            (self.input_name, self.output_name, self.logits_name)).encode()
        nodes = {node.name: node for node in self._graph_def.node}
        dtypes = {}  # the capture placeholder -> the dtype its reads declare
        for node in nodes.values():
            if node.op == "ReadVariableOp" and node.input:
                source = nodes.get(node.input[0].split(":")[0])
                while source is not None and source.op == "Identity":  # reads through Identity
                    source = nodes.get(source.input[0].split(":")[0])
                if source is not None:
                    dtypes[source.name] = tf.dtypes.as_dtype(node.attr["dtype"].type)
        values = []
        for name, handle in sorted(self._captures.items()):
            dtype = dtypes.get(name.split(":")[0])
            if dtype is None:  # a captured constant, not a variable
                values.append((name, np.asarray(handle)))
            else:
                values.append((name, tf.raw_ops.ReadVariableOp(resource=handle,
                                                               dtype=dtype).numpy()))
        return structure, values

    # ------------------------------------------------------------------ execution
    def run(self, x, *, capture_outputs=(), capture_inputs=(), logits=False, rule=None,
            reference=None):
        """Inside a trace: import the graph fed with `x` (preprocessed images).

        Args:
            capture_outputs: tensor names to return.
            capture_inputs: tensor names whose op's first input to return.
            logits: return the pre-activation tensor of a softmax (sigmoid) head.
            rule: a `tfsal.overrides` rule applied to the backward pass (None: plain).
            reference: preprocessed reference images for rules that need them; they run as
                the second half of one batch (the registered gradients expect that).

        Returns:
            (scores tensor, dict name -> tensor; input captures under "name:input").
        """
        if logits and self.head is None:
            raise TfsalError("expected a graph whose head applies softmax or sigmoid, for "
                             "logit recovery; this one does not")
        if reference is not None and (capture_outputs or capture_inputs):
            raise TfsalError("expected no layer captures with a reference pass")
        graph = tf.compat.v1.get_default_graph()
        n = tf.shape(x)[0]  # the images' rows, ahead of any reference rows
        if reference is not None:
            x = tf.concat([x, reference], axis=0)
        feeds = {name: graph.capture(handle) for name, handle in self._captures.items()}
        feeds[self.input_name] = tf.cast(x, self.input_dtype)
        inputs = [self._graph.get_tensor_by_name(name).op.inputs[0].name
                  for name in capture_inputs]
        wanted = [self.logits_name if logits else self.output_name, *capture_outputs, *inputs]
        overrides = {} if rule is None else self._overrides(rule, logits)
        with graph.gradient_override_map(overrides):
            found = tf.graph_util.import_graph_def(self._graph_def, input_map=feeds,
                                                   return_elements=wanted, name="tfsal_graph")
        out = found[0] if reference is None else found[0][:n]
        captured = dict(zip(capture_outputs, found[1:]))
        captured.update({name + ":input": t for name, t in
                         zip(capture_inputs, found[1 + len(capture_outputs):])})
        return out, captured

    def _overrides(self, rule, logits: bool = False) -> dict[str, str]:
        # a head evaluated without its sigmoid leaves that Sigmoid off the differentiated path
        skipped = self._head_op if logits else None
        if not any(op.type in ACTIVATION_OPS and op.name != skipped
                   for op in self._graph.get_operations()):
            raise TfsalError(f"expected a graph with activations a backward rule can reach "
                             f"({', '.join(ACTIVATION_OPS)} ops); found none in {self.where}, "
                             f"so the rule would silently return the plain gradient")
        return gradient_overrides(rule)


# ---------------------------------------------------------------------------- graph helpers
def _inline(function) -> tf.compat.v1.GraphDef:
    """The function's graph with every nested function call inlined; variables stay
    placeholders (named as the function graph's captures)."""
    from tensorflow.python.framework import convert_to_constants  # no public inliner

    try:
        return convert_to_constants._run_inline_graph_optimization(
            function, lower_control_flow=False, aggressive_inlining=True)
    except Exception as exc:  # Grappler errors on graphs it cannot rewrite
        raise TfsalError(f"expected a graph TensorFlow can inline, received one that fails "
                         f"with {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc


def _imported(graph_def, variables: dict) -> tf.Graph:
    """The graph imported on its own, for its structure and static shapes. Variables are
    placeholders there, so each variable read becomes a placeholder of the variable's shape
    (`variables`: placeholder name -> shape): shapes then propagate as in the real import."""
    nodes = {n.name: n for n in graph_def.node}

    def variable(name: str):
        """The variable placeholder behind a resource input (through Identity ops)."""
        node = nodes.get(name.lstrip("^").split(":")[0])
        while node is not None and node.op == "Identity":
            node = nodes.get(node.input[0].split(":")[0])
        return node.name if node is not None and node.name in variables else None

    shaped = tf.compat.v1.GraphDef()
    shaped.CopyFrom(graph_def)
    for node in shaped.node:
        found = variable(node.input[0]) if node.op == "ReadVariableOp" and node.input else None
        if found is not None:
            dtype = node.attr["dtype"].type
            node.op = "Placeholder"
            node.ClearField("attr")
            del node.input[:]
            node.attr["dtype"].type = dtype
            node.attr["shape"].shape.CopyFrom(
                tf.TensorShape(variables[found]).as_proto())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(shaped, name="")
    return graph


def _cut(graph_def, input_name: str, output_name: str, analysis):
    """(graph, input name) of the graph fed at `input_name`: a placeholder replaces that tensor,
    and what only it needed (the decoding of a bytes signature) is dropped. A graph fed at its
    own placeholder is returned as it is."""
    tensor = analysis.get_tensor_by_name(input_name)
    if tensor.op.type == "Placeholder":
        return graph_def, input_name
    node, index = input_name.rsplit(":", 1)
    references = {input_name} | ({node} if index == "0" else set())
    cut = tf.compat.v1.GraphDef()
    cut.CopyFrom(graph_def)
    for n in cut.node:
        rewired = [_CUT if inp in references else inp for inp in n.input if inp != "^" + node]
        del n.input[:]
        n.input.extend(rewired)
    placeholder = cut.node.add(name=_CUT, op="Placeholder")
    placeholder.attr["dtype"].type = tensor.dtype.as_datatype_enum
    placeholder.attr["shape"].shape.CopyFrom(tensor.shape.as_proto())
    return _sub_graph(cut, output_name.rsplit(":", 1)[0]), _CUT + ":0"


def _sub_graph(graph_def, node: str) -> tf.compat.v1.GraphDef:
    """The nodes `node` needs (data and control inputs), with the function library."""
    nodes = {n.name: n for n in graph_def.node}
    needed, queue = {node}, deque([node])
    while queue:
        for inp in nodes[queue.popleft()].input:
            name = inp.lstrip("^").split(":")[0]
            if name not in needed:
                needed.add(name)
                queue.append(name)
    sub = tf.compat.v1.GraphDef()
    sub.versions.CopyFrom(graph_def.versions)
    sub.library.CopyFrom(graph_def.library)
    sub.node.extend(n for n in graph_def.node if n.name in needed)
    return sub


def _through(tensor):
    """The tensor behind pass-through ops (Identity and the like)."""
    while tensor.op.type in _PASS_THROUGH and tensor.op.inputs:
        tensor = tensor.op.inputs[0]
    return tensor


def _descendants(ops) -> set:
    seen, queue = set(ops), deque(ops)
    while queue:
        for out in queue.popleft().outputs:
            for consumer in out.consumers():
                if consumer not in seen:
                    seen.add(consumer)
                    queue.append(consumer)
    return seen


def _ancestors(op) -> set:
    seen, queue = {op}, deque([op])
    while queue:
        for inp in queue.popleft().inputs:
            if inp.op not in seen:
                seen.add(inp.op)
                queue.append(inp.op)
    return seen


def _downstream_floats(argument) -> list:
    """The float tensors computed from the input, in execution order."""
    reached = _descendants([argument.op])
    return [t for op in argument.graph.get_operations() if op in reached and op.type != "Const"
            for t in op.outputs if t.dtype.is_floating]


def _after_decoding(argument):
    """Ops downstream of an image-decoding op (None: no decode op in the outer graph, e.g.
    decoding inside a map_fn loop, whose outputs then count as decoded)."""
    decoders = [op for op in _descendants([argument.op]) if op.type in _DECODE_OPS]
    return _descendants(decoders) if decoders else None


def _reduces_spatial(mean) -> bool:
    try:
        axes = tf.get_static_value(mean.inputs[1])
    except (TypeError, ValueError):
        return False
    rank = mean.inputs[0].shape.rank
    return axes is not None and rank == 4 and sorted(int(a) % 4 for a in np.ravel(axes)) == [1, 2]


def _static_last(tensor) -> int | None:
    shape = tensor.shape
    return int(shape[-1]) if shape.rank == 2 and shape[-1] is not None else None


def _find(graph, name, candidates, option: str) -> str:
    """A tensor name of `graph` from a tensor name, an op name or a unique op-name suffix."""
    if not isinstance(name, str) or not name:
        raise TfsalError(f"expected {option} a tensor or op name, received {name!r}")
    if ":" not in name:
        name_op, index = name, "0"
    else:
        name_op, index = name.rsplit(":", 1)
    matches = [op for op in graph.get_operations()
               if op.name == name_op or op.name.endswith("/" + name_op)]
    exact = [op for op in matches if op.name == name_op]
    matches = exact or matches
    if len(matches) == 1 and index.isdigit() and int(index) < len(matches[0].outputs):
        return f"{matches[0].name}:{index}"
    listed = ", ".join(t.name for t in candidates[:60])
    more = f" (and {len(candidates) - 60} more)" if len(candidates) > 60 else ""
    problem = "is ambiguous" if len(matches) > 1 else "is not a tensor of the graph"
    raise TfsalError(f"expected {option} naming one tensor of the graph, received {name!r}, "
                     f"which {problem}; candidates: {listed or 'none'}{more}")
