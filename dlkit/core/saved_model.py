"""A SavedModel is a program: its graph is scanned before TensorFlow loads or runs any of it.

`tf.saved_model.load` runs a model's restore and initialisation functions, and calling a
signature runs whatever ops its graph holds: a `tf.io.write_file` hidden in a downloaded model
folder would write files as the user. So every SavedModel dlkit opens (`load`, and `scan` before
the LiteRT converter reads one) goes through `scan` first, which parses `saved_model.pb` itself
(protobuf only, nothing runs) and refuses, exit 2 naming the op, any op on a deny-list of the
ops that touch files, processes or the network: the list TensorFlow's own `saved_model_cli scan`
uses (WriteFile, ReadFile, PrintV2), extended with the file readers and writers, checkpoint,
summary, debug, dataset-from-file, Python-callback, RPC and collective ops.

Unlike `saved_model_cli scan`, which follows only `PartitionedCall` ops from the main graph, every
function of the library is scanned, whether or not anything seems to call it: `tf.cond` and
`tf.while_loop` branches, resource initialisers and gradients are functions too.

The one exception is what a TensorFlow 2 SavedModel needs to hold its variables: the restore
function the saver names (`RestoreV2` of the file the loader passes) and the save function
(`SaveV2`, `MergeV2Checkpoints`) may keep their checkpoint ops, as long as nothing else in the
graph calls those functions. The TensorFlow 2 loader never runs either (it restores variables
itself); a checkpoint op anywhere else, such as in a serving function or in the main graph of a
TensorFlow 1 SavedModel, is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dlkit.core.errors import UsageError, first_line
from dlkit.core.files import read_bytes

GRAPH_FILE = "saved_model.pb"
_OTHER_GRAPH_FILES = ("saved_model.pbtxt", "saved_model.cpb")  # TensorFlow reads these too

_FILES = "reads or writes files"
_CODE = "runs code from outside the graph"
_NETWORK = "talks to other processes or the network"
DENIED: dict[str, str] = {
    **dict.fromkeys((
        # saved_model_cli's own list, then files by name, readers and datasets of files
        "WriteFile", "ReadFile", "PrintV2", "Print", "MatchingFiles", "ImmutableConst",
        "FileSystemSetConfiguration", "WholeFileReader", "WholeFileReaderV2", "TextLineReader",
        "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
        "TFRecordReader", "TFRecordReaderV2", "LMDBReader", "TFRecordDataset",
        "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
        "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset",
        "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader",
        "SnapshotNestedDatasetReader", "SnapshotChunkDataset", "ListSnapshotChunksDataset",
        "SaveDataset", "SaveDatasetV2", "LoadDataset", "DistributedSave", "CacheDataset",
        "CacheDatasetV2", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
        # lookup tables, vocabularies and protos read from files; summaries written to them
        "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "LoadAndRemapMatrix",
        "GenerateVocabRemapping", "Skipgram", "DecodeProtoV2", "EncodeProto",
        "CreateSummaryFileWriter", "CreateSummaryDbWriter", "ImportEvent",
        "StatsAggregatorSetSummaryWriter",
        # checkpoints (allowed only in the saver's own functions, see the module doc)
        "Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "Restore", "RestoreV2",
        "RestoreSlice"), _FILES),
    **dict.fromkeys(("PyFunc", "PyFuncStateless", "EagerPyFunc", "DatasetFromGraph"), _CODE),
    **dict.fromkeys(("Rpc", "TryRpc", "RemoteCall", "RegisterDataset", "RegisterDatasetV2",
                     "Send", "Recv", "_Send", "_Recv", "_HostSend", "_HostRecv",
                     "GcsConfigureCredentials", "GcsConfigureBlockCache", "BigQueryReader",
                     "GenerateBigQueryReaderPartitions"), _NETWORK),
}
# Whole families by name: summary and file writers, tfdbg's debug ops (they write to files or
# gRPC addresses), RPC, tf.data service, collectives and NCCL (other devices and machines).
DENIED_PREFIXES = {"Write": _FILES, "Debug": _FILES, "Rpc": _NETWORK, "DataService": _NETWORK,
                   "Collective": _NETWORK, "Nccl": _NETWORK}
SAVE_OPS = frozenset({"Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints"})
RESTORE_OPS = frozenset({"Restore", "RestoreV2", "RestoreSlice"})


def denied(op: str) -> str | None:
    """What `op` would do that a model must not (None when it is a plain computation)."""
    if op in DENIED:
        return DENIED[op]
    return next((why for prefix, why in DENIED_PREFIXES.items() if op.startswith(prefix)), None)


def read(folder: Path) -> Any:
    """The SavedModel protocol buffer of `folder` (nothing in it runs); exit 2 when there is
    none, when it is damaged, or when TensorFlow could read another graph file than the one
    scanned."""
    from dlkit.core.runtime import import_tensorflow_lean

    import_tensorflow_lean()
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    folder = Path(folder)
    others = [name for name in _OTHER_GRAPH_FILES if (folder / name).exists()]
    if others:
        raise UsageError(f"the SavedModel {folder} holds {others[0]}; dlkit reads only "
                         f"SavedModels whose graph is one binary {GRAPH_FILE}")
    content = read_bytes(folder / GRAPH_FILE, "the SavedModel graph")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(content)
    except DecodeError:
        raise UsageError(f"{folder / GRAPH_FILE} is damaged (not a SavedModel graph); "
                         "retrain or re-export the model") from None
    return proto


def scan(folder: Path) -> Any:
    """Refuse (exit 2, naming the op and where it is) a SavedModel whose graph holds an op that
    touches files, processes or the network; returns its protocol buffer."""
    proto = read(folder)
    for meta_graph in proto.meta_graphs:
        found = _first_denied(meta_graph)
        if found is not None:
            op, where, why = found
            raise UsageError(
                f"the SavedModel {folder} holds a {op} op ({why}) in {where}; dlkit runs no "
                "model whose graph touches files, processes or the network: use a model "
                "trained with dlkit, or re-export this one without that op")
    return proto


def load(folder: Path) -> tuple[Any, Any]:
    """(`tf.saved_model.load(folder)`, its protocol buffer), after `scan`; a model TensorFlow
    cannot load is exit 2."""
    from dlkit.core.runtime import import_tensorflow_lean

    proto = scan(folder)
    tf = import_tensorflow_lean()
    try:
        return tf.saved_model.load(str(folder)), proto
    except Exception as exc:  # TensorFlow raises many types for a damaged SavedModel
        first = first_line(exc, default=type(exc).__name__)
        raise UsageError(f"cannot load the SavedModel {folder}: {first}") from None


def _first_denied(meta_graph: Any) -> tuple[str, str, str] | None:
    """(op, where, why) of the first denied op of a MetaGraph, or None."""
    graph = meta_graph.graph_def
    library = {f.signature.name: f for f in graph.library.function}
    allowed = _saver_functions(meta_graph, library)
    for node in graph.node:
        why = denied(node.op)
        if why is not None:
            return node.op, f"its main graph (node {node.name!r})", why
    for name, function in library.items():
        for node in function.node_def:
            why = denied(node.op)
            if why is not None and node.op not in allowed.get(name, ()):
                return node.op, f"its function {name!r}", why
    return None


def _saver_functions(meta_graph: Any, library: dict[str, Any]) -> dict[str, frozenset[str]]:
    """{function name: the checkpoint ops it may hold} for the save and restore functions the
    saver names, when no other node or function calls them."""
    saver = meta_graph.saver_def
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    roles = {}
    for tensor, ops in ((saver.save_tensor_name, SAVE_OPS),
                        (saver.restore_op_name, RESTORE_OPS)):
        node = nodes.get(tensor.lstrip("^").split(":")[0]) if tensor else None
        if node is not None and node.op in ("PartitionedCall", "StatefulPartitionedCall"):
            roles[node.name] = (node.attr["f"].func.name, ops)
    callers: dict[str, int] = {}
    graph = meta_graph.graph_def
    for node in [*graph.node, *(n for f in library.values() for n in f.node_def)]:
        for name in _called(node, library):
            callers[name] = callers.get(name, 0) + 1
    for gradient in graph.library.gradient:  # a gradient function is called too
        callers[gradient.gradient_func] = callers.get(gradient.gradient_func, 0) + 1
    concrete = set(meta_graph.object_graph_def.concrete_functions)
    return {function: ops for function, ops in roles.values()
            if function in library and callers.get(function) == 1 and function not in concrete}


def _called(node: Any, library: dict[str, Any]) -> Iterable[str]:
    """The library functions a node calls: as its op, or in any function-valued attribute."""
    if node.op in library:
        yield node.op
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        yield from (f.name for f in value.list.func)


# ---------------------------------------------------------------------------------------------
# What a signature's output is

_PASS_THROUGH = frozenset({"Identity", "StopGradient", "Snapshot", "EnsureShape", "Cast"})


def output_op(proto: Any, signature: str, output: str) -> str | None:
    """The op that computes a signature's output (looking through identities and function
    calls): "Softmax" for a model that outputs probabilities. None when it cannot be told."""
    for meta_graph in proto.meta_graphs:
        if signature in meta_graph.signature_def:
            tensors = meta_graph.signature_def[signature].outputs
            if output not in tensors:
                return None
            graph = meta_graph.graph_def
            library = {f.signature.name: f for f in graph.library.function}
            return _producer(tensors[output].name, _by_name(graph.node), library)
    return None


def _by_name(nodes: Iterable[Any]) -> dict[str, Any]:
    return {node.name: node for node in nodes}


def _producer(tensor: str, nodes: dict[str, Any], library: dict[str, Any],
              depth: int = 0) -> str | None:
    """The op behind `tensor` ("node:index" in a graph, "node:output_arg:index" in a
    function), through pass-through ops and into the functions that calls run."""
    if depth > 200:  # a graph built to loop
        return None
    parts = tensor.lstrip("^").split(":")
    index = int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 0
    node = nodes.get(parts[0])
    if node is None:  # a function's argument, or a name that is not there
        return None
    if node.op in _PASS_THROUGH and node.input:
        return _producer(node.input[0], nodes, library, depth + 1)
    if node.op == "IdentityN" and index < len(node.input):
        return _producer(node.input[index], nodes, library, depth + 1)
    calls = node.op in ("PartitionedCall", "StatefulPartitionedCall")
    callee = node.attr["f"].func.name if calls else node.op
    if callee in library:
        function = library[callee]
        outputs = function.signature.output_arg
        if index >= len(outputs):
            return None
        return _producer(function.ret[outputs[index].name], _by_name(function.node_def),
                         library, depth + 1)
    return node.op
