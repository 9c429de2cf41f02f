"""Writing each artifact with its framework's own exporter, and running it in its own runtime.

Writers take a built model (eval mode, weights loaded) and write one artifact at ``path``; the
batch is dynamic in every format, the image size fixed. Runners load an artifact the way a
deployment would, with none of this project's code, and return a function from a numpy batch
(in the artifact's own layout) to numpy outputs. ``fused=False`` turns the runtime's own graph
rewrites off (onnxruntime's optimisations; LiteRT's XNNPACK delegate), so a report can say how
much of an error those rewrites add.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAME = "images"
# The formats whose files name their output (a graph output, a signature key); a torch.export
# program and a StableHLO module return their array by position.
NAMED_OUTPUT = ("onnx", "tflite", "saved_model")
META_KEY = "resnext"  # the key of the sidecar's JSON inside an artifact that has a metadata slot
Run = Callable[[np.ndarray], np.ndarray]


# ---- writers ----------------------------------------------------------------------------------


def write(framework: str, fmt: str, model: Any, path: str, image_shape: tuple[int, ...], meta: dict) -> None:
    """Export ``model`` of ``framework`` as ``fmt`` to ``path``; ``image_shape`` is one image in the
    framework's layout (C, H, W for torch; H, W, C for Keras and Flax).

    The input is named ``images`` and, in the formats that name outputs, the output is named as
    ``meta["output"]["name"]`` says (``logits``, or ``features`` for a headless network): each
    exporter picks its own names (``linear``, ``Identity:0``, ``output_0``), so the writers ask for
    these or rename afterwards."""
    writer = {
        ("torch", "onnx"): _torch_onnx,
        ("torch", "pt2"): _torch_pt2,
        ("keras", "onnx"): _keras_export,
        ("keras", "saved_model"): _keras_export,
        ("keras", "tflite"): _keras_export,
        ("keras", "stablehlo"): _jax_stablehlo,
        ("flax", "onnx"): _flax_onnx,
        ("flax", "stablehlo"): _jax_stablehlo,
    }[framework, fmt]
    output = meta["output"]["name"]  # None where the format has no names (not used there)
    with _quiet_exporters():
        writer(model, path, image_shape, fmt=fmt, framework=framework, meta=meta, output=output)
    if fmt == "onnx":
        _onnx_finish(path, meta)
    elif fmt == "tflite":
        _tflite_finish(path, meta)
    elif fmt == "saved_model":  # TF Serving's place for files beside the graph
        extra = Path(path) / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / f"{META_KEY}.json").write_text(json.dumps(meta, indent=2))


@contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Keep the exporters' chatter out of the command's output: torch.onnx's warnings that it skips
    torchvision's operators, and the FutureWarnings that tf2onnx and torch.export raise on
    their own dependencies. Errors still surface."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _torch_sample(image_shape: tuple[int, ...]):
    import torch

    # A batch of 2, not 1: torch.export specialises a dimension it sees as 1 to the constant 1.
    x = torch.zeros((2, *image_shape))
    return (x,), ({0: torch.export.Dim("batch", min=1, max=65536)},)


def _torch_onnx(model, path: str, image_shape, output: str, **_) -> None:
    import torch

    args, dynamic = _torch_sample(image_shape)
    program = torch.onnx.export(
        model,
        args,
        dynamo=True,
        dynamic_shapes=dynamic,
        input_names=[INPUT_NAME],
        output_names=[output],
        verbose=False,
    )
    program.save(path)


def _named_input(model):
    """``model`` behind a forward whose argument is called ``images``: torch.export names the
    program's input after it (the network's own forward calls it ``x``)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.net(images)

    return Exported(model).eval()


def _torch_pt2(model, path: str, image_shape, meta: dict, **_) -> None:
    import torch

    args, dynamic = _torch_sample(image_shape)
    program = torch.export.export(_named_input(model), args, dynamic_shapes=dynamic)
    torch.export.save(program, path, extra_files={f"{META_KEY}.json": json.dumps(meta)})


def _keras_export(model, path: str, image_shape, fmt: str, output: str, **_) -> None:
    """Keras's ``model.export`` for ONNX (its output renamed afterwards). A SavedModel, and the
    LiteRT file converted from one, are written through Keras's ``ExportArchive`` with a serving
    function that returns ``{output: logits}``: ``model.export`` keys the signature ``output_0``."""
    import keras

    spec = keras.InputSpec(shape=(None, *image_shape), dtype="float32", name=INPUT_NAME)
    if fmt == "onnx":
        model.export(path, format="onnx", input_signature=[spec], verbose=False)
        return
    if fmt == "saved_model":
        _keras_archive(model, spec, output).write_out(path, verbose=False)
        return
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        _keras_archive(model, spec, output).write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        # as Keras's own LiteRT export sets them
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter.experimental_enable_resource_variables = True
        Path(path).write_bytes(converter.convert())


