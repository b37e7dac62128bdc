"""Packets from a live camera: the GStreamer RTSP server the suite uses, a real decoder
process in demand mode, packets that PyAV decodes back into the camera's pictures."""

from __future__ import annotations

import av

import framebus
from framebus.packets import PacketSubscriber


def test_an_rtsp_cameras_packets_flow_and_decode_and_pixels_come_on_demand(
        procs, broker, stream_name, rtsp_server):
    procs.framebus("-v", "decode", rtsp_server.url, "--name", stream_name, "--timeout", "2",
                   "--decode", "demand")
    with PacketSubscriber(stream_name) as sub:
        first = sub.recv(timeout=20)
        assert first.keyframe, "a subscriber starts at a key frame"
        codec = sub.codec
        assert codec is not None and codec.name == "h264"
        assert (codec.width, codec.height) == (320, 240)
        packets = [first] + [sub.recv(timeout=5) for _ in range(49)]
        assert [p.seq for p in packets] == list(range(first.seq, first.seq + 50))
        dts = [p.dts for p in packets if p.dts is not None]
        assert dts == sorted(dts), "in decoding order"
        decoder = av.CodecContext.create("h264", "r")
        if codec.extradata:
            decoder.extradata = codec.extradata
        pictures = []
        for p in packets:
            pictures += decoder.decode(av.Packet(p.bytes()))
        assert len(pictures) >= 45
        assert (pictures[0].width, pictures[0].height) == (320, 240)
        assert sub.dropped == 0
        with framebus.Subscriber(stream_name) as pixels:  # demand: pixels while read
            frame = pixels.recv(timeout=10)
            assert frame.shape == (240, 320, 3)
        assert sub.recv(timeout=5) is not None, "packets flow on"
