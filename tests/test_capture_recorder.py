"""The recorder's Python API (context manager and decorator) on a toy pipeline of the user's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from capture import recorded, recording
from cases.caseset import load_case_set
from cases.errors import BenchError
from kernels.contract import ImageDetections, PostprocessInputs
from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs


def toy_model(seed: int, batch: int = 1, letterbox: bool = False) -> PostprocessInputs:
    return make_inputs(seed, batch=batch, queries=20, input_size=64, frame_sizes=[(48, 80)], letterbox=letterbox)


def same(a: list[ImageDetections], b: list[ImageDetections]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.xyxy, y.xyxy)
        np.testing.assert_array_equal(x.class_id, y.class_id)
        np.testing.assert_array_equal(x.confidence, y.confidence)  # same values passed through, bit-identical
        assert [m.counts for m in x.masks] == [m.counts for m in y.masks]


@pytest.mark.parametrize(("batch", "letterbox"), [(1, False), (2, True)])
def test_context_manager_records_calls_where_they_happen(tmp_path: Path, seed: int, batch: int, letterbox) -> None:
    out = tmp_path / "mine"
    results = []
    with recording(out, max_cases=None, source="my pipeline", model="my-model") as rec:
        post = rec.wrap(postprocess_reference, max_cases=3)
        for i in range(5):
            inputs = toy_model(seed + i, batch, letterbox)
            result = post(inputs)
            same(result, postprocess_reference(inputs))  # the wrapper is transparent
            results.append((inputs, result))
    case_set = load_case_set(out)
    assert len(case_set) == 3
    for case, (inputs, result) in zip(case_set.cases, results[:3], strict=True):
        same(case.expected, result)
        assert torch.equal(case.inputs.masks, inputs.masks) and torch.equal(case.inputs.logits, inputs.logits)
        assert case.inputs.preprocess == inputs.preprocess
        assert case.provenance["impl"] == "kernels.reference:postprocess_reference"
        assert case.provenance["source"] == "my pipeline" and case.provenance["model"] == "my-model"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["count"] == 3 and manifest["frames_read"] == 5
    assert [e["call_index"] for e in manifest["cases"]] == [0, 1, 2]


def test_every_nth_call(tmp_path: Path, seed: int) -> None:
    with recording(tmp_path / "c") as rec:
        post = rec.wrap(postprocess_reference, every=3)
        for i in range(7):
            post(toy_model(seed + i))
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert [e["call_index"] for e in manifest["cases"]] == [0, 3, 6]


def test_decorator_opens_the_directory_on_first_call(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "dec"

    @recorded(out, max_cases=2, model="toy")
    def my_postprocess(inputs: PostprocessInputs) -> list[ImageDetections]:
        """My pipeline's post-processing."""
        return postprocess_reference(inputs)

    assert not out.exists() and my_postprocess.recorder is None
    assert my_postprocess.__doc__ == "My pipeline's post-processing."
    for i in range(4):
        my_postprocess(toy_model(seed + i))
    assert my_postprocess.recorder.count == 2
    case_set = load_case_set(out)
    assert len(case_set) == 2
    same(case_set.cases[1].expected, postprocess_reference(toy_model(seed + 1)))
    assert case_set.cases[0].provenance["impl"].endswith("my_postprocess")


def test_adapters_for_a_pipeline_with_its_own_types(tmp_path: Path, seed: int) -> None:
    """A function taking raw tensors and returning dicts is recorded through to_inputs/to_detections."""
    template = toy_model(seed)

    def my_postprocess(boxes: torch.Tensor, logits: torch.Tensor, masks: torch.Tensor) -> list[dict]:
        inputs = PostprocessInputs(boxes, logits, masks, 0.5, template.num_classes, template.preprocess)
        return [vars(d) for d in postprocess_reference(inputs)]

    def to_inputs(boxes, logits, masks) -> PostprocessInputs:
        return PostprocessInputs(boxes, logits, masks, 0.5, template.num_classes, template.preprocess)

    with recording(tmp_path / "c") as rec:
        post = rec.wrap(my_postprocess, to_inputs=to_inputs, to_detections=lambda r: [ImageDetections(**d) for d in r])
        raw = post(template.boxes, template.logits, template.masks)
    assert isinstance(raw[0], dict)
    case = load_case_set(tmp_path / "c").cases[0]
    same(case.expected, postprocess_reference(template))


def test_wrong_types_without_adapters(tmp_path: Path, seed: int) -> None:
    inputs = toy_model(seed)
    with recording(tmp_path / "a") as rec:
        with pytest.raises(TypeError, match="to_inputs"):
            rec.wrap(lambda boxes: postprocess_reference(inputs))(inputs.boxes)
        with pytest.raises(TypeError, match="to_detections"):
            rec.wrap(lambda x: {"not": "detections"})(inputs)


def test_an_exception_in_the_block_leaves_a_valid_incomplete_set(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "c"
    with pytest.raises(RuntimeError, match="model crashed"), recording(out) as rec:
        post = rec.wrap(postprocess_reference)
        post(toy_model(seed))
        post(toy_model(seed + 1))
        raise RuntimeError("model crashed")
    assert len(load_case_set(out)) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and "RuntimeError" in manifest["note"]


def test_api_refuses_a_non_empty_directory_and_resumes(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "c"
    with recording(out) as rec:
        rec.wrap(postprocess_reference)(toy_model(seed))
    with pytest.raises(BenchError, match="not empty"), recording(out):
        pass
    with recording(out, resume=True) as rec:
        rec.wrap(postprocess_reference)(toy_model(seed + 1))
    assert len(load_case_set(out)) == 2
    with recording(out, overwrite=True) as rec:
        assert rec.count == 0
    assert not list(out.glob("case_*"))
