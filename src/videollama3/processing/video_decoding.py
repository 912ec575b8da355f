"""Frame sources: decoding only the frames a :class:`~.video.VideoPlan` selected, by key.

- :class:`StreamSource`: a video file read with PyAV. Opening it demuxes the stream once (packet
  timestamps, keyframes; only the first frame is decoded). Decoding then goes run by run, each run
  starting at the keyframe before its frames (seeking when packets can be skipped), and skips H.264
  pictures that no other picture references unless they are wanted. :meth:`StreamSource.partition`
  splits the wanted frames at keyframes into groups that separate decoders can decode in parallel.
- :class:`GifSource` (25 fps), :class:`FolderSource` (frame images, 3 fps), :class:`ListSource` (frames
  in memory): sampled by frame index.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import MediaError
from .image import ImageReader, open_image_file
from .parallel import decoder_threads

if TYPE_CHECKING:
    import av

GIF_FPS = 25
FOLDER_FPS = 3
# Split decoding into separately seeked runs only when at least this many packets can be skipped: a
# split costs a decoder drain and a seek, worth a few frames of decoding.
MIN_SKIPPED_PACKETS = 16
AV_TIME_BASE = 1_000_000  # ffmpeg's microseconds

# progress(done, total), in decoded packets (streams) or frames (GIFs, folders).
ProgressCallback = Callable[[int, int], None]


class FrameSource:
    """Decodes frames identified by keys."""

    path: Any
    num_frames: int
    video_fps: float

    def key_of_index(self, index: int):
        return index

    def frame_size(self, index: int) -> tuple[int, int]:
        raise NotImplementedError

    def decode(
        self, keys: list, progress: ProgressCallback | None, threads: int | None = None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield (key, (H, W, 3) uint8 RGB) for each key, in the given (ascending) order.

        ``threads``: decoder threads (None: the default, :func:`decoder_threads`), where it applies."""
        raise NotImplementedError

    def partition(self, keys: list, parts: int) -> list[list]:
        """Split ascending ``keys`` into groups that decode independently (default: one group)."""
        return [keys]


class ListSource(FrameSource):
    def __init__(self, frames: Sequence):
        self.frames = frames
        self.path = f"<{len(frames)} frames>"
        self.num_frames = len(frames)

    def frame_size(self, index: int) -> tuple[int, int]:
        reader = ImageReader(self.frames[index])
        return reader.height, reader.width

    def decode(self, keys, progress, threads=None):
        for done, key in enumerate(keys, 1):
            yield key, ImageReader(self.frames[key]).read()
            if progress is not None:
                progress(done, len(keys))


class FolderSource(FrameSource):
    """A folder of frame images, sorted by file name, taken as 3 fps."""

    def __init__(self, path: Path):
        self.path = path
        extensions = set(Image.registered_extensions())
        self.files = sorted(
            f
            for f in os.listdir(path)
            if not f.startswith(".") and Path(f).suffix.lower() in extensions and (path / f).is_file()
        )
        if not self.files:
            raise MediaError(f"{path}: the folder holds no image files to use as video frames")
        self.num_frames = len(self.files)
        self.video_fps = FOLDER_FPS

    def frame_size(self, index: int) -> tuple[int, int]:
        reader = ImageReader(self.path / self.files[index])
        return reader.height, reader.width

    def decode(self, keys, progress, threads=None):
        for done, key in enumerate(keys, 1):
            yield key, ImageReader(self.path / self.files[key]).read()
            if progress is not None:
                progress(done, len(keys))


class GifSource(FrameSource):
    """An animated GIF, taken as 25 fps; frames are the composited canvases, alpha dropped."""

    def __init__(self, path: Path):
        self.path = path
        self.video_fps = GIF_FPS
        with open_image_file(path) as image:  # header checks: readable, not a decompression bomb
            self.size = (image.height, image.width)
            self.num_frames = getattr(image, "n_frames", 1)

    def frame_size(self, index: int) -> tuple[int, int]:
        return self.size

    def decode(self, keys, progress, threads=None):
        try:
            with Image.open(self.path) as image:
                for done, key in enumerate(keys, 1):
                    image.seek(key)  # keys ascend: Pillow decodes forward from the current frame
                    yield key, np.asarray(image.convert("RGB"))
                    if progress is not None:
                        progress(done, len(keys))
        except (OSError, EOFError, ValueError) as exc:
            raise MediaError(f"{self.path}: cannot decode the GIF: {exc}") from exc


