"""Where media in a request may come from, and the limits they must respect.

A request names media by URL:

- ``data:<mime>;base64,<payload>``: decoded to a temporary file (size checked before decoding);
- a path or ``file://`` URL: only under ``--media-root``. The path is resolved (``realpath``: ``..`` and
  every symlink followed) and must still lie inside the resolved root, so neither ``../`` nor a symlink
  pointing outside can escape it. Relative paths are relative to the root;
- ``upload://<id>``: a file posted to ``POST /v1/uploads`` (kept in a server-managed folder);
- ``http(s)://``: refused unless the server runs with ``--allow-remote-media`` (fetching arbitrary URLs
  on a client's behalf lets clients probe the server's network); then downloaded with a size limit and
  a timeout.

Everything here runs on the preprocessing thread pool, never on the event loop or the model thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .api_errors import APIError, bad_request, not_found, too_large

UPLOAD_SCHEME = "upload://"
_UPLOAD_ID = re.compile(r"^upload-[0-9a-f]{32}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MediaLimits:
    """Per-item limits (the server's ``--max-*`` options)."""

    media_root: Path | None = None
    allow_remote: bool = False
    max_media_bytes: int = 64 << 20
    max_video_seconds: float = 3600.0
    max_frames: int = 180
    remote_timeout: float = 20.0


@dataclass
class ResolvedMedia:
    """A media item as a local file the processor can read."""

    path: Path
    display: str  # how error messages name it (never a server-side temporary path)
    size: int


@dataclass
class MediaScope:
    """Temporary files created while preparing one request; removed when the request is prepared.

    The folder is created on first use: most requests (paths, uploads) need none.
    """

    parent: Path
    names: dict[str, str] = field(default_factory=dict)  # server path -> name shown to the client
    _directory: Path | None = None

    @property
    def directory(self) -> Path:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="req-", dir=self.parent))
        return self._directory

    def close(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> MediaScope:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def redact(self, message: str) -> str:
        """Replace server-side paths in an error message by the names the client used."""
        for path, name in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(path, name)
        return message


class UploadStore:
    """Files posted to ``/v1/uploads``, in a server-managed folder, bounded in total size.

    Ids are random (not content hashes), so a client cannot probe whether someone uploaded a known file.
    When the folder exceeds ``max_total_bytes``, the least recently written files are deleted.
    """

    def __init__(self, root: Path, max_total_bytes: int, max_file_bytes: int):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_total_bytes = int(max_total_bytes)
        self.max_file_bytes = int(max_file_bytes)
        self._lock = threading.Lock()

    def save(self, data: bytes, content_type: str | None, filename: str | None = None) -> dict:
        if not data:
            raise bad_request("The upload is empty.", param="body")
        if len(data) > self.max_file_bytes:
            raise too_large(f"The upload is {len(data)} bytes; the limit is {self.max_file_bytes} bytes.")
        upload_id = f"upload-{secrets.token_hex(16)}"
        suffix = _suffix_for(content_type, filename)
        path = self.root / f"{upload_id}{suffix}"
        with self._lock:
            path.write_bytes(data)
            self._evict(keep=path)
        return {
            "id": upload_id,
            "object": "upload",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": os.path.basename(filename) if filename else None,
            "sha256": hashlib.sha256(data).hexdigest(),
            "url": f"{UPLOAD_SCHEME}{upload_id}",
        }

    def path_of(self, upload_id: str, param: str | None = None) -> Path:
        if not _UPLOAD_ID.match(upload_id):
            raise bad_request(f"Malformed upload id {upload_id!r}.", param=param)
        matches = list(self.root.glob(f"{upload_id}.*")) + list(self.root.glob(upload_id))
        if not matches:
            raise not_found(f"No upload with id {upload_id!r} (it may have expired).", param=param)
        return matches[0]

    def _evict(self, keep: Path) -> None:
        files = sorted((p for p in self.root.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.max_total_bytes:
                break
            if p != keep:
                total -= p.stat().st_size
                p.unlink(missing_ok=True)


class MediaResolver:
    """Turns the URLs of a request into local files, enforcing :class:`MediaLimits`."""

    def __init__(self, limits: MediaLimits, uploads: UploadStore | None, temp_root: Path):
        self.limits = limits
        self.uploads = uploads
        self.temp_root = Path(temp_root)
        self.temp_root.mkdir(parents=True, exist_ok=True)
        self._root = Path(os.path.realpath(limits.media_root)) if limits.media_root is not None else None

    def scope(self) -> MediaScope:
        return MediaScope(self.temp_root)

    def resolve(self, url: str, kind: str, param: str, scope: MediaScope) -> ResolvedMedia:
        """A local file for ``url`` (``kind`` is "image" or "video", for messages and file suffixes)."""
        url = url.strip()
        if not url:
            raise bad_request(f"Empty {kind} URL.", param=param)
        lowered = url[:16].lower()
        if lowered.startswith("data:"):
            return self._from_data_url(url, kind, param, scope)
        if lowered.startswith(UPLOAD_SCHEME):
            return self._from_upload(url[len(UPLOAD_SCHEME) :], param, scope)
        if lowered.startswith(("http://", "https://")):
            return self._from_remote(url, kind, param, scope)
        if lowered.startswith("file://"):
            parsed = urllib.parse.urlparse(url)
            if parsed.netloc not in ("", "localhost"):
                raise bad_request(f"file:// URLs must name a local file, got host {parsed.netloc!r}.", param=param)
            return self._from_path(urllib.parse.unquote(parsed.path), url, param, scope)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url):
            scheme = url.split("://", 1)[0]
            raise bad_request(
                f"Unsupported URL scheme {scheme!r} for the {kind}: use a data: URL, an upload:// id, a path or "
                "file:// URL under the server's media root, or http(s):// when the server allows remote media.",
                param=param,
            )
        return self._from_path(url, url, param, scope)

    # ------------------------------------------------------------------ sources
    def _from_data_url(self, url: str, kind: str, param: str, scope: MediaScope) -> ResolvedMedia:
        header, sep, payload = url.partition(",")
        if not sep:
            raise bad_request("Malformed data URL: no ',' between the header and the data.", param=param)
        params = header[5:].split(";")
        if "base64" not in (p.strip().lower() for p in params[1:]):
            raise bad_request("Only base64 data URLs are supported (data:<mime>;base64,<data>).", param=param)
        # 4 base64 characters carry 3 bytes: refuse oversized payloads before decoding them.
        if len(payload) // 4 * 3 > self.limits.max_media_bytes + 3:
            raise too_large(f"The {kind} in {param} is larger than the limit of {self.limits.max_media_bytes} bytes.")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"The data URL of the {kind} is not valid base64.", param=param) from None
        if not data:
            raise bad_request(f"The data URL of the {kind} is empty.", param=param)
        if len(data) > self.limits.max_media_bytes:
            raise too_large(f"The {kind} in {param} is larger than the limit of {self.limits.max_media_bytes} bytes.")
        path = scope.directory / f"{param_slug(param)}{_suffix_for(params[0].strip() or None, None, kind)}"
        path.write_bytes(data)
        scope.names[str(path)] = f"<{kind} data URL at {param}>"
        return ResolvedMedia(path, scope.names[str(path)], len(data))

    def _from_upload(self, upload_id: str, param: str, scope: MediaScope) -> ResolvedMedia:
        if self.uploads is None:
            raise bad_request("Uploads are disabled on this server.", param=param)
        path = self.uploads.path_of(upload_id, param)
        scope.names[str(path)] = f"{UPLOAD_SCHEME}{upload_id}"
        return ResolvedMedia(path, scope.names[str(path)], path.stat().st_size)

    def _from_path(self, raw: str, display: str, param: str, scope: MediaScope) -> ResolvedMedia:
        if self._root is None:
            raise bad_request(
                "Local media paths are disabled: the server was started without --media-root "
                "(send the media as a data: URL or an upload instead).",
                param=param,
            )
        if "\x00" in raw:
            raise bad_request("The media path contains a NUL character.", param=param)
        candidate = Path(raw) if os.path.isabs(raw) else self._root / raw
        # realpath follows every symlink and '..': containment is checked on where the file really is.
        real = Path(os.path.realpath(candidate))
        if os.path.commonpath([str(real), str(self._root)]) != str(self._root):
            raise bad_request(
                f"The media path {display!r} is outside the server's media root.",
                param=param,
                code="media_outside_root",
            )
        if not real.is_file():
            raise bad_request(
                f"No media file {display!r} under the server's media root.", param=param, code="media_not_found"
            )
        size = real.stat().st_size
        if size > self.limits.max_media_bytes:
            raise too_large(
                f"The media file {display!r} is larger than the limit of {self.limits.max_media_bytes} bytes."
            )
        scope.names[str(real)] = display
        scope.names[str(candidate)] = display
        return ResolvedMedia(real, display, size)

    def _from_remote(self, url: str, kind: str, param: str, scope: MediaScope) -> ResolvedMedia:
        if not self.limits.allow_remote:
            raise bad_request(
                "Remote media URLs are disabled on this server (start it with --allow-remote-media); "
                "send the media as a data: URL or an upload instead.",
                param=param,
                code="remote_media_disabled",
            )
        path = scope.directory / f"{param_slug(param)}{_suffix_for(None, urllib.parse.urlparse(url).path, kind)}"
        limit = self.limits.max_media_bytes
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "videollama3-server"})
            with urllib.request.urlopen(request, timeout=self.limits.remote_timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise too_large(f"The remote {kind} is {length} bytes; the limit is {limit} bytes.")
                size = 0
                with open(path, "wb") as f:
                    while chunk := response.read(_CHUNK):
                        size += len(chunk)
                        if size > limit:
                            raise too_large(f"The remote {kind} is larger than the limit of {limit} bytes.")
                        f.write(chunk)
        except APIError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise bad_request(
                f"Could not fetch the {kind} from {url!r}: {reason}.", param=param, code="media_fetch_failed"
            ) from None
        if size == 0:
            raise bad_request(f"The remote {kind} at {url!r} is empty.", param=param)
        scope.names[str(path)] = url
        return ResolvedMedia(path, url, size)


def probe_video_seconds(path: Path) -> float | None:
    """Duration of a video file from its container header (None when the container does not say)."""
    import av

    with av.open(str(path)) as container:
        if container.duration:
            return container.duration / 1_000_000
        for stream in container.streams.video:
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    return None


def param_slug(param: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", param).strip("_")[:60] or "media"


def _suffix_for(content_type: str | None, filename: str | None, kind: str | None = None) -> str:
    """A file suffix for stored media. It matters for GIFs (sampled by frame index, as the reference)."""
    if filename:
        suffix = Path(filename).suffix.lower()
        if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
            return suffix
    if content_type:
        mime = content_type.split(";")[0].strip().lower()
        if mime == "image/gif":
            return ".gif"
        guessed = mimetypes.guess_extension(mime) if re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", mime) else None
        if guessed:
            return guessed
    return {"image": ".img", "video": ".video"}.get(kind or "", ".bin")
