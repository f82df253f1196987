"""The ONNX Runtime backend, against tiny models built here with the RF-DETR seg export signature:
one input `input` [1, 3, R, R], outputs by position boxes [B, Q, 4], class logits [B, Q, C], masks
[B, Q, R/4, R/4]."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from capture.backends import load_backend  # noqa: E402
from capture.preprocess import normalize, preprocess_frame  # noqa: E402
from cases.caseset import load_case_set  # noqa: E402
from cases.errors import BenchError  # noqa: E402
from kernels.reference import postprocess_reference  # noqa: E402
from rlebench.cli import main  # noqa: E402


def tiny_seg_model(
    path: Path,
    *,
    size: int = 32,
    queries: int = 12,
    classes: int = 7,
    mask_pool: int = 4,
    outputs: int = 3,
    batch: int | str = 1,
    seed: int = 0,
) -> Path:
    """A deterministic toy model with the export's signature; mask_pool != 4 or outputs != 3 break it."""
    rng = np.random.default_rng(seed)

    def const(name: str, array: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    mask_size = size // mask_pool
    inits = [
        const("wb", rng.normal(0, 1, (3, queries * 4))),
        const("bb", rng.normal(0, 1, (queries * 4,))),
        const("wl", rng.normal(0, 3, (3, queries * classes))),
        const("bl", rng.normal(-2, 2, (queries * classes,))),
        const("wm", rng.normal(0, 4, (queries, 3, 1, 1))),
        const("bm", rng.normal(0, 1, (queries,))),
        numpy_helper.from_array(np.array([-1, queries, 4], np.int64), "shape_boxes"),
        numpy_helper.from_array(np.array([-1, queries, classes], np.int64), "shape_logits"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "wb"], ["b0"]),
        helper.make_node("Add", ["b0", "bb"], ["b1"]),
        helper.make_node("Reshape", ["b1", "shape_boxes"], ["b2"]),
        helper.make_node("Sigmoid", ["b2"], ["dets"]),
        helper.make_node("MatMul", ["flat", "wl"], ["l0"]),
        helper.make_node("Add", ["l0", "bl"], ["l1"]),
        helper.make_node("Reshape", ["l1", "shape_logits"], ["labels"]),
        helper.make_node("AveragePool", ["input"], ["small"], kernel_shape=[mask_pool] * 2, strides=[mask_pool] * 2),
        helper.make_node("Conv", ["small", "wm", "bm"], ["4242"]),
    ]
    declared = [
        helper.make_tensor_value_info("dets", TensorProto.FLOAT, [batch, queries, 4]),
        helper.make_tensor_value_info("labels", TensorProto.FLOAT, [batch, queries, classes]),
        helper.make_tensor_value_info("4242", TensorProto.FLOAT, [batch, queries, mask_size, mask_size]),
    ][:outputs]
    graph = helper.make_graph(
        nodes,
        "tiny_rfdetr_seg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        declared,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def small_video(path: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 72, 96, "yuv420p"
        for t in range(count):
            frame = np.full((72, 96, 3), rng.integers(40, 200, 3), np.uint8)
            cv2.rectangle(frame, (5 + 6 * t, 10), (40 + 6 * t, 50), (250, 250, 20), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize(("batch_dim", "capture_batch"), [(1, 1), (1, 3), ("batch", 2)])
@pytest.mark.parametrize("size", [32, 64])
def test_onnx_capture_records_what_the_model_outputs(tmp_path: Path, seed: int, batch_dim, capture_batch, size) -> None:
    model = tiny_seg_model(tmp_path / "m.onnx", size=size, batch=batch_dim, seed=seed % 1000)
    video = small_video(tmp_path / "v.mp4", 6, seed)
    out = tmp_path / "c"
    argv = ["capture", "--video_reference", str(video), "--cases-dir", str(out), "--model", f"onnx:{model}"]
    argv += ["--capture-count", "2", "--batch", str(capture_batch), "--threshold", "0.3"]
    assert main(argv) == 0
    case_set = load_case_set(out)
    assert len(case_set) == 2
    first = case_set.cases[0]
    assert first.inputs.masks.shape == (capture_batch, 12, size // 4, size // 4)
    assert first.inputs.logits.shape == (capture_batch, 12, 7) and first.inputs.num_classes == 7
    assert first.provenance["backend"] == "onnx" and first.provenance["model"] == f"onnx:{model}"
    assert "CPUExecutionProvider" in first.provenance["model_info"]["providers"]
    # The recorded inputs are exactly ONNX Runtime's outputs for the normalised, resized frame 0.
    frame0 = next(iter(av.open(str(video)).decode(video=0))).to_ndarray(format="rgb24")
    x = normalize(preprocess_frame(frame0, size).image[None]).numpy()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    boxes, logits, masks = session.run(None, {"input": x})
    np.testing.assert_array_equal(first.inputs.boxes[:1].numpy(), boxes)
    np.testing.assert_array_equal(first.inputs.logits[:1].numpy(), logits)
    np.testing.assert_array_equal(first.inputs.masks[:1].numpy(), masks)
    for case in case_set.cases:
        for got, want in zip(postprocess_reference(case.inputs), case.expected, strict=True):
            np.testing.assert_array_equal(got.xyxy, want.xyxy)
            assert [m.counts for m in got.masks] == [m.counts for m in want.masks]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "onnx" and manifest["complete"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask_pool": 2}, "output 2 (mask logits) must be [B, Q, 8, 8]"),
        ({"outputs": 2}, "expected 3 outputs"),
        ({"size": 30}, "not a multiple of 4"),
    ],
)
def test_onnx_with_the_wrong_signature(tmp_path: Path, kwargs: dict, message: str) -> None:
    model = tiny_seg_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(BenchError, match=re.escape(message)):
        load_backend(f"onnx:{model}", device=torch.device("cpu"))


class _LyingSession:
    """Wraps a session and reshapes one output, as a model whose declared shapes are wrong would."""

    def __init__(self, session: object, position: int, shape: tuple[int, ...]) -> None:
        self.session, self.position, self.shape = session, position, shape

    def run(self, names: list[str], feed: dict) -> list[np.ndarray]:
        outs = self.session.run(names, feed)
        outs[self.position] = np.zeros(self.shape, np.float32)
        return outs


@pytest.mark.parametrize(
    ("position", "shape", "message"),
    [
        (0, (1, 12, 5), "output 0 (boxes) is float32[1, 12, 5], expected float[1, 12, 4]"),
        (2, (1, 12, 16, 16), "output 2 (mask logits) is float32[1, 12, 16, 16], expected float[1, 12, 8, 8]"),
        (1, (1, 11, 7), "output 1 (class logits) is float32[1, 11, 7], expected float[1, 12, 7]"),
    ],
)
def test_onnx_output_shapes_are_checked_at_run_time(tmp_path: Path, position: int, shape: tuple, message: str) -> None:
    backend = load_backend(f"onnx:{tiny_seg_model(tmp_path / 'm.onnx')}", device=torch.device("cpu"))
    backend.session = _LyingSession(backend.session, position, shape)
    images = np.zeros((1, backend.input_size, backend.input_size, 3), np.uint8)
    with pytest.raises(BenchError, match=re.escape(message)) as info:
        backend.infer(images, torch.device("cpu"))
    assert "not an RF-DETR seg export" in str(info.value)


def test_onnx_with_two_inputs_or_garbage(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(BenchError, match="cannot load ONNX model"):
        load_backend(f"onnx:{garbage}", device=torch.device("cpu"))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("other", TensorProto.FLOAT, [1, 3, 8, 8])
    z = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Add", ["input", "other"], ["sum"])], "two", [x, y], [z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    with pytest.raises(BenchError, match="expected 1 input"):
        load_backend(f"onnx:{tmp_path / 'two.onnx'}", device=torch.device("cpu"))


def test_wrong_onnx_via_cli_leaves_no_cases(tmp_path: Path, capsys, seed: int) -> None:
    model = tiny_seg_model(tmp_path / "bad.onnx", outputs=2)
    video = small_video(tmp_path / "v.mp4", 2, seed)
    out = tmp_path / "c"
    argv = ["capture", "--video_reference", str(video), "--cases-dir", str(out), "--model", f"onnx:{model}"]
    assert main(argv) == 2
    assert "expected 3 outputs" in capsys.readouterr().err
    assert not out.exists()
