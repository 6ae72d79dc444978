"""Signed streaming URLs (served and verified by the API) and the ffmpeg transcode job."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from platform_api import _media
from platform_api._content import media_dir


@pytest.fixture(scope="module")
def video(platform):
    _, instructor = platform.user("instructor")
    course_id = platform.course(instructor)
    _, student = platform.user()
    platform.enroll(course_id, student)
    folder = media_dir(platform.settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lecture.bin").write_bytes(b"not really a video" * 100)
    content = platform.client.post("/api/v1/content", headers=instructor, json={
        "course_id": course_id, "kind": "video", "title": "Lecture", "file_path": "lecture.bin"})
    assert content.status_code == 201, content.text
    return {"instructor": instructor, "student": student, "content_id": content.json()["id"], "course_id": course_id}


def test_signed_url_is_served_and_verified(platform, video):
    client = platform.client
    signed = client.get(f"/api/v1/content/{video['content_id']}/streaming-url", headers=video["student"])
    assert signed.status_code == 200
    url = signed.json()["url"]
    served = client.get(url)  # no Authorization header: the signature is the credential
    assert served.status_code == 200 and served.content == b"not really a video" * 100
    assert client.get(url.replace("sig=", "sig=0")).status_code == 422  # not even shaped like a signature
    assert client.get(url[:-1] + ("0" if url[-1] != "0" else "1")).status_code == 403
    assert client.get(url.replace("sig=", "sig=é")).status_code == 422
    assert client.get(url.replace("/original?", "/orig%00inal?")).status_code == 422
    expired = int(time.time()) - 1
    stale = (f"/api/v1/content/{video['content_id']}/stream/original?expires={expired}"
             f"&sig={_media._signature(platform.settings, video['content_id'], expired)}")
    response = client.get(stale)
    assert response.status_code == 403 and "expired" in response.json()["error"]["message"]
    _, outsider = platform.user()
    assert client.get(f"/api/v1/content/{video['content_id']}/streaming-url", headers=outsider).status_code == 403
    escaping = client.post("/api/v1/content", headers=video["instructor"], json={
        "course_id": video["course_id"], "kind": "video", "title": "x", "file_path": "../../etc/passwd"})
    assert escaping.status_code == 422 and "inside" in escaping.json()["error"]["message"]


def test_transcode_without_ffmpeg_is_a_clear_501(platform, video, monkeypatch):
    monkeypatch.setattr(_media, "ffmpeg_binary", lambda: None)
    response = platform.client.post(f"/api/v1/content/{video['content_id']}/transcode", headers=video["instructor"])
    assert response.status_code == 501
    assert "ffmpeg" in response.json()["error"]["message"] and "apt-get" in response.json()["error"]["message"]
    assert platform.client.post(f"/api/v1/content/{video['content_id']}/transcode",
                                headers=video["student"]).status_code == 403


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install -y ffmpeg)")
def test_transcode_to_hls_and_stream_it(platform, video):
    client = platform.client
    source = media_dir(platform.settings) / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=duration=2:size=320x240:rate=10", "-f", "lavfi", "-i", "sine=duration=2",
                    "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(source)], check=True)
    content = client.post("/api/v1/content", headers=video["instructor"], json={
        "course_id": video["course_id"], "kind": "video", "title": "Clip", "file_path": "clip.mp4"}).json()
    job = client.post(f"/api/v1/content/{content['id']}/transcode", headers=video["instructor"])
    assert job.status_code == 202, job.text
    status_url = f"/api/v1/content/{content['id']}/transcode/{job.json()['id']}"
    deadline = time.monotonic() + 120
    while (state := client.get(status_url, headers=video["student"]).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "transcode did not finish"
        time.sleep(0.5)
    assert state["status"] == "succeeded", state["error"]
    assert [r["name"] for r in state["renditions"]] == ["360p", "720p"]
    url = client.get(f"/api/v1/content/{content['id']}/streaming-url", headers=video["student"]).json()["url"]
    assert "/stream/master.m3u8?" in url
    master = client.get(url)
    assert master.status_code == 200 and master.text.startswith("#EXTM3U")
    variant = next(line for line in master.text.splitlines() if line.startswith("360p/"))
    base = url.split("/stream/")[0] + "/stream/"
    playlist = client.get(base + variant)
    segment = next(line for line in playlist.text.splitlines() if ".ts?" in line)
    chunk = client.get(base + "360p/" + segment)
    assert chunk.status_code == 200 and len(chunk.content) > 1000

    # Deleting the item takes its renditions with it; its job and versions are gone, the source file stays.
    hls = media_dir(platform.settings) / "hls" / content["id"]
    assert hls.is_dir()
    assert client.delete(f"/api/v1/content/{content['id']}", headers=video["instructor"]).status_code == 204
    assert not hls.exists() and source.exists()
    assert client.get(status_url, headers=video["instructor"]).status_code == 404
    assert client.get(url).status_code == 404


def test_a_job_whose_item_was_deleted_before_it_ran_does_nothing(platform, video):
    import uuid

    from platform_api._models import TranscodeJob

    client = platform.client
    content = client.post("/api/v1/content", headers=video["instructor"], json={
        "course_id": video["course_id"], "kind": "video", "title": "Gone", "file_path": "lecture.bin"}).json()
    with platform.app.state.sessions() as session:
        job = TranscodeJob(content_id=uuid.UUID(content["id"]))
        session.add(job)
        session.commit()
        job_id = job.id
    assert client.delete(f"/api/v1/content/{content['id']}", headers=video["instructor"]).status_code == 204
    _media.run_transcode(sessions=platform.app.state.sessions, settings=platform.settings, job_id=job_id)  # no error
    assert client.put(f"/api/v1/content/{content['id']}", headers=video["instructor"],
                      json={"title": "back?"}).status_code == 404
