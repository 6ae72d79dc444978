"""Media transcoding (ffmpeg → HLS renditions, as a background job) and signed, expiring streaming URLs.

The signed URL is served and verified by the API itself: ``/content/{id}/stream/{file}?expires=…&sig=…``
where ``sig`` = HMAC-SHA256(secret, "content_id:expires"). It needs no Authorization header, so a video
element or HLS player can fetch it; playlists are rewritten so every segment URL carries the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from learnloop.errors import Conflict, NotFound, PermissionDenied
from learnloop.settings import Settings
from platform_api import _audit, policy
from platform_api._content import media_dir, resolve_media
from platform_api._db import get_or_not_found
from platform_api._errors import NotImplementedHere
from platform_api._models import ContentItem, Course, TranscodeJob
from platform_api._outbox import emit
from platform_api.data import ContentKind, TranscodeStatus
from platform_api.policy import Permission, Principal, Scope

# (name, height, video bitrate, audio bitrate): a small ladder that a 2-core box can produce.
VIDEO_LADDER = [("360p", 360, "800k", "96k"), ("720p", 720, "2500k", "128k")]
FFMPEG_TIMEOUT_S = 1800


def ffmpeg_binary() -> str | None:
    return shutil.which("ffmpeg")


def _item_and_scope(session: Session, content_id: uuid.UUID) -> tuple[ContentItem, Scope]:
    item = get_or_not_found(session, ContentItem, content_id, "Content")
    return item, Scope.of_course(get_or_not_found(session, Course, item.course_id, "Course"))


def hls_dir(settings: Settings, content_id: uuid.UUID, job_id: uuid.UUID) -> Path:
    return media_dir(settings) / "hls" / str(content_id) / str(job_id)


def request_transcode(*, session: Session, settings: Settings, actor: Principal | None,
                      content_id: uuid.UUID) -> TranscodeJob:
    item, scope = _item_and_scope(session, content_id)
    policy.authorize(session, actor, Permission.content_transcode, scope, what="transcoding this content")
    if item.kind not in (ContentKind.video, ContentKind.audio):
        raise Conflict(f"Content {content_id} is {item.kind.value}; only video and audio can be transcoded")
    if not item.file_path:
        raise Conflict(f"Content {content_id} has no media file; set file_path (relative to the media folder)")
    source = resolve_media(settings, item.file_path)
    if not source.is_file():
        raise Conflict(f"Media file {item.file_path} is missing from {media_dir(settings)}; upload it first")
    if ffmpeg_binary() is None:
        raise NotImplementedHere(
            "Transcoding needs ffmpeg, which is not installed on this server: install it (e.g. `apt-get install -y "
            "ffmpeg`) and retry. Meanwhile GET /content/{id}/streaming-url streams the original file.")
    job = TranscodeJob(content_id=item.id, status=TranscodeStatus.queued, renditions=[])
    session.add(job)
    session.flush()
    emit(session, event_type="content.transcode_requested", user_id=actor.id if actor else None,
         course_id=item.course_id, payload={"content_id": str(item.id), "job_id": str(job.id)})
    _audit.record(session, actor_id=actor.id if actor else None, action="content.transcode",
                  resource_type="content", resource_id=item.id, details={"job_id": str(job.id)})
    session.commit()
    return job


def _ffmpeg_command(source: Path, out: Path, *, audio_only: bool) -> list[str]:
    command = [ffmpeg_binary() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source)]
    ladder = [("audio", 0, None, "128k")] if audio_only else VIDEO_LADDER
    for name, height, video_rate, audio_rate in ladder:
        (out / name).mkdir(parents=True, exist_ok=True)
        if not audio_only:  # per-output options: each rendition is its own HLS output
            command += ["-map", "0:v:0", "-map", "0:a:0?", "-vf", f"scale=-2:{height}", "-c:v", "libx264",
                        "-preset", "veryfast", "-b:v", video_rate]
        else:
            command += ["-map", "0:a:0", "-vn"]
        command += ["-c:a", "aac", "-b:a", audio_rate, "-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod",
                    "-hls_segment_filename", str(out / name / "seg_%03d.ts"), str(out / name / "index.m3u8")]
    return command


def run_transcode(*, sessions: sessionmaker[Session], settings: Settings, job_id: uuid.UUID) -> None:
    """Run one queued job to completion (called in the background after the request returned)."""
    with sessions() as session:
        job = session.get(TranscodeJob, job_id)
        item = session.get(ContentItem, job.content_id) if job is not None else None
        if job is None or item is None:  # the item was deleted before the job started
            return
        job.status = TranscodeStatus.running
        session.commit()
        source = resolve_media(settings, item.file_path or "")
        out = hls_dir(settings, item.id, job.id)
        audio_only = item.kind is ContentKind.audio
        try:
            result = subprocess.run(_ffmpeg_command(source, out, audio_only=audio_only), capture_output=True,
                                    text=True, timeout=FFMPEG_TIMEOUT_S)
            failed = result.returncode != 0
            error = result.stderr[-2000:] if failed else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            failed, error = True, repr(exc)
        if failed:
            job.status, job.error = TranscodeStatus.failed, error or "ffmpeg failed"
            event_type = "content.transcode_failed"
        else:
            ladder = [("audio", 0, None, "128k")] if audio_only else VIDEO_LADDER
            lines = ["#EXTM3U"]
            renditions = []
            for name, height, video_rate, audio_rate in ladder:
                bandwidth = int((video_rate or "0k")[:-1]) * 1000 + int(audio_rate[:-1]) * 1000
                lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth}" + (f",RESOLUTION={height}p" if height else ""),
                          f"{name}/index.m3u8"]
                renditions.append({"name": name, "playlist": f"{name}/index.m3u8", "bandwidth": bandwidth})
            (out / "master.m3u8").write_text("\n".join(lines) + "\n")
            job.status, job.renditions = TranscodeStatus.succeeded, renditions
            event_type = "content.transcoded"
        emit(session, event_type=event_type, course_id=item.course_id,
             payload={"content_id": str(item.id), "job_id": str(job.id), "status": job.status.value})
        try:
            session.commit()
        except StaleDataError:  # the item (and this job) was deleted while ffmpeg ran: drop its renditions
            session.rollback()
            shutil.rmtree(out, ignore_errors=True)


def get_job(*, session: Session, actor: Principal | None, content_id: uuid.UUID, job_id: uuid.UUID) -> TranscodeJob:
    _, scope = _item_and_scope(session, content_id)
    policy.authorize(session, actor, Permission.content_read, scope, what="this content")
    job = session.get(TranscodeJob, job_id)
    if job is None or job.content_id != content_id:
        raise NotFound(f"Content {content_id} has no transcode job {job_id}")
    return job


def _signature(settings: Settings, content_id: uuid.UUID, expires: int) -> str:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"stream:{content_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def _latest_hls(session: Session, content_id: uuid.UUID) -> TranscodeJob | None:
    return session.scalar(select(TranscodeJob).where(TranscodeJob.content_id == content_id,
                                                     TranscodeJob.status == TranscodeStatus.succeeded)
                          .order_by(TranscodeJob.created_at.desc()))


def streaming_url(*, session: Session, settings: Settings, actor: Principal | None, content_id: uuid.UUID,
                  ttl_s: int = 600) -> tuple[str, datetime]:
    item, scope = _item_and_scope(session, content_id)
    policy.authorize(session, actor, Permission.content_read, scope, what="this content (enroll first)")
    if not item.file_path:
        raise Conflict(f"Content {content_id} has no media file to stream")
    expires = int(time.time()) + ttl_s
    target = "master.m3u8" if _latest_hls(session, content_id) else "original"
    url = (f"/api/v1/content/{content_id}/stream/{target}?expires={expires}"
           f"&sig={_signature(settings, content_id, expires)}")
    return url, datetime.fromtimestamp(expires, UTC)


def resolve_stream(*, session: Session, settings: Settings, content_id: uuid.UUID, file: str, expires: int,
                   sig: str) -> tuple[Path, str | None]:
    """Verify a signed URL and return the file to send (and, for playlists, the query to carry on)."""
    if expires < time.time():
        raise PermissionDenied("This streaming URL has expired; ask for a new one with GET /streaming-url")
    if not hmac.compare_digest(sig, _signature(settings, content_id, expires)):
        raise PermissionDenied("This streaming URL's signature is not valid; ask for a new one")
    item = get_or_not_found(session, ContentItem, content_id, "Content")
    if file == "original":
        path = resolve_media(settings, item.file_path or "")
    else:
        job = _latest_hls(session, content_id)
        if job is None:
            raise NotFound(f"Content {content_id} has no HLS renditions yet")
        root = hls_dir(settings, content_id, job.id).resolve()
        path = (root / file).resolve()
        if not path.is_relative_to(root):
            raise NotFound("No such stream file")
    if not path.is_file():
        raise NotFound(f"Stream file {file} does not exist")
    return path, (f"expires={expires}&sig={sig}" if path.suffix == ".m3u8" else None)


def signed_playlist(path: Path, query: str) -> str:
    """The playlist with the signature appended to every URI (players drop the query when resolving)."""
    return "\n".join(line if not line or line.startswith("#") else f"{line}?{query}"
                     for line in path.read_text().splitlines()) + "\n"
