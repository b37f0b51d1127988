"""Which ops of a SavedModel touch files, the network or processes, found without loading it.

`tf.saved_model.load` runs a SavedModel's resource initialisers, and tfsal then runs one of its
signatures: a graph calling `tf.io.write_file`, `tf.io.read_file` or a `tf.py_function` writes,
reads or executes whatever its author chose. This module reads `saved_model.pb` (the loader's
own parser, `tf.__internal__.saved_model.parse_saved_model`: nothing is loaded or executed) and
lists the ops that can run and are not pure computations.

The rule (`forbidden`): an op type is forbidden if it is in `FORBIDDEN_OPS`, or its name
contains one of "File", "Reader", "Writer", "Summary", "Dataset", "PyFunc", "Debug",
"Checkpoint", "Collective", "Remote", "LMDB", "Sql" (`FORBIDDEN_PATTERN`: it also catches ops
of later TensorFlow versions), unless it is in `PURE_OPS` (pure ops whose names match the
pattern: string formatting of shard names, building Summary protos). Two ops are forbidden by an
attribute: `PrintV2` whose `output_stream` starts with "file://", and `DecodeProtoV2` /
`EncodeProto` whose `descriptor_source` is a file (not "local://" nor "bytes://..."). Dataset
ops are refused as a class: a file, cache, snapshot or tf.data service may hide behind any of
them, and an image classifier's scores need none.

What can run (`scan_meta_graph`): the functions of the object graph (signatures, restored
`tf.function`s, resource initialisers: everything TF2's loader can call), the nodes of the
signature outputs and of the collections, and every node of the top-level graph (TF1's loader
runs its init ops) except those that only the saver's save / restore nodes need
(`meta_graph.saver_def`); then, transitively, the nodes these need (data and control inputs) and
the library functions they call: a node whose op is a function's name, an attribute of type
func or list(func) (nested ones too), a string attribute naming a function (forward / backward
function names), the registered gradient of a `_gradient_op_type`, and a function's gradient
function (`library.gradient`). Every node of a reachable function counts.

Every SavedModel holds the standard save/restore functions (TF2: `__inference__traced_save_N`
and `__inference__traced_restore_N`; TF1: the "save/" scope), which call SaveV2, RestoreV2 and
MergeV2Checkpoints. TF2's loader restores variables with ops of its own and tfsal calls neither,
so what only the saver's nodes reach may use the checkpoint ops: RestoreV2, Restore and
RestoreSlice below the restore node (TF1's loader runs it), these and SaveV2, Save, SaveSlices
and MergeV2Checkpoints below the save node. Any other forbidden op there is still reported, and
a function named like the saver's but called from a signature is reachable like any other.

`scan_function` checks the graph of a loaded concrete function (with its function library), the
one tfsal is about to call.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import NamedTuple

TOP_LEVEL = "top-level graph"  # the `function` of a finding in the meta graph's own graph

FORBIDDEN_PATTERN = re.compile(
    r"File|Reader|Writer|Summary|Dataset|PyFunc|Debug|Checkpoint|Collective|Remote|LMDB|Sql")

# Named explicitly (checked against tf.raw_ops; the "_" ones are internal ops). Most also match
# FORBIDDEN_PATTERN; the list documents them and catches those that do not.
FORBIDDEN_OPS = frozenset({
    # files
    "ReadFile", "WriteFile", "MatchingFiles", "FileSystemSetConfiguration",
    "ImmutableConst",  # memory-maps a file
    "RecordInput",  # reads the records of files matching a pattern
    # checkpoints
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints", "LoadAndRemapMatrix", "GenerateVocabRemapping",
    # summaries and statistics written to event files or databases
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "SummaryWriter", "WriteSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
    "WriteGraphSummary", "WriteRawProtoSummary", "FlushSummaryWriter", "CloseSummaryWriter",
    "StatsAggregatorSetSummaryWriter",
    # readers
    "WholeFileReader", "WholeFileReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "TextLineReader", "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
    "IdentityReader", "IdentityReaderV2", "LMDBReader",
    # datasets reading or writing files, or talking to servers
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
    "SqlDataset", "ExperimentalSqlDataset", "LMDBDataset", "ExperimentalLMDBDataset",
    "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader",
    "SnapshotNestedDatasetReader", "SnapshotChunkDataset", "ListSnapshotChunksDataset",
    "SaveDataset", "SaveDatasetV2", "LoadDataset", "CacheDataset", "CacheDatasetV2",
    "MatchingFilesDataset", "ExperimentalMatchingFilesDataset", "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord", "DistributedSave", "DataServiceDataset",
    "DataServiceDatasetV2", "DataServiceDatasetV3", "DataServiceDatasetV4", "RegisterDataset",
    "RegisterDatasetV2", "DatasetFromGraph",
    # lookup tables initialised from files
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2",
    # arbitrary Python
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    # other devices and processes
    "RemoteCall", "Send", "Recv", "_Send", "_Recv", "_HostSend", "_HostRecv",
    "CollectiveInitializeCommunicator",
    # debugger ops (write to file:// or grpc:// debug URLs)
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2",
})

# Pure ops whose names match FORBIDDEN_PATTERN.
PURE_OPS = frozenset({
    "ShardedFilename", "ShardedFilespec",  # string formatting, in every saver
    "ScalarSummary", "HistogramSummary", "ImageSummary", "AudioSummary", "AudioSummaryV2",
    "TensorSummary", "TensorSummaryV2", "MergeSummary",  # build Summary protos, write nothing
    "BoostedTreesMakeStatsSummary", "BoostedTreesExampleDebugOutputs",
})

RESTORE_OPS = frozenset({"Restore", "RestoreV2", "RestoreSlice"})
SAVE_OPS = frozenset({"Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints"})


class Finding(NamedTuple):
    """A forbidden op that can run: its type, its node, and the function holding the node
    (`TOP_LEVEL` for the meta graph's own graph)."""

    op: str
    node: str
    function: str

    def __str__(self) -> str:
        where = "the top-level graph" if self.function == TOP_LEVEL \
            else f"function {self.function!r}"
        return f"{self.op} (node {self.node!r}, in {where})"


def forbidden(op: str, attr=None) -> bool:
    """Whether ops of type `op` (with attributes `attr`, a NodeDef's attr map) touch files, the
    network or processes (the rule of the module docstring)."""
    if op in PURE_OPS:
        return False
    if op in FORBIDDEN_OPS or FORBIDDEN_PATTERN.search(op):
        return True
    if op == "PrintV2":
        return _string(attr, "output_stream", "stderr").startswith("file://")
    if op in ("DecodeProtoV2", "EncodeProto"):
        source = _string(attr, "descriptor_source", "local://")
        return not (source == "local://" or source.startswith("bytes://"))
    return False


def scan_saved_model(directory) -> list[Finding]:
    """The forbidden ops that can run in the SavedModel at `directory` (every meta graph).

    Raises:
        OSError: for a directory without a readable saved_model.pb / .pbtxt.
    """
    import tensorflow as tf

    proto = tf.__internal__.saved_model.parse_saved_model(str(Path(directory)))
    found: set[Finding] = set()
    for meta_graph in proto.meta_graphs:
        found.update(scan_meta_graph(meta_graph))
    return sorted(found)


def scan_meta_graph(meta_graph) -> list[Finding]:
    """The forbidden ops that can run in one MetaGraphDef (see the module docstring)."""
    graph = meta_graph.graph_def
    nodes = {n.name: n for n in graph.node}
    library = _Library(graph.library)
    saver = meta_graph.saver_def
    restore = _ancestors(nodes, [_node_name(saver.restore_op_name)])
    save = _ancestors(nodes, [_node_name(saver.save_tensor_name)])
    roots = [name for name in nodes if name not in restore and name not in save]
    for signature in meta_graph.signature_def.values():
        roots += [_node_name(t.name) for t in signature.outputs.values()]
    for collection in meta_graph.collection_def.values():
        roots += [_node_name(name) for name in collection.node_list.value]
    general = _ancestors(nodes, roots)
    restore -= general
    save -= general | restore

    object_functions = set(meta_graph.object_graph_def.concrete_functions)
    for obj in meta_graph.object_graph_def.nodes:
        kind = obj.WhichOneof("kind")
        if kind == "function":
            object_functions.update(obj.function.concrete_functions)
        elif kind == "bare_concrete_function":
            object_functions.add(obj.bare_concrete_function.concrete_function_name)

    found: set[Finding] = set()
    reached: set[str] = set()
    for region, entry, allowed in ((general, object_functions, frozenset()),
                                   (restore, (), RESTORE_OPS),
                                   (save, (), RESTORE_OPS | SAVE_OPS)):
        top = [nodes[name] for name in region]
        found.update(_findings(top, TOP_LEVEL, allowed))
        start = set(entry).union(*(library.callees(n) for n in top))
        functions = library.reach(start, reached)
        reached |= functions
        for name in functions:
            found.update(_findings(library.functions[name].node_def, name, allowed))
    return sorted(found)


def scan_graph_def(graph_def) -> list[Finding]:
    """The forbidden ops of a GraphDef all of whose nodes may run, and of the library
    functions they call."""
    library = _Library(graph_def.library)
    found = set(_findings(graph_def.node, TOP_LEVEL, frozenset()))
    start = set().union(*(library.callees(n) for n in graph_def.node))
    for name in library.reach(start, set()):
        found.update(_findings(library.functions[name].node_def, name, frozenset()))
    return sorted(found)


def scan_function(function) -> list[Finding]:
    """The forbidden ops of a (loaded) concrete function's graph and the functions it calls."""
    return scan_graph_def(function.graph.as_graph_def())


def describe(findings, limit: int = 8) -> str:
    """The findings as "WriteFile (node 'x', in function 'f'), ..." (at most `limit`)."""
    findings = list(findings)
    text = ", ".join(str(f) for f in findings[:limit])
    if len(findings) > limit:
        text += f" and {len(findings) - limit} more"
    return text


# ---------------------------------------------------------------------------- helpers
class _Library:
    """A FunctionDefLibrary's functions and the calls between them."""

    def __init__(self, library):
        self.functions = {f.signature.name: f for f in library.function}
        self.gradients: dict[str, set[str]] = {}  # function -> its gradient functions
        for gradient in library.gradient:
            self.gradients.setdefault(gradient.function_name, set()).add(gradient.gradient_func)
        self.registered = {g.registered_op_type: g.gradient_func
                           for g in library.registered_gradients if g.registered_op_type}

    def callees(self, node) -> set[str]:
        """The library functions a NodeDef calls, or may call when differentiated."""
        called = set()
        if node.op in self.functions:
            called.add(node.op)
        if "_gradient_op_type" in node.attr:
            op_type = node.attr["_gradient_op_type"].s.decode(errors="replace")
            gradient = self.registered.get(op_type)
            if gradient:
                called.add(gradient)
        self._attr_callees(node.attr, called)
        return called

    def _attr_callees(self, attr, called: set) -> None:
        for value in attr.values():
            kind = value.WhichOneof("value")
            if kind == "func":
                self._named(value.func, called)
            elif kind == "s":
                self._string(value.s, called)
            elif kind == "list":
                for func in value.list.func:
                    self._named(func, called)
                for s in value.list.s:
                    self._string(s, called)

    def _named(self, func, called: set) -> None:
        called.add(func.name)
        self._attr_callees(func.attr, called)

    def _string(self, s: bytes, called: set) -> None:
        name = s.decode(errors="replace")
        if name in self.functions:
            called.add(name)

    def reach(self, start, skip: set) -> set[str]:
        """The library functions reachable from `start` without entering those in `skip`."""
        seen: set[str] = set()
        queue = deque(name for name in start if name in self.functions and name not in skip)
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            function = self.functions[name]
            called = set(self.gradients.get(name, ()))
            self._attr_callees(function.attr, called)
            for node in function.node_def:
                called |= self.callees(node)
            queue.extend(c for c in called
                         if c in self.functions and c not in seen and c not in skip)
        return seen


def _findings(nodes, function: str, allowed: frozenset):
    for node in nodes:
        if node.op not in allowed and forbidden(node.op, node.attr):
            yield Finding(node.op, node.name, function)


def _ancestors(nodes: dict, starts) -> set[str]:
    """The names of the top-level nodes `starts` and every node they need."""
    seen: set[str] = set()
    queue = deque(name for name in starts if name in nodes)
    while queue:
        name = queue.popleft()
        if name in seen:
            continue
        seen.add(name)
        for inp in nodes[name].input:
            parent = _node_name(inp)
            if parent in nodes and parent not in seen:
                queue.append(parent)
    return seen


def _node_name(tensor: str) -> str:
    """"^node", "node:1" and "node" -> "node"."""
    return tensor.lstrip("^").split(":")[0]


def _string(attr, key: str, default: str) -> str:
    if attr is None or key not in attr:
        return default
    return attr[key].s.decode(errors="replace")
