"""`bench capture` end to end: defaults on the sample video, drawn videos, image folders, bad input,
resume/overwrite and interruption safety. Every captured set must reload and equal what the reference
recomputes from its inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import capture.recorder
from capture.backends.standin import StandInDetector
from cases.caseset import load_case_set
from cases.errors import BenchError
from kernels.reference import postprocess_reference
from rlebench.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated sample videos go to a temporary cache, not the user's."""
    old = os.environ.get("RLEBENCH_CACHE")
    os.environ["RLEBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("RLEBENCH_CACHE", None)
    else:
        os.environ["RLEBENCH_CACHE"] = old


def drawn_video(path: Path, count: int, seed: int, size: tuple[int, int] = (120, 160)) -> Path:
    """Encode frames with 1-3 coloured shapes moving over a smooth background (H.264, near-lossless)."""
    rng = np.random.default_rng(seed)
    height, width = size
    background = cv2.resize(rng.uniform(70, 110, (5, 7, 3)).astype(np.float32), (width, height)).astype(np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for t in range(count):
            frame = background.copy()
            for k in range(1 + t % 3):
                cx = int((0.2 + 0.3 * k) * width + t * width / 9) % width
                cy = int((0.25 + 0.25 * k) * height)
                cv2.ellipse(frame, (cx, cy), (width // (6 + 2 * k), height // 8), 0, 0, 360, (240, 40 * k, 60), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def assert_set_matches_reference(directory: Path, count: int) -> list[list[int]]:
    """The set loads, has count cases, and each expected output equals the reference on its inputs."""
    case_set = load_case_set(directory)
    assert len(case_set) == count == case_set.manifest["count"]
    detections = []
    for case in case_set.cases:
        again = postprocess_reference(case.inputs)
        assert len(again) == len(case.expected) == case.inputs.batch_size
        for got, want in zip(again, case.expected, strict=True):
            np.testing.assert_array_equal(got.xyxy, want.xyxy)
            np.testing.assert_array_equal(got.class_id, want.class_id)
            # same code, same machine, same float32 arithmetic: scores are bit-identical
            np.testing.assert_array_equal(got.confidence, want.confidence)
            assert [m.counts for m in got.masks] == [m.counts for m in want.masks]
            assert [m.size for m in got.masks] == [m.size for m in want.masks]
        detections.append([len(d) for d in case.expected])
    return detections


def bench(*argv: str) -> int:
    return main(["capture", *argv])


# ---------------------------------------------------------------------------------------------- done criterion


def test_default_capture_gives_30_valid_varied_cases(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert bench("--cases-dir", str(out), "--capture-count", "30") == 0
    detections = assert_set_matches_reference(out, 30)
    counts = [n for per_case in detections for n in per_case]
    assert min(counts) > 0 and len(set(counts)) >= 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["model"] == "standin" and manifest["impl"] == "reference"
    assert Path(manifest["source"]).name.startswith("sample_1280x720")
    assert [e["frame_index"] for e in manifest["cases"]] == list(range(30))
    assert manifest["frames_read"] == 30 and manifest["fps"] > 0 and manifest["elapsed"] > 0
    case = load_case_set(out).cases[7]
    prov = case.provenance
    assert prov["frame_index"] == 7 and prov["source"] == manifest["source"] and prov["impl"] == "reference"
    assert prov["backend"] == "standin" and prov["device"] == "cpu" and "time" in prov
    assert {"torch", "numpy", "av"} <= set(prov["versions"])
    assert case.inputs.preprocess[0].original_size == (720, 1280)
    assert case.inputs.masks.shape == (1, 100, 78, 78) and case.inputs.logits.shape == (1, 100, 91)


# --------------------------------------------------------------------------------------------- drawn inputs


@pytest.mark.parametrize(
    ("resize", "batch", "crop"),
    [("stretch", 1, None), ("letterbox", 1, None), ("letterbox", 2, "10,5,150,115"), ("stretch", 3, "0,20,160,100")],
)
def test_capture_from_a_drawn_video(tmp_path: Path, seed: int, resize: str, batch: int, crop: str | None) -> None:
    video = drawn_video(tmp_path / "v.mp4", 20, seed)
    out = tmp_path / "c"
    argv = ["--video_reference", str(video), "--cases-dir", str(out), "--capture-count", "3", "--batch", str(batch)]
    argv += ["--resize", resize, "--start", "1", "--every", "2"] + (["--static-crop", crop] if crop else [])
    assert bench(*argv) == 0
    detections = assert_set_matches_reference(out, 3)
    assert all(n > 0 for per_case in detections for n in per_case)
    frames = [1 + 2 * i for i in range(3 * batch)]
    expected_index = [frames[i * batch] if batch == 1 else frames[i * batch : (i + 1) * batch] for i in range(3)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["frame_index"] for e in manifest["cases"]] == expected_index
    meta = load_case_set(out).cases[0].inputs.preprocess[0]
    assert meta.original_size == (120, 160)
    if crop:
        x0, y0, x1, y1 = (int(v) for v in crop.split(","))
        assert meta.static_crop_offset == (x0, y0) and meta.size_after_preprocessing == (y1 - y0, x1 - x0)
    assert (sum(meta.pad) > 0) == (resize == "letterbox")


def test_video_reference_dash_alias(tmp_path: Path, seed: int) -> None:
    video = drawn_video(tmp_path / "v.mp4", 3, seed)
    assert bench("--video-reference", str(video), "--cases-dir", str(tmp_path / "c"), "--capture-count", "2") == 0
    assert len(load_case_set(tmp_path / "c")) == 2


@pytest.mark.parametrize(("same_shape", "batch"), [("96x128", 2), (None, 2), (None, 1)])
def test_capture_from_an_image_folder(tmp_path: Path, seed: int, same_shape: str | None, batch: int) -> None:
    rng = np.random.default_rng(seed)
    images = tmp_path / "images"
    images.mkdir()
    for i, (h, w) in enumerate([(90, 120), (130, 100), (64, 64), (80, 150)]):
        img = np.full((h, w, 3), rng.integers(80, 120, 3), np.uint8)
        cv2.circle(img, (w // 2, h // 2), min(h, w) // 4, (20, 220, 40), -1)
        cv2.imwrite(str(images / f"{i:03d}.jpg"), img)
    argv = ["--video_reference", str(images), "--cases-dir", str(tmp_path / "c"), "--capture-count", "2"]
    argv += ["--batch", str(batch)] + (["--same-shape", same_shape] if same_shape else [])
    assert bench(*argv) == 0
    detections = assert_set_matches_reference(tmp_path / "c", 2)
    assert all(n >= 1 for per_case in detections for n in per_case)
    case_set = load_case_set(tmp_path / "c")
    sizes = [m.original_size for c in case_set.cases for m in c.inputs.preprocess]
    if same_shape:
        assert set(sizes) == {(96, 128)}
    else:
        assert sizes == [(90, 120), (130, 100), (64, 64), (80, 150)][: 2 * batch]
    assert case_set.manifest["cases"][0].get("frame_name")


# ------------------------------------------------------------------------------------------------ bad input


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("captured ")]
    assert len(err) == 1 and err[0].startswith("bench: error: ")
    return err[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--video_reference", "{tmp}/missing.mp4"], "video not found"),
        (["--video_reference", "{tmp}/notes.mp4"], "cannot open video"),
        (["--model", "yolov8"], "unknown --model"),
        (["--model", "onnx:{tmp}/missing.onnx"], "ONNX model not found"),
        (["--impl", "nope"], "--impl: unknown implementation"),
        (["--impl", "no_such_module:fn"], "--impl: implementation"),
        (["--static-crop", "1,2,3"], "--static-crop expects"),
        (["--same-shape", "10x10"], "--same-shape only applies"),
        (["--overwrite", "--resume"], "exclude each other"),
        (["--threshold", "1.5"], "--threshold"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, capsys, seed: int, extra, message) -> None:
    (tmp_path / "notes.mp4").write_text("not a video")
    video = drawn_video(tmp_path / "v.mp4", 3, seed)
    out = tmp_path / "c"
    argv = ["--video_reference", str(video), "--cases-dir", str(out), "--capture-count", "2"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert bench(*argv) == 2
    assert message in _error_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_cuda_without_gpu(tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert bench("--cases-dir", str(tmp_path / "c"), "--device", "cuda") == 2
    assert "no CUDA device" in _error_line(capsys)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_unwritable_cases_dir(tmp_path: Path, capsys, seed: int, kind: str) -> None:
    video = drawn_video(tmp_path / "v.mp4", 3, seed)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    target = blocker if kind == "file" else blocker / "sub"
    assert bench("--video_reference", str(video), "--cases-dir", str(target), "--capture-count", "1") == 2
    assert "--cases-dir" in _error_line(capsys)
    assert blocker.read_text() == "x"


def test_capture_count_beyond_the_video_keeps_what_was_captured(tmp_path: Path, capsys, seed: int) -> None:
    video = drawn_video(tmp_path / "v.mp4", 5, seed)
    out = tmp_path / "c"
    assert bench("--video_reference", str(video), "--cases-dir", str(out), "--capture-count", "9") == 2
    line = _error_line(capsys)
    assert "ran out of frames" in line and "captured 5 of 9" in line
    assert_set_matches_reference(out, 5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and "ran out of frames" in manifest["note"]


def test_error_exit_code_from_the_console_script(tmp_path: Path) -> None:
    argv = ["capture", "--video_reference", str(tmp_path / "nope.mkv"), "--cases-dir", str(tmp_path / "c")]
    proc = subprocess.run(
        [sys.executable, "-m", "rlebench", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"bench: error: video not found: {tmp_path / 'nope.mkv'}"]


# --------------------------------------------------------------------------------------- overwrite and resume


def test_non_empty_dir_overwrite_and_resume(tmp_path: Path, capsys, seed: int) -> None:
    video = drawn_video(tmp_path / "v.mp4", 10, seed)
    out = tmp_path / "c"
    base = ["--video_reference", str(video), "--cases-dir", str(out)]
    assert bench(*base, "--capture-count", "3") == 0
    before = sorted(p.name for p in out.iterdir())
    assert bench(*base, "--capture-count", "3") == 2
    assert "not empty" in _error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == before

    (out / "README.txt").write_text("my notes")
    assert bench(*base, "--capture-count", "2", "--overwrite") == 0
    assert_set_matches_reference(out, 2)
    assert (out / "README.txt").read_text() == "my notes"  # --overwrite removes only case files

    assert bench(*base, "--capture-count", "5", "--resume") == 0
    assert_set_matches_reference(out, 5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["frame_index"] for e in manifest["cases"]] == [0, 1, 2, 3, 4]
    assert manifest["complete"] is True and manifest["frames_read"] == 5

    other = drawn_video(tmp_path / "w.mp4", 4, seed + 1)
    assert bench("--video_reference", str(other), "--cases-dir", str(out), "--capture-count", "6", "--resume") == 2
    assert "--resume" in _error_line(capsys)
    assert_set_matches_reference(out, 5)


def test_resume_adopts_a_case_whose_manifest_update_was_lost(tmp_path: Path, seed: int) -> None:
    video = drawn_video(tmp_path / "v.mp4", 6, seed)
    out = tmp_path / "c"
    base = ["--video_reference", str(video), "--cases-dir", str(out)]
    assert bench(*base, "--capture-count", "3") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["cases"] = manifest["cases"][:2]  # as if killed between the case write and the manifest write
    manifest["count"] = 2
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert bench(*base, "--capture-count", "4", "--resume") == 0
    assert_set_matches_reference(out, 4)
    indices = [e["frame_index"] for e in json.loads((out / "manifest.json").read_text())["cases"]]
    assert indices == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------ interruption


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interruption_leaves_a_valid_set(tmp_path: Path, seed: int, monkeypatch, error: type) -> None:
    video = drawn_video(tmp_path / "v.mp4", 10, seed)
    real = StandInDetector.infer
    calls = {"n": 0}

    def failing(self, images, device):
        calls["n"] += 1
        if calls["n"] == 4:
            raise error("stop")
        return real(self, images, device)

    monkeypatch.setattr(StandInDetector, "infer", failing)
    out = tmp_path / "c"
    if error is KeyboardInterrupt:  # the dispatcher turns Ctrl-C into exit code 130
        assert bench("--video_reference", str(video), "--cases-dir", str(out), "--capture-count", "8") == 130
    else:
        with pytest.raises(error):
            bench("--video_reference", str(video), "--cases-dir", str(out), "--capture-count", "8")
    assert_set_matches_reference(out, 3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and "after 3 cases" in manifest["note"]


def test_sigint_during_a_case_write_is_deferred_until_the_manifest_is_written(
    tmp_path: Path, seed: int, monkeypatch
) -> None:
    video = drawn_video(tmp_path / "v.mp4", 6, seed)
    real = capture.recorder.write_case
    written = []

    def interrupted(path, inputs, expected, provenance):
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the second case is being written
        real(path, inputs, expected, provenance)
        written.append(path)

    monkeypatch.setattr(capture.recorder, "write_case", interrupted)
    out = tmp_path / "c"
    assert bench("--video_reference", str(video), "--cases-dir", str(out), "--capture-count", "5") == 130
    assert len(written) == 2
    assert_set_matches_reference(out, 2)  # the interrupted case and its manifest entry both made it


def test_pipeline_error_types_are_bench_errors(tmp_path: Path) -> None:
    from capture.pipeline import CaptureConfig, run

    with pytest.raises(BenchError, match="--capture-count"):
        run(CaptureConfig(cases_dir=tmp_path / "c", capture_count=0))
    with pytest.raises(BenchError, match="--batch"):
        run(CaptureConfig(cases_dir=tmp_path / "c", batch=0))
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------------------------- other sources


def test_capture_from_an_http_stream(tmp_path: Path, seed: int) -> None:
    """A URL goes through FFmpeg's network input (here a local HTTP server; rtsp:// takes the same path)."""
    import functools
    import http.server
    import threading

    from capture.samplevideo import make_video

    served = tmp_path / "served"
    make_video(served / "clip.mp4", size=(96, 128), frames=20, seed=seed % 100)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
        out = tmp_path / "c"
        assert bench("--video_reference", url, "--cases-dir", str(out), "--capture-count", "4", "--every", "3") == 0
    finally:
        server.shutdown()
        thread.join()
    assert_set_matches_reference(out, 4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == url and [e["frame_index"] for e in manifest["cases"]] == [0, 3, 6, 9]


def test_sample_video_1080p_spec(tmp_path: Path) -> None:
    out = tmp_path / "c"
    argv = ["--video_reference", "sample:1080p", "--cases-dir", str(out), "--capture-count", "2", "--start", "100"]
    assert bench(*argv) == 0
    case_set = load_case_set(out)
    assert case_set.cases[0].inputs.preprocess[0].original_size == (1080, 1920)
    assert Path(case_set.manifest["source"]).name.startswith("sample_1920x1080")
    assert [e["frame_index"] for e in case_set.manifest["cases"]] == [100, 101]
    assert all(len(d) > 0 for c in case_set.cases for d in c.expected)


def test_sigterm_of_a_running_capture_leaves_a_valid_set(tmp_path: Path, seed: int) -> None:
    """kill (SIGTERM) a real `bench capture` process mid-run: exit 130, only valid cases, accurate manifest."""
    import time

    video = drawn_video(tmp_path / "v.mp4", 240, seed)
    out = tmp_path / "c"
    argv = ["capture", "--video_reference", str(video), "--cases-dir", str(out), "--capture-count", "240"]
    proc = subprocess.Popen([sys.executable, "-m", "rlebench", *argv], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            manifest_path = out / "manifest.json"
            if manifest_path.exists() and json.loads(manifest_path.read_text()).get("count", 0) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "capture finished before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert 3 <= manifest["count"] < 240 and manifest["complete"] is False
    assert_set_matches_reference(out, manifest["count"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_failures_on_the_first_frame_leave_no_directory(tmp_path: Path, capsys, seed: int) -> None:
    video = drawn_video(tmp_path / "v.mp4", 4, seed)
    out = tmp_path / "c"
    # --start past the end: nothing to capture at all.
    assert bench("--video_reference", str(video), "--cases-dir", str(out), "--start", "50") == 2
    assert "captured 0 of 30" in _error_line(capsys)
    assert not out.exists()
    # A codec FFmpeg cannot decode, found only when decoding starts.
    with av.open(str(tmp_path / "m.avi"), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    bogus = tmp_path / "bogus.avi"
    bogus.write_bytes((tmp_path / "m.avi").read_bytes().replace(b"FMP4", b"QQQQ"))
    assert bench("--video_reference", str(bogus), "--cases-dir", str(out)) == 2
    assert "codec" in _error_line(capsys)
    assert not out.exists()