@dataclass
class _Run:
    """Packets ``start..end`` (decode order) to decode after seeking to keyframe ``start``."""

    start: int
    end: int
    targets: set[int]


class StreamSource(FrameSource):
    """A video file read with PyAV.

    Construction demuxes the video stream once, reading packets but decoding nothing except the first
    frame, to learn every frame's timestamp, the keyframes, the frame size and the rotation.
    """

    def __init__(self, path: Path):
        self.path = path
        container = _open_container(path)
        try:
            stream = _video_stream(container, path)
            self.stream_index = stream.index
            self.time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.video_fps = float(rate) if rate else 25.0
            self.container_start_us = container.start_time or 0
            self.stream_start = float(stream.start_time * self.time_base) if stream.start_time is not None else 0.0
            duration_us = container.duration
            first_frame = self._scan(container, stream)
        finally:
            container.close()

        order = sorted((p, i) for i, (p, s) in enumerate(zip(self.packet_pts, self.packet_shown)) if s)
        if not order:
            raise MediaError(f"{path}: the video stream has no frames")
        self.frame_pts = [p for p, _ in order]  # presentation order
        self.packet_of_pts = {p: i for p, i in order}
        self.num_frames = len(order)
        # End of the last frame = its pts + its duration: what ffmpeg's decoder reports at end of stream.
        gap = self.frame_pts[-1] - self.frame_pts[-2] if len(order) > 1 else 0
        nominal = max(round(1 / (self.video_fps * self.time_base)), 1)
        self.last_duration = self.packet_duration[order[-1][1]] or gap or nominal
        end = (self.frame_pts[-1] + self.last_duration) * self.time_base
        self.format_duration = duration_us / AV_TIME_BASE if duration_us else float(end)
        if first_frame is None:
            raise MediaError(f"{path}: no decodable video frame (truncated or corrupt file?)")
        self.rotation = _clockwise_rotation(first_frame)
        self.height, self.width = first_frame.height, first_frame.width
        if self.rotation in (90, 270):
            self.height, self.width = self.width, self.height

    def _scan(self, container, stream) -> av.VideoFrame | None:
        """Record every packet (decode order); decode only until the first frame comes out."""
        import av

        self.packet_pts: list[int | None] = []
        self.packet_dts: list[int | None] = []
        self.packet_key: list[bool] = []
        self.packet_shown: list[bool] = []  # False for packets an edit list discards (decoded, never shown)
        self.packet_duration: list[int] = []
        self.packet_disposable: list[bool] = []  # no other picture references it: skippable if unwanted
        nal_length_size = _avcc_nal_length_size(stream.codec_context)
        first_frame = None
        codec = stream.codec_context
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                self.packet_pts.append(packet.pts)
                self.packet_dts.append(packet.dts)
                self.packet_key.append(packet.is_keyframe)
                self.packet_shown.append(not packet.is_discard)
                self.packet_duration.append(packet.duration or 0)
                self.packet_disposable.append(
                    nal_length_size is not None and _is_h264_non_reference(memoryview(packet), nal_length_size)
                )
                if first_frame is None:
                    frames = _decode_packet(codec, packet)
                    first_frame = frames[0] if frames else None
            if first_frame is None and self.packet_pts:
                frames = _decode_packet(codec, None)
                first_frame = frames[0] if frames else None
        except av.error.FFmpegError as exc:
            raise MediaError(f"{self.path}: cannot read the video stream (truncated or corrupt?): {exc}") from exc
        if any(p is None for p, s in zip(self.packet_pts, self.packet_shown) if s):
            # Frame times would only be known after decoding everything; containers that matter carry them.
            raise MediaError(f"{self.path}: the video packets carry no timestamps; remux the file (e.g. to MP4)")
        self.keyframes = [i for i, k in enumerate(self.packet_key) if k]
        self.index_of_packet = {(p, d): i for i, (p, d) in enumerate(zip(self.packet_pts, self.packet_dts))}
        return first_frame

    def key_of_index(self, index: int):
        return self.frame_pts[index]

    def frame_size(self, index: int) -> tuple[int, int]:
        return self.height, self.width

    # -- which packets to decode ---------------------------------------------------------------------

    def _keyframe_before(self, packet: int, pts: int) -> int:
        """Latest keyframe at or before ``packet`` (decode order) not shown after ``pts``; 0 if none."""
        j = bisect_right(self.keyframes, packet) - 1
        while j >= 0 and self.packet_pts[self.keyframes[j]] > pts:  # open GOP: frames shown before the I frame
            j -= 1
        return self.keyframes[j] if j >= 0 else 0

    def runs(self, keys: list[int]) -> list[_Run]:
        """Group the wanted frames (ascending pts) into runs of packets, each starting at a keyframe."""
        runs: list[_Run] = []
        for pts in keys:
            packet = self.packet_of_pts[pts]
            start = self._keyframe_before(packet, pts)
            if runs and start <= runs[-1].end + MIN_SKIPPED_PACKETS:
                runs[-1].start = min(runs[-1].start, start)
                runs[-1].end = max(runs[-1].end, packet)
                runs[-1].targets.add(pts)
            else:
                runs.append(_Run(start, packet, {pts}))
        return runs

    # -- decoding --------------------------------------------------------------------------------------

    def partition(self, keys: list[int], parts: int) -> list[list[int]]:
        """Split ascending frame pts into up to ``parts`` groups of similar decoding work (packets from each
        frame's keyframe to it) that share no packet, cutting only where a new keyframe starts."""
        if parts <= 1 or len(keys) < 2:
            return [keys]
        spans = []  # (first packet to decode, packet of the frame) per key
        for pts in keys:
            packet = self.packet_of_pts[pts]
            spans.append((self._keyframe_before(packet, pts), packet))
        cuts, reach = [], -1
        for i, (start, end) in enumerate(spans):
            if i > 0 and start > reach:  # keys[i:] need nothing that keys[:i] decode
                cuts.append(i)
            reach = max(reach, end)
        if not cuts:
            return [keys]
        first = spans[0][0]
        share = (reach - first + 1) / parts
        chosen = sorted({min(cuts, key=lambda i: abs(spans[i][0] - first - j * share)) for j in range(1, parts)})
        bounds = [0, *chosen, len(keys)]
        return [keys[a:b] for a, b in zip(bounds, bounds[1:]) if a < b]

    def decode(self, keys, progress, threads=None):
        runs = self.runs(keys)
        total = sum(r.end - r.start + 1 for r in runs)
        done = 0
        container = _open_container(self.path)
        try:
            stream = container.streams[self.stream_index]
            # Frame + slice threads. One core is left to the caller, who resizes frames while we decode
            # (on 2 cores a second decoder thread only competes with the resizing).
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = decoder_threads() if threads is None else threads
            codec = stream.codec_context
            packets: Iterator = container.demux(stream)
            position = 0  # decode-order index of the next packet ``packets`` yields
            for run in runs:
                if run.start < position or run.start - position > MIN_SKIPPED_PACKETS:
                    packets, position = self._seek(container, stream, run.start)
                for packet in packets:
                    if packet.size == 0:
                        continue
                    position += 1
                    if position - 1 < run.start:
                        continue  # before the run's keyframe: skipped without decoding
                    # A picture nothing refers to is decoded only if it is wanted.
                    if packet.pts in run.targets or not self.packet_disposable[position - 1]:
                        for frame in _decode_packet(codec, packet):
                            if frame.pts in run.targets:
                                run.targets.discard(frame.pts)
                                yield frame.pts, self._to_rgb(frame)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    if position > run.end:
                        break
                # Drain: frames still held by the decoder (reordering, frame threads) come out now.
                for frame in _decode_packet(codec, None):
                    if frame.pts in run.targets:
                        run.targets.discard(frame.pts)
                        yield frame.pts, self._to_rgb(frame)
                codec.flush_buffers()
                if run.targets:
                    t = float(min(run.targets) * self.time_base)
                    raise MediaError(f"{self.path}: could not decode the frame at {t:.3f} s (truncated or corrupt?)")
        finally:
            container.close()

    def _seek(self, container, stream, index: int) -> tuple[Iterator, int]:
        """Position the demuxer at or before packet ``index``: (packet iterator, its decode-order position)."""
        import av

        if index > 0:
            # The demuxer lands on the keyframe or on an earlier one (both fine: we skip up to ``index``).
            target = self.packet_dts[index] if self.packet_dts[index] is not None else self.packet_pts[index]
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                packets = container.demux(stream)
                for packet in packets:
                    if packet.size == 0:
                        continue
                    landed = self.index_of_packet.get((packet.pts, packet.dts))
                    if landed is not None and landed <= index:
                        return _chain(packet, packets), landed
                    break
            except av.error.FFmpegError:
                pass
        # Back to the first packet (also the fallback when a seek lands after the keyframe).
        container.seek(self.packet_dts[0] if self.packet_dts[0] is not None else 0, stream=stream, backward=True)
        packets = container.demux(stream)
        for packet in packets:
            if packet.size == 0:
                continue
            if self.index_of_packet.get((packet.pts, packet.dts)) == 0:
                return _chain(packet, packets), 0
            break
        raise MediaError(f"{self.path}: seeking in the video failed")

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        # swscale's yuv -> rgb24 conversion, identical to what the ffmpeg command line pipes to the reference.
        rgb = frame.to_ndarray(format="rgb24")
        if self.rotation:
            # ffmpeg applies the display matrix by default (transpose=clock / cclock, or a half turn).
            rgb = np.ascontiguousarray(np.rot90(rgb, k=-(self.rotation // 90)))
        return rgb


def _avcc_nal_length_size(codec) -> int | None:
    """Bytes of the NAL length prefix of an H.264 stream stored as length-prefixed NAL units (MP4, MOV, MKV:
    the ``avcC`` record in the extradata); None for other codecs and for Annex B streams (start codes)."""
    extradata = codec.extradata
    if codec.name != "h264" or not extradata or len(extradata) < 7 or extradata[0] != 1:
        return None
    return (extradata[4] & 0x03) + 1


def _is_h264_non_reference(data: memoryview, nal_length_size: int) -> bool:
    """True when the packet is a coded picture that no other picture uses for prediction: every NAL unit has
    ``nal_ref_idc`` 0 and there is at least one slice (SEI and access-unit delimiters also have 0; parameter
    sets and IDR slices never do). What the decoder's ``skip_frame=nonref`` leaves out, known before decoding."""
    offset, slices, size = 0, 0, len(data)
    while offset + nal_length_size < size:
        length = int.from_bytes(data[offset : offset + nal_length_size], "big")
        header = data[offset + nal_length_size]
        if header & 0x60:  # nal_ref_idc != 0: a reference picture or a parameter set
            return False
        if header & 0x1F in (1, 2, 3, 4):  # coded slice (or slice data partition) of a non-IDR picture
            slices += 1
        offset += nal_length_size + max(length, 1)
    return slices > 0


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _clockwise_rotation(frame: av.VideoFrame) -> int:
    """The clockwise quarter turn ffmpeg applies for the frame's display matrix (0, 90, 180 or 270)."""
    try:
        rotation = frame.rotation  # counter-clockwise degrees of the display matrix
    except (AttributeError, ValueError):
        return 0
    turn = round(-rotation) % 360 if rotation else 0
    return turn if turn in (90, 180, 270) else 0


def _decode_packet(codec, packet) -> list[av.VideoFrame]:
    import av

    try:
        return codec.decode(packet)
    except av.error.EOFError:
        return []
    except av.error.InvalidDataError:
        # ffmpeg logs corrupt packets and goes on; frames that depended on them are reported missing.
        return []


def _open_container(path: Path):
    import av  # imported on first use: importing videollama3 (images, text, the model) does not need PyAV

    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: not a readable video ({exc})") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise MediaError(f"{path}: no video stream (found: {', '.join(kinds)})")
    return container.streams.video[0]
