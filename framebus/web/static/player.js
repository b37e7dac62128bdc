// framebus live player: a stream's packets as fragmented MP4 over a WebSocket into Media
// Source Extensions (the browser decodes; the server never re-encodes), or MJPEG in an
// <img> when the server or this browser says MSE cannot play the stream.
//
//   const player = window.framebusPlayer.attach(video, "cam1", {onError: console.error});
//   player.mode;    // "mse", "mjpeg" or null (connecting)
//   player.connections;  // WebSockets opened: 1, and one more for each reconnection
//   player.close();
//
// No build step, no dependency: one file, served as it is.
(function () {
  "use strict";

  // Latency: playing this far (seconds) behind the newest frame, jump to it; further than
  // CATCH_UP, play a little faster until caught up. A live view should show now, not later.
  const LIVE_EDGE = 0.5;
  const CATCH_UP = 0.12;
  // Buffer kept behind the playhead (seconds), trimmed when it passes twice that.
  const KEEP = 10;
  // Reconnection delays (ms) after a stream restarted or the connection broke.
  const RETRY = [250, 1000, 2000, 5000];
  // Close codes that mean "do not try again" (an unknown stream, a bad name).
  const FINAL = new Set([4404, 4400]);

  function socketUrl(path) {
    const url = new URL(path, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function attach(video, name, options) {
    const opts = options || {};
    const onError = opts.onError || function (message) { console.error("framebus:", message); };
    const base = opts.base || "";
    const state = {closed: false, mode: null, ws: null, source: null, buffer: null,
                   queue: [], img: null, retries: 0, timer: null, appends: 0, connections: 0};

    function connect() {
      const ws = new WebSocket(socketUrl(base + "/live/" + encodeURIComponent(name)));
      ws.binaryType = "arraybuffer";
      state.ws = ws;
      state.connections += 1;
      let told = false;  // the server's header came: a close after it is not a failure
      ws.onmessage = function (event) {
        if (typeof event.data === "string") {
          told = true;
          start(JSON.parse(event.data));
        } else if (state.mode === "mse") {
          state.queue.push(event.data);
          pump();
        }
      };
      ws.onclose = function (event) {
        if (state.closed || state.mode === "mjpeg" || state.failed) return;
        if (FINAL.has(event.code)) return;
        if (!told && state.retries >= RETRY.length) {
          fail("cannot reach the live view of " + name + " (" + (event.reason || event.code) + ")");
          return;
        }
        stopMse();
        const delay = RETRY[Math.min(state.retries, RETRY.length - 1)];
        state.retries += 1;
        state.timer = setTimeout(connect, delay);
      };
    }

    function start(header) {
      if (header.error) {
        fail(header.error);
      } else if (header.mime && window.MediaSource && MediaSource.isTypeSupported(header.mime)) {
        startMse(header.mime);
      } else if (header.jpeg) {
        startMjpeg(header.jpeg);
      } else {
        fail(header.reason || ("this browser cannot play " + header.mime));
      }
    }

    function fail(message) {
      state.failed = true;
      onError(message);
    }

    // -- Media Source Extensions -------------------------------------------------------

    function startMse(mime) {
      state.mode = "mse";
      const source = new MediaSource();
      state.source = source;
      source.addEventListener("sourceopen", function () {
        URL.revokeObjectURL(video.src);
        if (source !== state.source) return;
        source.duration = Infinity;  // live: no end to seek to
        const buffer = source.addSourceBuffer(mime);
        buffer.mode = "segments";  // the fragments' own times: gaps stay gaps, and are jumped
        buffer.addEventListener("updateend", pump);
        buffer.addEventListener("error", function () { fail("the browser could not append " + name); });
        state.buffer = buffer;
        pump();
      }, {once: true});
      video.muted = true;
      video.playsInline = true;
      video.src = URL.createObjectURL(source);
    }

    function pump() {
      const buffer = state.buffer;
      if (!buffer || buffer.updating || state.source.readyState !== "open") return;
      chase();
      if (trim(buffer)) return;  // its updateend pumps again
      if (!state.queue.length) return;
      const chunks = state.queue;
      state.queue = [];
      try {
        buffer.appendBuffer(chunks.length === 1 ? chunks[0] : joined(chunks));
        state.appends += 1;
        state.retries = 0;
      } catch (error) {
        if (error.name === "QuotaExceededError") {
          state.queue = chunks.slice(-1).concat(state.queue);  // keep the newest, trim next
          trim(buffer, true);
        } else {
          fail("cannot play " + name + ": " + error.message);
        }
      }
    }

    function joined(chunks) {
      const size = chunks.reduce(function (n, c) { return n + c.byteLength; }, 0);
      const out = new Uint8Array(size);
      let at = 0;
      for (const chunk of chunks) {
        out.set(new Uint8Array(chunk), at);
        at += chunk.byteLength;
      }
      return out;
    }

    // Keep close to the newest frame: jump when far behind (after a drop, a gap, a stall),
    // else a little faster while behind, then normal speed.
    function chase() {
      const ranges = video.buffered;
      if (!ranges.length) return;
      const last = ranges.length - 1;
      const end = ranges.end(last);
      const behind = end - video.currentTime;
      if (video.currentTime < ranges.start(last) || behind > LIVE_EDGE) {
        video.currentTime = Math.max(ranges.start(last), end - 0.04);
      } else {
        video.playbackRate = behind > CATCH_UP ? 1.1 : 1.0;
      }
      if (video.paused) video.play().catch(function () { /* autoplay refused: muted, retried */ });
    }

    function trim(buffer, now) {
      const ranges = video.buffered;
      if (!ranges.length) return false;
      const keepFrom = video.currentTime - KEEP;
      if (ranges.start(0) < keepFrom - (now ? 0 : KEEP)) {
        buffer.remove(0, keepFrom);
        return true;
      }
      return false;
    }

    function stopMse() {
      state.queue = [];
      state.buffer = null;
      if (state.source && state.source.readyState === "open") {
        try { state.source.endOfStream(); } catch (error) { /* closing anyway */ }
      }
      state.source = null;
      if (state.mode === "mse") {
        video.removeAttribute("src");
        video.load();
      }
      state.mode = null;
    }

    // -- MJPEG -----------------------------------------------------------------------------

    function startMjpeg(url) {
      state.mode = "mjpeg";
      const img = document.createElement("img");
      img.className = video.className;
      img.style.cssText = video.style.cssText;
      img.alt = name;
      if (video.width) img.width = video.width;
      if (video.height) img.height = video.height;
      img.onerror = function () { if (!state.closed) fail("the MJPEG view of " + name + " failed"); };
      img.src = new URL(url, window.location.href).href;
      state.display = video.style.display;
      video.style.display = "none";
      video.after(img);
      state.img = img;
      if (state.ws) state.ws.close();
    }

    connect();
    return {
      get mode() { return state.mode; },
      get connections() { return state.connections; },
      close: function () {
        state.closed = true;
        clearTimeout(state.timer);
        if (state.ws) state.ws.close();
        stopMse();
        if (state.img) {
          state.img.removeAttribute("src");
          state.img.remove();
          state.img = null;
          video.style.display = state.display || "";
        }
      },
    };
  }

  window.framebusPlayer = {attach: attach};
})();
