"""Frame sampling rules (plan_times, clip_bounds, FramePicker) and the card's frames block, without video files."""

from __future__ import annotations

import pytest
from PIL import Image

from flamingo_eval.benchmarks.video import frame_sampling
from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError
from flamingo_eval.types import FrameSampling, VideoRef, media_name
from flamingo_eval.video.sampling import FramePicker, IndexPicker, clip_bounds, linspace_indices, plan_times


def test_count_mode_takes_the_centres_of_equal_bins() -> None:
    assert plan_times(FrameSampling.uniform(4), 0.0, 2.0) == [0.25, 0.75, 1.25, 1.75]
    assert plan_times(FrameSampling.uniform(1), 3.0, 5.0) == [4.0]  # one frame = the middle of the segment


def test_fps_mode_steps_from_the_start_and_thins_to_max() -> None:
    assert plan_times(FrameSampling.at_fps(2, 30), 1.0, 3.0) == [1.0, 1.5, 2.0, 2.5]
    assert plan_times(FrameSampling.at_fps(3, 30), 0.0, 1.0) == pytest.approx([0.0, 1 / 3, 2 / 3])
    thinned = plan_times(FrameSampling.at_fps(3, 30), 0.0, 20.0)  # 60 timestamps -> 30, evenly spread
    assert len(thinned) == 30 and thinned == sorted(thinned)
    assert thinned[0] == pytest.approx(1 / 3) and thinned[-1] == pytest.approx(59 / 3)
    assert plan_times(FrameSampling.at_fps(1, 8), 0.0, 0.2) == [0.0]  # a segment shorter than one step: one


def test_frame_sampling_validates_its_mode() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        FrameSampling(count=8, fps=1.0, max=8)
    with pytest.raises(ValueError, match="max"):
        FrameSampling(count=None, fps=3.0)
    with pytest.raises(ValueError, match=">= 1"):
        FrameSampling(count=0)
    assert FrameSampling().describe() == "count=8" and FrameSampling.at_fps(3, 30).describe() == "fps=3,max=30"


def test_clip_bounds_clamp_the_end_and_refuse_a_segment_past_the_end() -> None:
    assert clip_bounds(10.0, None, None, "v.mp4") == (0.0, 10.0)
    assert clip_bounds(10.0, 2.0, 12.5, "v.mp4") == (2.0, 10.0)  # annotations often overshoot: clamped
    with pytest.raises(UserError, match=r"v\.mp4: segment 11-12 s starts at or past the end of the clip \(10\.000 s\)"):
        clip_bounds(10.0, 11.0, 12.0, "v.mp4")
    with pytest.raises(UserError, match="not after its start"):
        clip_bounds(10.0, 4.0, 4.0, "v.mp4")
    with pytest.raises(UserError, match="negative"):
        clip_bounds(10.0, -1.0, 4.0, "v.mp4")


def _feed(picker: FramePicker, times: list[float]) -> int:
    """Offer frames whose 'image' encodes their index; returns how many were offered before stop."""
    for i, t in enumerate(times):
        if not picker.offer(t, lambda i=i: Image.new("L", (1, 1), i)):
            return i + 1
    return len(times)


def _indices(frames: tuple[Image.Image, ...]) -> list[int]:
    return [int(f.getpixel((0, 0))) for f in frames]


def test_picker_takes_the_frame_shown_at_each_time_and_stops_early() -> None:
    times = [i / 10 for i in range(100)]  # 10 fps, 10 s
    picker = FramePicker(plan_times(FrameSampling.uniform(4), 0.0, 2.0), 0.0, 2.0)  # 0.25 0.75 1.25 1.75
    offered = _feed(picker, times)
    got = picker.finish("v.mp4")
    assert _indices(got.frames) == [2, 7, 12, 17] and not got.short
    assert offered == 19  # stopped at the first frame after the last timestamp, not at the end of the clip


def test_picker_is_correct_for_variable_frame_rates() -> None:
    times = [0.0, 0.1, 0.5, 0.55, 1.5, 1.6, 3.0, 3.9]  # bursts and gaps: index is not proportional to time
    picker = FramePicker(plan_times(FrameSampling.at_fps(1, 8), 0.0, 4.0), 0.0, 4.0)  # 0, 1, 2, 3 s
    _feed(picker, times)
    assert _indices(picker.finish("v.mp4").frames) == [0, 3, 5, 6]


