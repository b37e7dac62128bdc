// The console's page: the stream list, the previews and a stream's live view and charts,
// kept up to date by the server's /api/events WebSocket (one broker poll for every page).
"use strict";
(function () {
  const WINDOW = 300;         // seconds of history in the charts (the server keeps as much)
  const PREVIEW_EVERY = 3000; // ms between a preview's pictures: low rate, for many streams
  const streams = new Map();  // name -> {row, history, tr, card}
  let viewing = null;         // {name, player}
  let socket = null;

  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#streams tbody");
  const COLUMNS = ["name", "host", "geometry", "format", "fps", "subscribers", "dropped",
                   "decode", "packets", "age", "alive", "chart"];
  const NUMERIC = new Set(["fps", "subscribers", "dropped", "age"]);

  function cell(row, column) {
    switch (column) {
      case "fps": return row.fps.toFixed(1);
      case "dropped": return row.dropped ?? "-";
      case "decode": return row.decode ? row.decode + (row.decoding === false ? " (idle)" : "") : "-";
      case "packets": return packets(row.packets);
      case "age": return row.age == null ? "-" : row.age.toFixed(1) + " s ago";
      case "alive": return (row.alive ? "alive" : "dead") + " pid " + row.pid;
      case "name": return row.name + (row.kind === "packets" ? " (packets)" : "");
      default: return String(row[column] ?? "-");
    }
  }

  // A packet stream's figures, as `framebus ls` shows them.
  function packets(p) {
    if (!p) return "-";
    const parts = [p.fps.toFixed(1) + " pkt/s"];
    if (p.bitrate != null) parts.push((p.bitrate / 1e6).toFixed(2) + " Mb/s");
    if (p.keyint) parts.push("key every " + p.keyint.toFixed(1) + " s");
    return parts.join(", ");
  }

  function addStream(name) {
    const tr = document.createElement("tr");
    tr.dataset.name = name;
    for (const column of COLUMNS) {
      const td = tr.insertCell();
      td.dataset.col = column;
      if (NUMERIC.has(column)) td.className = "num";
      if (column === "chart") {
        td.innerHTML = '<svg class="spark" viewBox="0 0 120 22" preserveAspectRatio="none"></svg>';
      }
    }
    tr.addEventListener("click", () => openView(name));
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.name = name;
    card.innerHTML = '<img alt="" loading="lazy"><p><span class="n"></span><span class="s"></span></p>';
    card.querySelector(".n").textContent = name;
    // No picture yet (or no preview route): an empty frame, not a broken image's icon.
    card.querySelector("img").addEventListener("error", (e) => { e.target.style.visibility = "hidden"; });
    card.querySelector("img").addEventListener("load", (e) => { e.target.style.visibility = ""; });
    card.addEventListener("click", () => openView(name));
    const entry = { row: null, history: [], tr, card, shown: null };
    streams.set(name, entry);
    place(name, tr, card);
    return entry;
  }

  // Rows and cards in name order.
  function place(name, tr, card) {
    const names = [...streams.keys()].sort();
    const next = names[names.indexOf(name) + 1];
    const after = next && streams.get(next);
    tbody.insertBefore(tr, after ? after.tr : null);
    $("grid").insertBefore(card, after ? after.card : null);
  }

  function update(name, row) {
    const entry = streams.get(name) || addStream(name);
    entry.row = row;
    entry.tr.dataset.alive = entry.card.dataset.alive = String(row.alive);
    for (const td of entry.tr.cells) {
      const column = td.dataset.col;
      if (column === "chart") continue;
      const text = cell(row, column);
      if (td.textContent !== text) td.textContent = text;
      if (column === "alive") td.className = row.alive ? "alive" : "dead";
    }
    const state = entry.card.querySelector(".s");
    state.textContent = row.alive ? row.fps.toFixed(1) + " fps" : "dead";
    state.className = "s " + (row.alive ? "alive" : "dead");
  }

  function remove(name) {
    const entry = streams.get(name);
    if (!entry) return;
    entry.tr.remove();
    entry.card.remove();
    streams.delete(name);
    if (viewing && viewing.name === name) closeView();
  }

  function addPoint(name, point) {
    const entry = streams.get(name);
    if (!entry) return;
    entry.history.push(point);
    const oldest = point[0] - WINDOW;
    while (entry.history.length && entry.history[0][0] < oldest) entry.history.shift();
  }

  function drawCharts() {
    for (const entry of streams.values()) {
      window.framebusCharts.line(entry.tr.querySelector("svg.spark"), entry.history, WINDOW);
    }
    if (viewing) {
      const entry = streams.get(viewing.name);
      if (!entry) return;
      window.framebusCharts.line($("chart-fps"), entry.history, WINDOW);
      const drops = window.framebusCharts.bars($("chart-drops"), entry.history, WINDOW);
      $("fps-now").textContent = entry.row ? entry.row.fps.toFixed(1) : "";
      $("drops-now").textContent = drops.toFixed(1);
    }
  }

  function summarize(message) {
    let alive = 0;
    for (const entry of streams.values()) if (entry.row && entry.row.alive) alive++;
    $("summary").textContent = `${streams.size} streams, ${alive} alive`;
    $("empty").hidden = streams.size > 0;
    const status = $("status");
    status.textContent = message.error || "";
    status.className = "status" + (message.error ? " error" : "");
  }

  function onMessage(event) {
    const message = JSON.parse(event.data);
    if (message.full) {
      for (const name of [...streams.keys()]) if (!(name in message.streams)) remove(name);
    }
    for (const [name, row] of Object.entries(message.streams)) update(name, row);
    for (const name of message.gone || []) remove(name);
    if (message.full) {
      for (const [name, points] of Object.entries(message.history)) {
        const entry = streams.get(name);
        if (entry) entry.history = points;
      }
    }
    for (const [name, point] of Object.entries(message.points || {})) addPoint(name, point);
    summarize(message);
    drawCharts();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/api/events`);
    socket.onmessage = onMessage;
    socket.onclose = () => {
      $("status").textContent = "connection to the console lost; reconnecting…";
      $("status").className = "status error";
      setTimeout(connect, 1000);
    };
  }

  // Previews: a new picture every PREVIEW_EVERY ms for the cards on screen, of live streams.
  const onScreen = new Set();
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const name = e.target.dataset.name;
      if (!e.isIntersecting) { onScreen.delete(name); continue; }
      onScreen.add(name);
      const img = e.target.querySelector("img");
      if (!img.src) img.src = `/preview/${encodeURIComponent(name)}.jpg?t=${Date.now()}`;
    }
  });
  new MutationObserver((changes) => {
    for (const c of changes) for (const node of c.addedNodes) observer.observe(node);
  }).observe($("grid"), { childList: true });

  function refreshPreviews() {
    if (document.hidden) return;
    const now = Date.now();
    for (const name of onScreen) {
      const entry = streams.get(name);
      if (!entry || !entry.row || (!entry.row.alive && entry.card.querySelector("img").src)) continue;
      entry.card.querySelector("img").src = `/preview/${encodeURIComponent(name)}.jpg?t=${now}`;
    }
  }

  function openView(name) {
    closeView();
    $("view").hidden = false;
    $("view-name").textContent = name;
    $("view-error").textContent = "";
    location.hash = "stream=" + encodeURIComponent(name);
    let player = null;
    if (window.framebusPlayer) {
      player = window.framebusPlayer.attach($("video"), name, {
        onError: (why) => { $("view-error").textContent = String(why); },
      });
    } else {
      $("view-error").textContent = "live view unavailable (no player.js)";
    }
    viewing = { name, player };
    drawCharts();
  }

  function closeView() {
    if (viewing && viewing.player) viewing.player.close();
    viewing = null;
    $("view").hidden = true;
    history.replaceState(null, "", location.pathname);
  }

  $("view-close").addEventListener("click", closeView);
  $("window").textContent = String(WINDOW / 60);
  connect();
  refreshPreviews();
  setInterval(refreshPreviews, PREVIEW_EVERY);
  const wanted = /^#stream=(.+)$/.exec(location.hash);
  if (wanted) openView(decodeURIComponent(wanted[1]));
})();