def _keras_archive(model, spec, output: str):
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda images: {output: model(images, training=False)}, input_signature=[spec]
    )
    return archive


def jax_function(framework: str, model) -> Callable:
    """The model's eval-mode forward as a pure JAX function of the images, weights closed over
    (they become constants of the exported program)."""
    if framework == "flax":
        from flax import nnx

        graphdef, state = nnx.split(model)
        return lambda x: nnx.merge(graphdef, state)(x)
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]
    return lambda x: model.stateless_call(trainable, fixed, x, training=False)[0]


def _jax_stablehlo(model, path: str, image_shape, framework: str, **_) -> None:
    import jax
    import jax.numpy as jnp

    (batch,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
    with jax.default_matmul_precision("highest"):  # no TF32 in the program when it runs on a GPU
        exported = jax.export.export(jax.jit(jax_function(framework, model)))(spec)
    Path(path).write_bytes(exported.serialize())


def _flax_onnx(model, path: str, image_shape, **_) -> None:
    """jax2onnx of the traced program, not of the module: jax2onnx's Flax NNX plugins misplace a
    layout transpose after form (a)'s summed paths (measured on resnext26_8x16d: onnxruntime
    refuses the graph, "Add: Incompatible dimensions"), and the plain JAX operations convert right."""
    import jax
    import jax.numpy as jnp
    import onnx
    from jax2onnx import to_onnx

    (batch,) = jax.export.symbolic_shape("batch")
    traced = jax.make_jaxpr(jax_function("flax", model))(
        jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
    )

    def program(x):
        return jax.core.eval_jaxpr(traced.jaxpr, traced.consts, x)[0]

    proto = to_onnx(program, [("batch", *image_shape)], model_name="resnext")
    onnx.save(proto, path)


def _onnx_finish(path: str, meta: dict) -> None:
    """Name the input and the output as the sidecar does in every exporter's graph, make its
    max-pool one onnxruntime runs, and record the sidecar as metadata."""
    import onnx

    proto = onnx.load(path)
    _nhwc_max_pool_as_2d(proto)
    graph = proto.graph
    _rename(graph, graph.input[0].name, INPUT_NAME)
    _rename(graph, graph.output[0].name, meta["output"]["name"])
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, path)