def test_a_clip_shorter_than_requested_repeats_its_last_frame() -> None:
    picker = FramePicker(plan_times(FrameSampling.uniform(8), 0.0, 0.3), 0.0, 0.3)
    _feed(picker, [0.0, 0.1, 0.2])
    got = picker.finish("v.mp4")
    assert _indices(got.frames) == [0, 1, 2, 2, 2, 2, 2, 2] and got.short and got.seen == 3


def test_segment_frames_and_the_frame_before_the_segment() -> None:
    picker = FramePicker(plan_times(FrameSampling.uniform(2), 1.02, 1.5), 1.02, 1.5)  # 1.14, 1.38
    _feed(picker, [i / 10 for i in range(30)])
    assert _indices(picker.finish("v.mp4").frames) == [11, 13]
    between = FramePicker(plan_times(FrameSampling.uniform(2), 1.01, 1.05), 1.01, 1.05)  # between 1.0 and 1.1
    _feed(between, [i / 10 for i in range(30)])
    got = between.finish("v.mp4")
    assert _indices(got.frames) == [10, 10] and got.short


def test_no_frame_is_one_clear_error_and_seek_hints_wait_until_the_clip_is_not_short() -> None:
    with pytest.raises(UserError, match=r"video v\.mp4 has no decodable frame"):
        FramePicker([0.5], 0.0, 1.0).finish("v.mp4")
    picker = FramePicker(plan_times(FrameSampling.uniform(2), 0.0, 10.0), 0.0, 10.0)  # 2.5, 7.5
    assert picker.offer(0.0, lambda: Image.new("L", (1, 1))) and picker.seek_hint() is None  # might be short
    for t in (0.1, 0.2):
        picker.offer(t, lambda: Image.new("L", (1, 1)))
    assert picker.seek_hint() == 2.5  # more frames than requested seen: skipping ahead is safe


def test_card_frames_block_is_validated_at_start_up() -> None:
    from flamingo_eval.config import BenchmarkCard, FramesCfg

    cfg = compose_config("easyvideo", "tiny", ["benchmarks.frames.count=null", "benchmarks.frames.fps=3",
                                               "benchmarks.frames.max=30"])
    assert frame_sampling(cfg.benchmarks) == FrameSampling.at_fps(3, 30)  # overridable on the command line
    with pytest.raises(UserError, match="exactly one"):
        compose_config("easyvideo", "tiny", ["benchmarks.frames.fps=3"])  # checked at start-up
    assert frame_sampling(BenchmarkCard(id="v", frames=FramesCfg(count=8))) == FrameSampling.uniform(8)
    assert frame_sampling(BenchmarkCard(id="v")) == FrameSampling()  # no frames block: count 8 (images: unused)
    for frames, msg in ((FramesCfg(max=30), "frames.max needs"), (FramesCfg(count=4, max=30), "frames.max goes"),
                        (FramesCfg(count=0), ">= 1"), (FramesCfg(count=None, fps=0.0, max=4), "fps must be > 0")):
        with pytest.raises(UserError, match=msg):
            frame_sampling(BenchmarkCard(id="v", frames=frames))


def test_media_names_are_machine_independent() -> None:
    a = VideoRef("/data/a/clip.mp4", start=1.5, end=4.0, frames=FrameSampling.uniform(8))
    b = VideoRef("/mnt/b/clip.mp4", start=1.5, end=4.0, frames=FrameSampling.uniform(8))
    assert media_name(a) == media_name(b) == "clip.mp4@1.5-4.0#count=8"
    assert media_name(VideoRef("/x/clip.mp4", frames=FrameSampling.uniform(4))) == "clip.mp4#count=4"
    assert media_name("/data/img/COCO_1.jpg") == "COCO_1.jpg"


def test_a_clip_promised_long_but_short_asks_for_a_second_pass() -> None:
    picker = FramePicker(plan_times(FrameSampling.uniform(8), 0.0, 0.3), 0.0, 0.3, expect_long=True)
    _feed(picker, [0.0, 0.1, 0.2])
    assert picker.needs_first_frames()  # its first frames were not kept: decode again keeping them
    long = FramePicker(plan_times(FrameSampling.uniform(2), 0.0, 2.0), 0.0, 2.0, expect_long=True)
    assert long.seek_hint() == 0.5  # nothing to keep: skipping ahead is safe from the start
    _feed(long, [i / 10 for i in range(20)])
    assert not long.needs_first_frames() and _indices(long.finish("v.mp4").frames) == [5, 15]


