"""Capture building blocks: frame sources, pre-processing, the stand-in detector, the sample video."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from capture.backends import load_backend
from capture.backends.standin import CLASS_LOGITS, QUERIES, StandInDetector
from capture.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize, parse_static_crop, preprocess_frame
from capture.samplevideo import make_video
from capture.source import ImageFolderSource, VideoSource, open_source, parse_shape
from cases.errors import BenchError
from kernels.contract import PostprocessInputs, mask_crop
from kernels.reference import postprocess_reference
from kernels.rle import decode


def draw_frames(count: int, height: int, width: int, seed: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Frames with 1-3 solid moving rectangles on a smooth textured background, and their object masks."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(60, 110, (6, 8, 3)).astype(np.float32)
    background = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.uint8)
    colours = [(250, 40, 40), (30, 230, 60), (40, 60, 250)]
    frames, masks = [], []
    for t in range(count):
        frame = background.copy()
        objects = []
        for k in range(1 + t % 3):  # object k moves fast along its own horizontal band
            w, h = width // (5 + k), height // 3 - 8 - 4 * k
            x = (width // 8 + k * width // 3 + t * width // 7) % (width - w)
            y = k * (height // 3) + 4
            frame[y : y + h, x : x + w] = colours[k]
            mask = np.zeros((height, width), bool)
            mask[y : y + h, x : x + w] = True
            objects.append(mask)
        # An object painted later hides the earlier ones where they overlap.
        for i in range(len(objects)):
            for later in objects[i + 1 :]:
                objects[i] &= ~later
        frames.append(frame)
        masks.append(objects)
    return frames, masks


def encode_video(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}
        if codec == "mpeg4":
            stream.options = {"qscale": "2"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# ------------------------------------------------------------------------------------------------ sources


@pytest.mark.parametrize(
    ("suffix", "codec", "pix_fmt", "tolerance"),
    [
        # mean |decoded - drawn| per channel: lossy codecs and 4:2:0 chroma blur saturated colour edges
        (".mp4", "libx264", "yuv420p", 6.0),
        (".avi", "mpeg4", "yuv420p", 12.0),
        (".mkv", "ffv1", "yuv444p", 1.5),  # lossless codec; only the RGB<->YUV conversion rounds
    ],
)
def test_video_source_decodes_common_codecs(tmp_path: Path, seed: int, suffix, codec, pix_fmt, tolerance) -> None:
    frames, _ = draw_frames(12, 96, 128, seed)
    path = encode_video(tmp_path / f"v{suffix}", frames, codec, pix_fmt)
    source = open_source(str(path))
    assert isinstance(source, VideoSource)
    decoded = list(source.frames())
    assert [f.index for f in decoded] == list(range(12))
    for frame, drawn in zip(decoded, frames, strict=True):
        assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (96, 128, 3)
        diff = np.abs(frame.rgb.astype(int) - drawn.astype(int))
        assert diff.mean() <= tolerance


@pytest.mark.parametrize(
    ("start", "every", "max_frames", "expected"),
    [(0, 1, None, list(range(10))), (3, 2, None, [3, 5, 7, 9]), (1, 3, 2, [1, 4]), (9, 1, 5, [9]), (10, 1, None, [])],
)
def test_frame_sampling(tmp_path: Path, seed: int, start, every, max_frames, expected) -> None:
    frames, _ = draw_frames(10, 64, 64, seed)
    source = open_source(str(encode_video(tmp_path / "v.mp4", frames, "libx264")))  # mp4 knows its length
    got = [f.index for f in source.frames(start=start, every=every, max_frames=max_frames)]
    assert got == expected
    assert source.expected_frames(start=start, every=every, max_frames=max_frames) == len(expected)


@pytest.mark.parametrize("same_shape", [None, (48, 80)])
def test_image_folder_and_glob(tmp_path: Path, seed: int, same_shape) -> None:
    rng = np.random.default_rng(seed)
    sizes = [(40, 60), (72, 50), (33, 91)]
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    for spec in (str(tmp_path), str(tmp_path / "img*.png")):
        source = open_source(spec, same_shape=same_shape)
        assert isinstance(source, ImageFolderSource) and source.is_stills
        frames = list(source.frames())
        assert [f.name for f in frames] == ["img0.png", "img1.png", "img2.png"]
        shapes = [f.rgb.shape[:2] for f in frames]
        assert shapes == ([same_shape] * 3 if same_shape else sizes)
    first = cv2.cvtColor(cv2.imread(str(tmp_path / "img0.png")), cv2.COLOR_BGR2RGB)
    if same_shape is None:
        np.testing.assert_array_equal(frames[0].rgb, first)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.mp4"), "video not found"),
        (lambda d: _write(d / "text.mp4", b"this is not a video\n" * 50), "cannot open video"),
        (lambda d: _write(d / "empty.mp4", b""), "cannot open video"),
        (lambda d: str(d / "emptydir"), "no images"),
    ],
)
def test_bad_sources(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(BenchError, match=message) as info:
        list(open_source(make(tmp_path)).frames())
    assert "\n" not in str(info.value)


def test_zero_frame_video_and_unsupported_codec(tmp_path: Path, seed: int) -> None:
    frames, _ = draw_frames(3, 32, 32, seed)
    # A YUV4MPEG2 stream header without any frame after it: a valid video stream of zero frames.
    zero = _write(tmp_path / "zero.y4m", b"YUV4MPEG2 W64 H64 F25:1 Ip A1:1 C420\n")
    with pytest.raises(BenchError, match="contains no decodable video frames"):
        list(open_source(zero).frames())
    # An AVI whose codec tag FFmpeg does not know.
    data = encode_video(tmp_path / "v.avi", frames, "mpeg4").read_bytes()
    assert data.count(b"FMP4") >= 1
    bogus = _write(tmp_path / "bogus.avi", data.replace(b"FMP4", b"QQQQ"))
    with pytest.raises(BenchError, match=r"unsupported video codec|cannot decode"):
        list(open_source(bogus).frames())


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_parse_helpers() -> None:
    assert parse_shape("720x1280") == (720, 1280)
    assert parse_static_crop("10,20,110,220") == (10, 20, 110, 220)
    for bad in ("720", "0x5", "axb"):
        with pytest.raises(BenchError, match="--same-shape"):
            parse_shape(bad)
    for bad in ("1,2,3", "5,5,5,9", "a,b,c,d", "-1,0,4,4"):
        with pytest.raises(BenchError, match="--static-crop"):
            parse_static_crop(bad)


# ---------------------------------------------------------------------------------------------- preprocess


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("frame_hw", [(720, 1280), (1080, 1920), (500, 300), (200, 200)])
@pytest.mark.parametrize("crop", [None, (100, 50, 180, 190)])
def test_preprocess_metadata(resize: str, frame_hw, crop, seed: int) -> None:
    rgb = np.random.default_rng(seed).integers(0, 255, (*frame_hw, 3), dtype=np.uint8)
    out = preprocess_frame(rgb, 312, resize=resize, static_crop=crop)
    meta = out.meta
    meta.validate()
    assert out.image.shape == (312, 312, 3) and out.image.dtype == np.uint8
    ch, cw = (crop[3] - crop[1], crop[2] - crop[0]) if crop else frame_hw
    assert meta.original_size == frame_hw and meta.inference_size == (312, 312)
    assert meta.size_after_preprocessing == (ch, cw)
    assert meta.static_crop_offset == ((crop[0], crop[1]) if crop else (0, 0))
    left, top, right, bottom = meta.pad
    content_w, content_h = 312 - left - right, 312 - top - bottom
    assert meta.scale == pytest.approx((content_w / cw, content_h / ch), rel=0, abs=0)
    if resize == "stretch":
        assert meta.pad == (0.0, 0.0, 0.0, 0.0)
    else:
        assert min(content_w, content_h) < 312 or ch == cw
        assert max(content_w, content_h) == 312
        assert abs(left - right) <= 1 and abs(top - bottom) <= 1
        if left > 0:
            assert (out.image[:, 0] == 114).all()
        if top > 0:
            assert (out.image[0] == 114).all()
    mask_crop(meta, (78, 78))  # the padding leaves mask pixels


def test_static_crop_must_fit() -> None:
    with pytest.raises(BenchError, match="does not fit a 64x48 frame"):
        preprocess_frame(np.zeros((48, 64, 3), np.uint8), 312, static_crop=(0, 0, 65, 10))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_normalize_is_imagenet(dtype: torch.dtype, seed: int) -> None:
    images = np.random.default_rng(seed).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = normalize(images, "cpu", dtype)
    assert x.shape == (2, 3, 8, 8) and x.dtype == dtype
    expected = (images.astype(np.float64) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    # float32/float16 rounding of the normalised value
    tol = 1e-5 if dtype == torch.float32 else 4e-3
    np.testing.assert_allclose(x.float().numpy().transpose(0, 2, 3, 1), expected, atol=tol, rtol=tol)


# ------------------------------------------------------------------------------------------------ stand-in


def _run_standin(frames: list[np.ndarray], stills: bool = False) -> list[tuple[PostprocessInputs, list]]:
    detector = StandInDetector(seed=0, stills=stills)
    prepared_all = [preprocess_frame(f, 312) for f in frames]
    if not stills:
        detector.prime([p.image for p in prepared_all])
    results = []
    for prepared in prepared_all:
        out = detector.infer(prepared.image[None], torch.device("cpu"))
        inputs = PostprocessInputs(out.boxes, out.logits, out.masks, 0.5, detector.num_classes, [prepared.meta])
        results.append((inputs, postprocess_reference(inputs)[0]))
    return results


def test_standin_output_shapes_and_statistics(seed: int) -> None:
    frames, _ = draw_frames(8, 120, 160, seed)
    for inputs, _ in _run_standin(frames):
        assert inputs.boxes.shape == (1, QUERIES, 4) and inputs.logits.shape == (1, QUERIES, CLASS_LOGITS)
        assert inputs.masks.shape == (1, QUERIES, 78, 78)
        assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in (inputs.boxes, inputs.logits))
        scores = torch.sigmoid(inputs.logits[0])
        # Few confident pairs, many low ones: the shape of a trained DETR head's output.
        assert (scores > 0.5).sum() <= 3 * 3 and (scores < 0.05).float().mean() > 0.95
        masks = inputs.masks[0]
        assert masks.min() >= -25 and masks.max() <= 10


def test_standin_follows_the_video(seed: int) -> None:
    """Every drawn object is found: a detection whose mask overlaps it with IoU > 0.6."""
    frames, truth = draw_frames(15, 180, 240, seed)
    results = _run_standin(frames)
    counts = []
    for (_, det), objects in zip(results, truth, strict=True):
        counts.append(len(det))
        decoded = [decode(m) for m in det.masks]
        for obj in objects:
            ious = [(obj & d).sum() / (obj | d).sum() for d in decoded]
            assert max(ious, default=0.0) > 0.6
    assert len(set(counts)) > 1  # counts vary with the number of objects


def test_standin_mask_logits_cross_zero_at_the_border(seed: int) -> None:
    frames, _ = draw_frames(4, 312, 312, seed)  # frame == model input: no resampling of the object
    inputs, det = _run_standin(frames)[2]
    assert len(det) >= 1
    query = int(torch.argmax(torch.sigmoid(inputs.logits[0]).max(dim=1).values))
    field = inputs.masks[0, query].numpy()
    inside = field > 0
    assert 0 < inside.mean() < 0.9
    # Smooth: neighbouring logits differ by a few units at most, never by the full range.
    assert np.abs(np.diff(field, axis=0)).max() < 8 and np.abs(np.diff(field, axis=1)).max() < 8


def test_standin_stills_use_saliency(seed: int) -> None:
    frames, truth = draw_frames(3, 200, 260, seed)
    for (_, det), objects in zip(_run_standin(frames, stills=True), truth, strict=True):
        assert len(det) >= 1
        decoded = [decode(m) for m in det.masks]
        hit = max((objects[0] & d).sum() / max(objects[0].sum(), 1) for d in decoded)
        assert hit > 0.5


def test_standin_is_deterministic(seed: int) -> None:
    frames, _ = draw_frames(5, 120, 160, seed)
    a, b = _run_standin(frames), _run_standin(frames)
    for (ia, _), (ib, _) in zip(a, b, strict=True):
        for name in ("boxes", "logits", "masks"):
            assert torch.equal(getattr(ia, name), getattr(ib, name))


def test_unknown_model_spec() -> None:
    for spec in ("yolo", "onnx:", "standin:x", ""):
        with pytest.raises(BenchError, match="unknown --model"):
            load_backend(spec, device=torch.device("cpu"))


def test_rfdetr_backend_is_optional() -> None:
    try:
        import rfdetr  # noqa: F401
    except ImportError:
        with pytest.raises(BenchError, match="rlebench\\[rfdetr\\]"):
            load_backend("rfdetr:/nonexistent.pth", device=torch.device("cpu"))
    else:
        with pytest.raises(BenchError, match="checkpoint not found"):
            load_backend("rfdetr:/nonexistent.pth", device=torch.device("cpu"))


# ------------------------------------------------------------------------------------------------ sample video


def test_sample_video_is_deterministic(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", size=(96, 160), frames=24, seed=3)
    b = make_video(tmp_path / "b.mp4", size=(96, 160), frames=24, seed=3)
    fa, fb = list(open_source(str(a)).frames()), list(open_source(str(b)).frames())
    assert len(fa) == len(fb) == 24
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(fa, fb, strict=True))
    assert fa[0].rgb.shape == (96, 160, 3)
    # Things move: consecutive frames differ somewhere but not everywhere.
    changed = np.mean(
        [(np.abs(x.rgb.astype(int) - y.rgb.astype(int)).max(axis=2) > 30).mean() for x, y in itertools.pairwise(fa)]
    )
    assert 0.001 < changed < 0.5
    assert not list(tmp_path.glob(".tmp-*"))


def test_make_video_rejects_odd_sizes(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="even size"):
        make_video(tmp_path / "x.mp4", size=(15, 16), frames=2)
    assert list(tmp_path.iterdir()) == []


def test_make_video_cli(tmp_path: Path, capsys) -> None:
    from rlebench.cli import main

    out = tmp_path / "clip.mp4"
    assert main(["make-video", "--size", "64x96", "--frames", "5", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    frames = list(open_source(str(out)).frames())
    assert len(frames) == 5 and frames[0].rgb.shape == (64, 96, 3)
    assert main(["make-video", "--size", "big", "--output", str(tmp_path / "x.mp4")]) == 2
    assert "--size expects HxW" in capsys.readouterr().err


@pytest.mark.parametrize("tty", [True, False])
def test_progress_shows_frames_per_second_and_captures(monkeypatch, capsys, tty: bool) -> None:
    import sys

    from capture.progress import CaptureProgress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    with CaptureProgress(10) as bar:
        bar.advance(2, 1)
        bar.advance(2, 1)
    err = capsys.readouterr().err
    if tty:
        assert "captured=2" in err and "4/10" in err and "frame/s" in err
    else:
        assert err == ""
