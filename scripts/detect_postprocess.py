"""A detector's post-processing, written the way torch and torchvision
export it (no model hub is reachable): a score threshold as boolean-mask
indexing (`boxes[scores > t]`, which torch writes as Greater, NonZero,
Transpose and GatherND), then `torchvision.ops.nms` (Unsqueeze to a
batch of one and a class of one, NonMaxSuppression with a per-class limit
of `sys.maxsize`, Gather of column 2 and Squeeze), then the kept boxes and
scores gathered by the kept indices. Every constant is a `Constant` node;
the box count is the symbolic `num_boxes`.

Two sizes only the data decides follow each other: how many boxes pass
the threshold, and how many of those NMS keeps. `setup_models.py` runs it
at several box counts, one where no box passes.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

SCORE_THRESHOLD, IOU_THRESHOLD = 0.3, 0.5


def detect_postprocess(path):
    """Writes the model to `path`."""
    nodes = []

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=f"/{name}", **attrs))
        return name

    def constant(name, value):
        tensor = helper.make_tensor(name + "_value", TensorProto.INT64 if value.dtype == np.int64 else TensorProto.FLOAT,
                                    value.shape, value.flatten().tolist())
        nodes.append(helper.make_node("Constant", [], [name], name=f"/{name}", value=tensor))
        return name

    threshold = constant("threshold", np.array(SCORE_THRESHOLD, dtype=np.float32))
    keep = node("Greater", ["scores", threshold], "keep")
    where = node("NonZero", [keep], "nonzero")
    where_t = node("Transpose", [where], "nonzero_t", perm=[1, 0])
    boxes = node("GatherND", ["boxes", where_t], "boxes_kept")
    scores = node("GatherND", ["scores", where_t], "scores_kept")
    axes0 = constant("axes0", np.array([0], dtype=np.int64))
    boxes_b = node("Unsqueeze", [boxes, axes0], "boxes_batched")
    scores_b = node("Unsqueeze", [node("Unsqueeze", [scores, axes0], "scores_class"), axes0], "scores_batched")
    limit = constant("max_output", np.array([sys.maxsize], dtype=np.int64))
    iou = constant("iou_threshold", np.array([IOU_THRESHOLD], dtype=np.float32))
    selected = node("NonMaxSuppression", [boxes_b, scores_b, limit, iou], "nms")
    column = constant("column", np.array([2], dtype=np.int64))
    picked = node("Gather", [selected, column], "nms_column", axis=1)
    axes1 = constant("axes1", np.array([1], dtype=np.int64))
    nodes.append(helper.make_node("Squeeze", [picked, axes1], ["indices"], name="/indices"))
    nodes.append(helper.make_node("Gather", [boxes, "indices"], ["kept_boxes"], name="/kept_boxes", axis=0))
    nodes.append(helper.make_node("Gather", [scores, "indices"], ["kept_scores"], name="/kept_scores", axis=0))
    graph = helper.make_graph(
        nodes,
        "detect_postprocess",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["num_boxes", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["num_boxes"]),
        ],
        [
            # As torch declares data-dependent sizes: names of its own.
            helper.make_tensor_value_info("kept_boxes", TensorProto.FLOAT, ["Gatherkept_boxes_dim_0", 4]),
            helper.make_tensor_value_info("kept_scores", TensorProto.FLOAT, ["Gatherkept_scores_dim_0"]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["Squeezeindices_dim_0"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def feeds_for(boxes, seed, passing=True):
    """Seeded corner boxes (y1, x1, y2, x2) in a 100x100 image, clustered
    so that NMS has overlaps to suppress, and their scores; with
    `passing=False` every score is under the threshold."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(10, 90, (max(boxes // 4, 1), 2))
    centre = centres[rng.integers(0, len(centres), boxes)] + rng.normal(0, 3, (boxes, 2))
    half = rng.uniform(4, 12, (boxes, 2))
    corners = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, boxes).astype(np.float32)
    if not passing:
        scores *= SCORE_THRESHOLD
    return {"boxes": corners, "scores": scores}
