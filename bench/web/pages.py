"""The bench's pages: a viewer of the console's player, and a reader of the frame index
the camera draws (framebus.testing.camera) back out of what the page shows.

The MSE reader runs in requestVideoFrameCallback: for each frame the video presents, the
code band is drawn into a small canvas and read, with the frame's expected display time
on the wall clock (performance.timeOrigin + expectedDisplayTime), so the bench compares
it with the camera's clock on the same machine. The MJPEG reader has no per-frame
callback: it reads the <img> at every animation frame and keeps the first sight of each
index.
"""

from __future__ import annotations

import json

from framebus.testing.camera import CODE_BAND, CODE_BITS

#: Reads the index from an image source drawn into a 1-row canvas at the code band.
READER = f"""
const BITS = {CODE_BITS}, BAND = {CODE_BAND};
const canvas = document.createElement("canvas");
canvas.width = BITS * 8; canvas.height = 1;
const ctx = canvas.getContext("2d", {{willReadFrequently: true}});
function readIndex(source, width, height) {{
  const y = height - height / BAND / 2;
  ctx.drawImage(source, 0, y, width, 1, 0, 0, canvas.width, 1);
  const row = ctx.getImageData(0, 0, canvas.width, 1).data;
  let index = 0;
  for (let bit = 0; bit < BITS; bit++) {{
    const at = (bit * 8 + 4) * 4;
    if (row[at] + row[at + 1] + row[at + 2] > 3 * 128) index |= 1 << bit;
  }}
  return index;
}}
window.samples = [];
"""

MSE_PROBE = """
const video = document.getElementById("v");
function onFrame(now, meta) {
  samples.push([readIndex(video, meta.width, meta.height),
                performance.timeOrigin + meta.expectedDisplayTime]);
  video.requestVideoFrameCallback(onFrame);
}
video.requestVideoFrameCallback(onFrame);
"""

MJPEG_PROBE = """
const img = document.getElementById("i");
let last = -1;
function onAnimation(now) {
  if (img.naturalWidth) {
    const index = readIndex(img, img.naturalWidth, img.naturalHeight);
    if (index !== last) { samples.push([index, performance.timeOrigin + now]); last = index; }
  }
  requestAnimationFrame(onAnimation);
}
requestAnimationFrame(onAnimation);
"""


def player_page(server: str, name: str, probe: bool) -> str:
    """A page that plays *name* with the console's player (and reads its index)."""
    script = READER + MSE_PROBE if probe else ""
    return f"""<!doctype html><html><body style="margin:0">
<video id="v" width="640" height="360"></video>
<script src="{server}/static/player.js"></script>
<script>
window.errors = [];
window.player = framebusPlayer.attach(document.getElementById("v"), {json.dumps(name)},
    {{base: {json.dumps(server)}, onError: (m) => errors.push(m)}});
{script}
</script></body></html>"""


def mjpeg_page(server: str, name: str, fps: float) -> str:
    """A page that shows /jpeg/NAME in an <img>, as most web views of a camera do."""
    return f"""<!doctype html><html><body style="margin:0">
<img id="i" width="640" height="360"
     src="{server}/jpeg/{name}?fps={fps:g}">
<script>{READER}{MJPEG_PROBE}</script></body></html>"""


def reader_page(server: str, name: str, kind: str) -> str:
    """A viewer that takes what the server sends and counts it without decoding: /live's
    messages over a WebSocket (kind "mse"), or /jpeg's bytes (kind "mjpeg"). The server's
    work is a player's, and 16 of them do not need the 16 cores 16 decoders would."""
    if kind == "mse":
        body = f"""
const ws = new WebSocket(new URL("/live/{name}", {json.dumps(server)}).href.replace("http", "ws"));
ws.binaryType = "arraybuffer";
ws.onmessage = (event) => {{
  if (typeof event.data !== "string") {{ got.messages += 1; got.bytes += event.data.byteLength; }}
}};"""
    else:
        body = f"""
fetch({json.dumps(server)} + "/jpeg/{name}?fps=25").then(async (response) => {{
  const reader = response.body.getReader();
  for (;;) {{
    const {{done, value}} = await reader.read();
    if (done) break;
    got.bytes += value.byteLength;
  }}
}});"""
    return f"<!doctype html><html><body><script>window.got = {{messages: 0, bytes: 0}};{body}" \
           "</script></body></html>"
