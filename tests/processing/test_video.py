"""Video sampling: reference-exact frame choice from packet timestamps, sparse decoding, edge cases, errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image
from vl3_media import (
    FIXTURES,
    MEDIA_FIXTURES,
    decode_all,
    frame_pattern,
    make_audio_only,
    make_frame_folder,
    make_gif,
    make_video,
    make_zero_frame_video,
    reference_sampling,
)

from videollama3.errors import MediaError, MediaNotFoundError
from videollama3.processing import TqdmProgress, VideoSampling, load_video, plan_video
from videollama3.processing.video import fps_filter_select, index_sampling, uniform_indices


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_media")
    return {
        "plain": make_video(root / "plain.mp4", num_frames=53, fps=10),
        # B-frames and short GOPs: reordering, and keyframes close enough that sparse frames are seeked to.
        "bframes": make_video(
            root / "bframes.mp4",
            num_frames=150,
            fps=25,
            options={"preset": "medium", "bf": "3", "g": "10", "sc_threshold": "0"},
        ),
        "open_gop": make_video(
            root / "open_gop.mp4",
            num_frames=120,
            fps=25,
            options={"preset": "medium", "x264-params": "keyint=20:min-keyint=20:open-gop=1:bframes=3:scenecut=0"},
        ),
        "root": root,
    }


# -- pure selection rules ------------------------------------------------------------------------------


def test_fps_filter_takes_the_last_frame_before_each_output_period():
    times = [Fraction(i, 10) for i in range(60)]  # 6 s at 10 fps
    assert fps_filter_select(times, Fraction(6), Fraction(1)) == [9, 19, 29, 39, 49, 59]
    assert fps_filter_select(times, Fraction(6), Fraction(2)) == [4, 9, 14, 19, 24, 29, 34, 39, 44, 49, 54, 59]


def test_fps_filter_repeats_frames_above_the_input_rate_and_respects_the_end():
    times = [Fraction(i, 2) for i in range(4)]  # 2 fps, frames at 0, 0.5, 1, 1.5; ends at 2
    assert fps_filter_select(times, Fraction(2), Fraction(4)) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert fps_filter_select(times, Fraction(1, 2), Fraction(1)) == []  # the stream ended before 1 s
    assert fps_filter_select([Fraction(3, 10)], Fraction(13, 10), Fraction(1)) == [0]  # starts at slot 0


def test_uniform_indices_is_numpy_linspace_cast_to_int():
    assert uniform_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert uniform_indices(12, 4).tolist() == [0, 3, 7, 11]
    assert uniform_indices(600, 180).tolist() == np.linspace(0, 599, 180, dtype=int).tolist()


def _reference_index_sampling(num_frames, video_fps, fps, max_frames, s=None, e=None):
    """The official ``load_video_from_ids`` + ``frame_sample``, transcribed."""
    if s is not None and e is not None:
        s, e = max(s, 0.0), max(e, 0.0)
        if s == e:
            e = s + 1
    f_start = 0 if s is None else max(int(s * video_fps) - 1, 0)
    f_end = num_frames - 1 if e is None else min(int(e * video_fps) - 1, num_frames - 1)
    frame_indices = list(range(f_start, f_end + 1))
    duration = len(frame_indices)
    if duration / video_fps < max_frames:
        segment_len = min(video_fps // fps, duration)
        sampled = np.arange(segment_len // 2, duration, segment_len, dtype=int)
    else:
        sampled = np.linspace(0, duration - 1, max_frames, dtype=int) if duration > max_frames else np.arange(duration)
    indices = [frame_indices[i] for i in sampled]
    return indices, [i / video_fps for i in indices]


@pytest.mark.parametrize(
    ("num_frames", "video_fps", "fps", "max_frames", "s", "e"),
    [
        (100, 25, 1, 180, None, None),  # a GIF
        (100, 25, 2, 3, None, None),  # uniform: more seconds than max_frames
        (14, 3, 1, 180, None, None),  # a folder of frames
        (300, 30, 1, 180, 2.2, 2.9),  # a clip under 1 s
        (300, 29.97, 2, 180, 4.0, 4.5),
        (300, 30, 1, 180, 3.0, 3.0),  # start == end: one second
    ],
)
def test_index_sampling_matches_the_reference(num_frames, video_fps, fps, max_frames, s, e):
    ours = index_sampling(num_frames, video_fps, VideoSampling(fps, max_frames, s, e))
    assert ours == _reference_index_sampling(num_frames, video_fps, fps, max_frames, s, e)


# -- fps-filter path against a full decode ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "bframes", "open_gop"])
@pytest.mark.parametrize(("fps", "max_frames"), [(1, 180), (2, 4), (0.4, 180), (13, 180), (30, 7)])
def test_frames_and_timestamps_match_a_full_decode(media, kind, fps, max_frames):
    expected_frames, expected_times = reference_sampling(media[kind], fps, max_frames)
    plan = plan_video(media[kind], VideoSampling(fps, max_frames))
    frames = plan.read()
    assert plan.timestamps == pytest.approx(expected_times, abs=1e-9)
    assert len(frames) == len(expected_frames)
    for got, want in zip(frames, expected_frames):
        np.testing.assert_array_equal(got, want)


def test_sparse_frames_decode_only_the_needed_packets(media):
    plan = plan_video(media["bframes"], VideoSampling(fps=0.5, max_frames=180))  # 3 frames of 150
    runs = plan.source.runs(sorted(set(plan.keys)))
    decoded = sum(r.end - r.start + 1 for r in runs)
    assert len(runs) == 3  # one seek per frame: they are 50 frames apart, keyframes every 10
    assert decoded < 60
    calls = []
    frames = plan.read(progress=lambda done, total: calls.append((done, total)))
    assert len(frames) == 3 and calls[-1] == (decoded, decoded)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.parametrize("kind", ["bframes", "open_gop"])
def test_unwanted_non_reference_pictures_are_not_decoded(media, kind, monkeypatch):
    from videollama3.processing import video_decoding

    plan = plan_video(media[kind], VideoSampling(fps=2, max_frames=180))  # every 12.5th frame
    source = plan.source
    disposable = [i for i, d in enumerate(source.packet_disposable) if d]
    assert disposable  # x264 with B-frames: most B-frames are referenced by nothing
    assert not any(source.packet_key[i] for i in disposable)
    sent = []
    decode_packet = video_decoding._decode_packet
    monkeypatch.setattr(
        video_decoding, "_decode_packet", lambda codec, packet: sent.append(packet) or decode_packet(codec, packet)
    )
    frames = plan.read()
    wanted = set(plan.keys)
    sent_pts = {p.pts for p in sent if p is not None}
    skipped = {source.packet_pts[i] for i in disposable} - wanted
    assert skipped and not (skipped & sent_pts)
    expected_frames, _ = reference_sampling(media[kind], 2, 180)  # and the frames are still bit-exact
    for got, want in zip(frames, expected_frames, strict=True):
        np.testing.assert_array_equal(got, want)


def test_streams_without_b_frames_have_no_disposable_pictures(media):
    assert not any(plan_video(media["plain"], VideoSampling()).source.packet_disposable)


@pytest.mark.parametrize("kind", ["bframes", "open_gop"])
@pytest.mark.parametrize("parts", [2, 3, 8])
def test_parallel_frame_streams_give_every_frame_once_bit_exact(media, kind, parts):
    plan = plan_video(media[kind], VideoSampling(fps=13, max_frames=180))
    expected = plan.read()
    streams = plan.frame_streams(parts=parts)
    assert 1 < len(streams) <= parts  # keyframes every 10 / 20 frames: the video splits
    got: dict[int, np.ndarray] = {}
    for stream in streams:
        positions = []
        for k, frame in stream:
            assert k not in got
            got[k] = frame
            positions.append(k)
        assert positions == sorted(positions)  # in order within a stream
    assert sorted(got) == list(range(len(expected)))
    for k, frame in got.items():
        np.testing.assert_array_equal(frame, expected[k])


def test_parallel_streams_share_no_packet_and_report_summed_progress(media):
    plan = plan_video(media["bframes"], VideoSampling(fps=25, max_frames=180))  # every frame
    source, keys = plan.source, sorted(set(plan.keys))
    groups = source.partition(keys, 3)
    assert len(groups) == 3 and sum(groups, []) == keys
    spans = [[r for r in source.runs(g)] for g in groups]
    for before, after in zip(spans, spans[1:]):
        assert max(r.end for r in before) < min(r.start for r in after)  # no packet decoded twice
    sizes = [sum(r.end - r.start + 1 for r in runs) for runs in spans]
    assert max(sizes) - min(sizes) <= 20  # balanced to a GOP or two (keyframes every 10 packets)
    calls = []
    for stream in plan.frame_streams(lambda done, total: calls.append((done, total)), parts=3):
        list(stream)
    assert calls[-1] == (sum(sizes), sum(sizes))
    # A video whose frames all hang on one keyframe does not split.
    plain = plan_video(media["plain"], VideoSampling(fps=2, max_frames=180))
    assert len(plain.frame_streams(parts=4)) == 1


def test_processor_output_does_not_depend_on_the_decode_workers(media, monkeypatch):
    from parity_fixtures import FIXTURE_MODEL
    from videollama3.processing import VideoLLaMA3Processor

    processor = VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL)
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": {"video_path": str(media["open_gop"]), "fps": 10, "max_frames": 180}},
                {"type": "text", "text": "What happens?"},
            ],
        }
    ]
    outputs = []
    for workers in ("1", "3"):
        monkeypatch.setenv("VIDEOLLAMA3_DECODE_WORKERS", workers)
        outputs.append(processor(conversation=conversation, add_generation_prompt=True))
    assert torch.equal(outputs[0]["pixel_values"], outputs[1]["pixel_values"])
    assert torch.equal(outputs[0]["input_ids"], outputs[1]["input_ids"])


def test_frames_are_resized_one_by_one_and_yielded_in_order(media):
    plan = plan_video(media["plain"], VideoSampling(fps=2, max_frames=180))
    seen = []
    for k, frame in plan.frames(size=(28, 56)):
        seen.append(k)
        assert frame.shape == (28, 56, 3) and frame.dtype == np.uint8
    assert seen == list(range(len(plan)))
    expected, _ = reference_sampling(media["plain"], 2, 180)
    resized = np.asarray(Image.fromarray(expected[3]).resize((56, 28), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(plan.read(size=(28, 56))[3], resized)


def test_fixture_videos_sample_as_the_reference_prompts_say():
    plan = plan_video(FIXTURES / "media" / "video_moving.mp4", VideoSampling(2, 4))
    assert [round(t, 1) for t in plan.timestamps] == [0.0, 1.5, 3.5, 5.5]
    plan = plan_video(FIXTURES / "media" / "video_moving.mp4", VideoSampling(1, 180, 1.5, 4.5))
    assert plan.timestamps == [1.5, 2.5, 3.5]
    plan = plan_video(FIXTURES / "media" / "video_long.mp4", VideoSampling(1, 180))
    assert len(plan) == 20 and (plan.height, plan.width) == (96, 160)


# -- trimming ------------------------------------------------------------------------------------------


def test_trim_starts_the_timeline_at_start_time(media):
    _, frames, _, _ = decode_all(media["plain"])  # 53 frames at 10 fps
    plan = plan_video(media["plain"], VideoSampling(1, 180, start_time=1.5, end_time=4.5))
    assert plan.timestamps == [1.5, 2.5, 3.5]
    got = plan.read()
    for frame, index in zip(got, [24, 34, 44]):  # last frame before 1.5 + k + 1 s
        np.testing.assert_array_equal(frame, frames[index])


def test_trim_with_start_only_runs_to_the_end(media):
    plan = plan_video(media["plain"], VideoSampling(1, 180, start_time=2.0))
    assert plan.timestamps == [2.0, 3.0, 4.0]  # frames 2.0 .. 5.2 s: 3 full seconds


def test_clips_under_one_second_are_sampled_by_frame_index(media):
    plan = plan_video(media["plain"], VideoSampling(1, 180, start_time=2.05, end_time=2.6))
    # frames int(2.05 * 10) - 1 = 19 .. int(2.6 * 10) - 1 = 25; segment = min(10 // 1, 7) = 7 -> index 3
    assert plan.timestamps == [2.2]
    _, frames, _, _ = decode_all(media["plain"])
    np.testing.assert_array_equal(plan.read()[0], frames[22])


def test_a_video_shorter_than_one_period_gives_its_middle_frame(tmp_path):
    path = make_video(tmp_path / "short.mp4", num_frames=5, fps=10)  # 0.5 s at 1 fps: ffmpeg outputs nothing
    plan = plan_video(path, VideoSampling(1, 180))
    assert len(plan) == 1 and plan.timestamps == [0.2]


# -- GIFs, folders of frames, lists of frames --------------------------------------------------------------


def test_gif_is_sampled_at_25_fps(tmp_path):
    path = make_gif(tmp_path / "anim.gif", num_frames=60)
    plan = plan_video(path, VideoSampling(1, 180))
    assert plan.timestamps == [12 / 25, 37 / 25]  # segments of 25 frames, middle of each
    frames = plan.read()
    with Image.open(path) as gif:
        gif.seek(37)
        np.testing.assert_array_equal(frames[1], np.asarray(gif.convert("RGB")))


def test_folder_of_frames_is_sampled_at_3_fps(tmp_path):
    folder = make_frame_folder(tmp_path / "frames", num_frames=12)
    (folder / "notes.txt").write_text("not a frame")
    plan = plan_video(folder, VideoSampling(1, 180))
    assert plan.timestamps == [1 / 3, 4 / 3, 7 / 3, 10 / 3]  # indices 1, 4, 7, 10
    np.testing.assert_array_equal(plan.read()[2], frame_pattern(7, 30, 40))


def test_list_of_frames_with_timestamps():
    frames = [frame_pattern(i, 20, 30) for i in range(3)]
    # A PIL image, an (H, W, 3) array and a channels-first (3, H, W) array.
    plan = plan_video([Image.fromarray(frames[0]), frames[1], frames[2].transpose(2, 0, 1)], timestamps=[0, 0.5, 1])
    assert plan.timestamps == [0.0, 0.5, 1.0] and (plan.height, plan.width) == (20, 30)
    for got, want in zip(plan.read(), frames):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(MediaError, match="2 timestamps"):
        plan_video(frames, timestamps=[0, 1])


def test_load_video_convenience(media):
    frames, timestamps = load_video(media["plain"], fps=1, max_frames=2, size=(28, 28))
    assert timestamps == [0.0, 4.0] and [f.shape for f in frames] == [(28, 28, 3)] * 2


def test_rotation_metadata_is_applied_as_ffmpeg_does():
    # Stored files (tests/fixtures/media/README.md): older PyAV cannot write the display matrix.
    upright = MEDIA_FIXTURES / "upright.mp4"
    rotated = MEDIA_FIXTURES / "rotated_cw90.mp4"  # displayed turned clockwise
    plan = plan_video(rotated, VideoSampling(1, 180))
    assert (plan.height, plan.width) == (64, 48)
    np.testing.assert_array_equal(plan.read()[0], np.rot90(plan_video(upright).read()[0], k=-1))


def test_tqdm_progress_draws_and_closes(media, capsys):
    bar = TqdmProgress("decoding", disable=True)
    plan_video(media["plain"], VideoSampling(1, 180)).read(progress=bar)
    assert bar._bar is None


# -- errors --------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(MediaNotFoundError, match="missing.mp4"):
        plan_video(tmp_path / "missing.mp4")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="empty file"):
        plan_video(tmp_path / "empty.mp4")


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 10)
    with pytest.raises(MediaError, match="notes.mp4: not a readable video"):
        plan_video(tmp_path / "notes.mp4")


def test_truncated_mp4(media, tmp_path):
    data = media["plain"].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov (at the end) is lost
    with pytest.raises(MediaError, match="truncated.mp4"):
        plan_video(tmp_path / "truncated.mp4")


def test_audio_only_file(tmp_path):
    with pytest.raises(MediaError, match="no video stream"):
        plan_video(make_audio_only(tmp_path / "audio.mp4"))


def test_zero_frame_video(tmp_path):
    with pytest.raises(MediaError, match="no frames"):
        plan_video(make_zero_frame_video(tmp_path / "empty_track.mkv"))


def test_start_time_past_the_end(media):
    with pytest.raises(MediaError, match="past the end"):
        plan_video(media["plain"], VideoSampling(1, 180, start_time=60.0))


def test_start_time_after_end_time(media):
    with pytest.raises(MediaError, match="after end_time"):
        plan_video(media["plain"], VideoSampling(1, 180, start_time=3.0, end_time=2.0))


def test_end_time_not_after_the_start(media):
    with pytest.raises(MediaError, match="end_time must be > 0"):
        plan_video(media["plain"], VideoSampling(1, 180, end_time=0))


@pytest.mark.parametrize("fps", [0, -1, float("nan"), "1"])
def test_bad_fps(media, fps):
    with pytest.raises(MediaError, match="fps"):
        plan_video(media["plain"], VideoSampling(fps, 180))


@pytest.mark.parametrize("max_frames", [0, -3, 2.5])
def test_bad_max_frames(media, max_frames):
    with pytest.raises(MediaError, match="max_frames"):
        plan_video(media["plain"], VideoSampling(1, max_frames))
