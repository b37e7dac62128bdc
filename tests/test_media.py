"""The test clips have a camera's GOP: key frames exactly every `gop` frames, P frames between.

A clip made of frames that carry a picture type of their own (frames decoded from FFmpeg's
lavfi sources are all I frames) would otherwise come out all key frames, and scene cuts
would add key frames where no camera puts them.
"""

from __future__ import annotations

import av
import pytest

from framebus.testing import media


@pytest.mark.parametrize("container_format, suffix", [(None, "mp4"), ("mpegts", "ts"),
                                                      ("h264", "h264")])
def test_a_clip_has_a_key_frame_every_second_and_p_frames_between(tmp_path, container_format,
                                                                  suffix):
    clip = media.encode(tmp_path / f"clip.{suffix}", 120, 160, 120, fps=25,
                        container_format=container_format)
    assert media.key_frames(clip) == [0, 25, 50, 75, 100]
    assert media.picture_types(clip) == ("I" + "P" * 24) * 4 + "I" + "P" * 19


def test_the_gop_is_what_was_asked(tmp_path):
    clip = media.encode(tmp_path / "clip.mp4", 100, 160, 120, fps=25, gop=40)
    assert media.key_frames(clip) == [0, 40, 80]


def test_frames_that_come_as_i_frames_still_make_a_real_gop(tmp_path):
    with av.open("testsrc2=size=160x120:rate=25", format="lavfi") as source:
        frames = []
        for frame in source.decode(video=0):
            frames.append(frame)
            if len(frames) == 60:
                break
    assert {f.pict_type for f in frames} == {av.video.frame.PictureType.I}  # what lavfi gives
    clip = media.encode_frames(tmp_path / "lavfi.mp4", frames, 160, 120, fps=25, gop=25)
    assert media.key_frames(clip) == [0, 25, 50]
    assert media.picture_types(clip).count("I") == 3


def test_a_scene_cut_adds_no_key_frame(tmp_path):
    # Every 10th frame is the negative of the picture, a scene cut to the encoder; veryfast,
    # unlike ultrafast, looks for scene cuts (the decode benchmark's clip is veryfast).
    pictures = [media.picture(i, 160, 120) if i % 10 else 255 - media.picture(i, 160, 120)
                for i in range(75)]
    clip = media.encode_frames(tmp_path / "cuts.mp4", pictures, 160, 120, fps=25,
                               options={"preset": "veryfast"})
    assert media.key_frames(clip) == [0, 25, 50]
    types = media.picture_types(clip)
    assert [i for i, t in enumerate(types) if t == "I"] == [0, 25, 50], types