def _rename(graph, old: str, new: str) -> None:
    """Rename the tensor ``old`` to ``new`` wherever an ONNX graph mentions it."""
    if old == new:
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _tflite_finish(path: str, meta: dict) -> None:
    """Name the graph's input and output tensors as the sidecar does (the converter calls them
    ``serving_default_images:0`` and ``StatefulPartitionedCall_1:0``; the signature's keys are
    already right), and record the sidecar in the flatbuffer's own metadata table (name
    ``resnext``), where LiteRT's tools look for model metadata; the interpreter ignores it."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].name = INPUT_NAME.encode()
    graph.tensors[graph.outputs[0]].name = meta["output"]["name"].encode()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = META_KEY, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    flatbuffer_utils.write_model(model, path)


def _nhwc_max_pool_as_2d(proto) -> None:
    """Rewrite jax2onnx's NHWC max-pool into the 2-D one every runtime has.

    jax2onnx (0.17) turns ``lax.reduce_window`` over an NHWC map (window ``(1, k, k, 1)``: the
    ImageNet stem's 3x3/2 max-pool) into a MaxPool with a 4-D kernel over (N, H, W, C), fed by two
    Unsqueezes to rank 6. ONNX allows it; onnxruntime does not ("Unsupported pooling size"). Each
    such node becomes Squeeze to NHWC, Transpose to NCHW, a 2-D MaxPool, Transpose and Unsqueeze
    back: the same values, under the same tensor names.
    """
    import onnx
    from onnx import helper

    graph = proto.graph
    for index, node in reversed(list(enumerate(graph.node))):
        attrs = {a.name: list(a.ints) for a in node.attribute}
        kernel, strides = attrs.get("kernel_shape", []), attrs.get("strides", [1, 1, 1, 1])
        pads = attrs.get("pads", [0] * 8)
        if node.op_type != "MaxPool" or len(kernel) != 4 or kernel[0] != 1 or kernel[3] != 1:
            continue
        if strides[0] != 1 or strides[3] != 1 or any(pads[i] for i in (0, 3, 4, 7)):
            continue
        name = node.name or f"max_pool_{index}"
        axes = helper.make_tensor(f"{name}_axes01", onnx.TensorProto.INT64, [2], [0, 1])
        graph.initializer.append(axes)
        (x,), (y,) = node.input, node.output
        new = [
            helper.make_node("Squeeze", [x, axes.name], [f"{name}_nhwc"], name=f"{name}_squeeze"),
            helper.make_node("Transpose", [f"{name}_nhwc"], [f"{name}_nchw"], perm=[0, 3, 1, 2]),
            helper.make_node(
                "MaxPool",
                [f"{name}_nchw"],
                [f"{name}_pooled"],
                name=f"{name}_2d",
                kernel_shape=kernel[1:3],
                strides=strides[1:3],
                pads=[pads[1], pads[2], pads[5], pads[6]],
            ),
            helper.make_node("Transpose", [f"{name}_pooled"], [f"{name}_back"], perm=[0, 2, 3, 1]),
            helper.make_node("Unsqueeze", [f"{name}_back", axes.name], [y], name=f"{name}_unsqueeze"),
        ]
        del graph.node[index]
        for offset, n in enumerate(new):
            graph.node.insert(index + offset, n)


def read_metadata(fmt: str, path: str) -> dict | None:
    """The sidecar JSON as recorded inside the artifact (ONNX metadata, LiteRT metadata, a
    SavedModel's ``assets.extra``, a ``.pt2``'s extra files); None for StableHLO, which has no
    slot for it (the sidecar alone says it)."""
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        return json.loads(props[META_KEY]) if META_KEY in props else None
    if fmt == "saved_model":
        f = Path(path) / "assets.extra" / f"{META_KEY}.json"
        return json.loads(f.read_text()) if f.exists() else None
    if fmt == "tflite":
        from tensorflow.lite.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(path)
        found = [m.buffer for m in model.metadata or [] if m.name.decode() == META_KEY]
        return json.loads(bytes(model.buffers[found[0]].data)) if found else None
    if fmt == "pt2":
        import torch

        extra = {f"{META_KEY}.json": ""}
        torch.export.load(path, extra_files=extra)
        return json.loads(extra[f"{META_KEY}.json"]) if extra[f"{META_KEY}.json"] else None
    return None


def size_bytes(path: str) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


# ---- runners ----------------------------------------------------------------------------------


def io_names(fmt: str, path: str) -> tuple[str | None, str | None]:
    """The input's and the output's names as the artifact's own file records them, read with the
    format's own library; None where the format passes arrays by position (StableHLO; a pt2's
    output)."""
    if fmt == "onnx":
        import onnx

        graph = onnx.load(path, load_external_data=False).graph
        return graph.input[0].name, graph.output[0].name
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path)
        signature = interpreter.get_signature_list()["serving_default"]
        tensors = interpreter.get_input_details()[0]["name"], interpreter.get_output_details()[0]["name"]
        if (signature["inputs"], signature["outputs"]) != ([tensors[0]], [tensors[1]]):
            return f"{signature['inputs']} / {tensors[0]}", f"{signature['outputs']} / {tensors[1]}"
        return tensors
    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serving_default"]
        (inp,), (out,) = serve.structured_input_signature[1], serve.structured_outputs
        return inp, out
    if fmt == "pt2":
        import torch

        (inp,) = torch.export.load(path).graph_signature.user_inputs
        return inp, None
    return None, None


def load(fmt: str, path: str, fused: bool = True, output: str = "logits") -> Run:
    """The artifact at ``path`` loaded in its own runtime, as a function of a float32 batch; the
    input and (where the format names it) the output are asked for by name, as a deployment
    reading the sidecar would."""
    return {
        "onnx": _run_onnx,
        "tflite": _run_tflite,
        "saved_model": _run_saved_model,
        "stablehlo": _run_stablehlo,
        "pt2": _run_pt2,
    }[fmt](path, fused, output)


def _run_onnx(path: str, fused: bool, output: str) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # jax2onnx's graphs draw shape-merge warnings that change nothing
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fused else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run([output], {INPUT_NAME: x})[0]


def _run_tflite(path: str, fused: bool, output: str) -> Run:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if fused else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=path, experimental_op_resolver_type=resolver)
    (inp,) = interpreter.get_input_details()
    (out,) = [d for d in interpreter.get_output_details() if d["name"] == output]
    shape: list[tuple[int, ...]] = []

    def run(x: np.ndarray) -> np.ndarray:
        if shape != [x.shape]:  # LiteRT sizes its tensors once per input shape
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            shape[:] = [x.shape]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run


def _run_saved_model(path: str, fused: bool, output: str) -> Run:
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    return lambda x: serve(**{INPUT_NAME: tf.constant(x)})[output].numpy()


def _run_stablehlo(path: str, fused: bool, output: str) -> Run:
    import jax

    exported = jax.export.deserialize(bytearray(Path(path).read_bytes()))
    call = jax.jit(exported.call)
    return lambda x: np.asarray(call(x))


def _run_pt2(path: str, fused: bool, output: str) -> Run:
    import torch

    module = torch.export.load(path).module()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def quiet_tf() -> None:
    """No TensorFlow C++ INFO lines (CPU flags, oneDNN) in a command's output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
