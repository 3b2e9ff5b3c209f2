"""A MobileNetV3-style CNN with seeded random weights (no model hub is
reachable), written the way exporters write one: a strided stem, then
inverted-residual blocks (1x1 expand, depthwise 3x3, squeeze-excite,
1x1 project, residual Add where shapes allow) and a pooled classifier.
Activations are HardSwish as tf2onnx and older torch exports write it,
x * Clip(x + 3, 0, 6) / 6, and the squeeze-excite gate is HardSigmoid
followed by a Mul, with every constant a `Constant` node.

`setup_models.py` adds it to the real-model set, and again with the batch,
height and width left symbolic (`dynamic=True`), as torch writes
`dynamic_axes`, for classifiers that take any image size.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE, CLASSES = 64, 100
# (expanded channels, output channels, stride, squeeze-excite)
BLOCKS = [(32, 16, 1, True), (64, 24, 2, False), (72, 24, 1, True), (96, 40, 2, True), (120, 40, 1, True)]


def mobilenet_v3(path, dynamic=False):
    """Writes the model to `path`; returns its seeded `input` feed. With
    `dynamic`, the input is [batch, 3, height, width] and the output
    [batch, classes]."""
    rng = np.random.default_rng(2)
    inits, nodes = [], []
    counter = [0]

    def fresh(prefix):
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def node(op, inputs, **attrs):
        name = fresh(op.lower())
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def constant(value):
        name = fresh("const")
        tensor = numpy_helper.from_array(np.array(value, np.float32), name)
        nodes.append(helper.make_node("Constant", [], [name], name=name, value=tensor))
        return name

    def conv(x, cin, cout, k, stride=1, group=1):
        w = fresh("w")
        fan_in = cin // group * k * k
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32), w))
        b = fresh("b")
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.05).astype(np.float32), b))
        pad = k // 2
        return node("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def hard_swish(x):
        # x * relu6(x + 3) / 6
        clipped = node("Clip", [node("Add", [x, constant(3.0)]), constant(0.0), constant(6.0)])
        return node("Div", [node("Mul", [x, clipped]), constant(6.0)])

    def squeeze_excite(x, c):
        s = node("GlobalAveragePool", [x])
        s = node("Relu", [conv(s, c, max(8, c // 4), 1)])
        s = node("HardSigmoid", [conv(s, max(8, c // 4), c, 1)], alpha=1.0 / 6, beta=0.5)
        return node("Mul", [x, s])

    x = hard_swish(conv("input", 3, 16, 3, stride=2))
    cin = 16
    for expand, cout, stride, se in BLOCKS:
        h = hard_swish(conv(x, cin, expand, 1))
        h = hard_swish(conv(h, expand, expand, 3, stride=stride, group=expand))
        if se:
            h = squeeze_excite(h, expand)
        h = conv(h, expand, cout, 1)
        x = node("Add", [x, h]) if stride == 1 and cin == cout else h
        cin = cout
    x = hard_swish(conv(x, cin, 160, 1))
    x = node("Flatten", [node("GlobalAveragePool", [x])], axis=1)
    w = fresh("fc_w")
    inits.append(numpy_helper.from_array((rng.standard_normal((CLASSES, 160)) * 0.05).astype(np.float32), w))
    b = fresh("fc_b")
    inits.append(numpy_helper.from_array(np.zeros(CLASSES, np.float32), b))
    y = node("Gemm", [x, w, b], transB=1)
    graph = helper.make_graph(
        nodes,
        "mobilenet_v3",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"] if dynamic else [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", CLASSES] if dynamic else [1, CLASSES])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return feeds_for(1, SIZE, SIZE)


def feeds_for(batch, height, width):
    """A seeded input of `batch` images of `height` × `width`."""
    rng = np.random.default_rng(3 + batch * height * width)
    return {"input": rng.standard_normal((batch, 3, height, width)).astype(np.float32)}