def test_linspace_indices_truncate_as_numpy_dtype_int() -> None:
    # np.linspace(0, N-1, n, dtype=int) by hand: 0 + i * (N-1)/(n-1), truncated toward zero, ends included.
    assert linspace_indices(100, 8) == [0, 14, 28, 42, 56, 70, 84, 99]  # 99/7 = 14.142...: 14, 28.28, 42.43, ...
    assert linspace_indices(10, 4) == [0, 3, 6, 9]
    assert linspace_indices(11, 4) == [0, 3, 6, 10]  # 10/3 = 3.33, 6.67 -> 3, 6 (rounding would give 3, 7)
    assert linspace_indices(3, 8) == [0, 0, 0, 0, 1, 1, 1, 2]  # 2/7 steps: 0 .29 .57 .86 1.14 1.43 1.71 2
    assert linspace_indices(50, 1) == [0]  # numpy gives the start alone


def test_index_picker_counts_then_takes_the_linspace_frames() -> None:
    times = [i / 10 for i in range(100)]  # 10 fps, 10 s
    counter = IndexPicker(2.0, 6.0, None)  # the segment [2, 6) holds frames 20..59: 40 frames
    assert _feed(counter, times) == 61  # stopped at the first frame past the segment (6.0 s)
    assert counter.seen == 40
    picker = IndexPicker(2.0, 6.0, linspace_indices(counter.seen, 4))  # 39/3 = 13: ordinals 0, 13, 26, 39
    assert _feed(picker, times) == 60  # stops right after the last index (frame 59)
    got = picker.finish("v.mp4")
    assert _indices(got.frames) == [20, 33, 46, 59] and not got.short
    # bin centres on the same segment: 2.5, 3.5, 4.5, 5.5 s -> frames 25, 35, 45, 55
    bins = FramePicker(plan_times(FrameSampling.uniform(4), 2.0, 6.0), 2.0, 6.0)
    _feed(bins, times)
    assert _indices(bins.finish("v.mp4").frames) == [25, 35, 45, 55]


def test_index_picker_short_and_variable_frame_rate_clips() -> None:
    short = IndexPicker(0.0, 1.0, linspace_indices(3, 8))
    _feed(short, [0.0, 0.1, 0.2])
    got = short.finish("v.mp4")
    assert _indices(got.frames) == [0, 0, 0, 0, 1, 1, 1, 2] and got.short and got.seen == 3
    vfr = [0.0, 0.1, 0.5, 0.55, 1.5, 1.6, 3.0, 3.9]  # by index, not by time: ordinals 0, 2, 4, 7 (7/3: 0 2 4 7)
    picker = IndexPicker(0.0, 4.0, linspace_indices(len(vfr), 4))
    _feed(picker, vfr)
    assert _indices(picker.finish("v.mp4").frames) == [0, 2, 4, 7]
    with pytest.raises(UserError, match="no decodable frame"):
        IndexPicker(0.0, 1.0, [0]).finish("v.mp4")


def test_frame_rule_is_validated_recorded_and_keyed() -> None:
    from flamingo_eval.config import BenchmarkCard, FramesCfg, to_dict

    cfg = compose_config("easyvideo", "tiny", ["benchmarks.frames.rule=linspace"])
    assert frame_sampling(cfg.benchmarks) == FrameSampling(count=8, rule="linspace")
    assert to_dict(cfg)["benchmarks"]["frames"]["rule"] == "linspace"  # the run record's config holds it
    assert to_dict(compose_config("easyvideo", "tiny", []))["benchmarks"]["frames"]["rule"] == "bin_centre"
    with pytest.raises(UserError, match="frames.rule 'middle' is not a frame rule; use one of bin_centre, linspace"):
        compose_config("easyvideo", "tiny", ["benchmarks.frames.rule=middle"])  # checked at start-up
    with pytest.raises(UserError, match="spreads frames.count"):
        frame_sampling(BenchmarkCard(id="v", frames=FramesCfg(count=None, fps=3.0, max=30, rule="linspace")))
    # the default rule keeps the earlier cache keys and prompt hashes; linspace is keyed apart
    assert FrameSampling(count=8).describe() == "count=8"
    assert FrameSampling(count=8, rule="linspace").describe() == "count=8,linspace"
