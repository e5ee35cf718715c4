// StreamView front end. Lane text lives in a per-model store filled by `initialize`, so deltas that arrive
// before any view is shown are kept and every view of the model shows the same text. Views append deltas as
// text nodes (O(delta) per update); a full redraw happens only on start, snapshot and end.
//
// Ends: the kernel's `end` message carries the tail, the final figures and the final text's UTF-16 length
// and CRC-32. When the text built from the deltas passes that check, it is stored in this model's `_texts`
// and `_lanes` here (JupyterLab saves the front-end model's state with the notebook, so the text need not
// cross the wire a second time) and the kernel gets an `ack`; otherwise we ask for a snapshot.

const stores = new Map();

function storeFor(model) {
  const uid = model.get("_uid");
  let st = stores.get(uid);
  if (!st) {
    st = { lanes: new Map(), order: [], views: new Set(), quiet: false };
    stores.set(uid, st);
  }
  return st;
}

function entry(st, name) {
  let e = st.lanes.get(name);
  if (!e) {
    e = { name, text: "", meta: { name, seq: -1, v: -1, status: "idle" }, asked: -1 };
    st.lanes.set(name, e);
  }
  return e;
}

function notify(st, name, kind, piece) {
  for (const v of st.views) v(name, kind, piece);
}

function send(model, msg) {
  try {
    model.send(msg);
  } catch (err) {
    // No live comm (a notebook opened without its kernel): the kernel falls back to a full sync.
  }
}

// zlib's CRC-32 over the UTF-16LE code units of a string: what the kernel computes with
// zlib.crc32(text.encode("utf-16-le")). Code units, not code points, so no encoder is needed.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32u16(s) {
  let c = 0xffffffff;
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    c = CRC_TABLE[(c ^ u) & 0xff] ^ (c >>> 8);
    c = CRC_TABLE[(c ^ (u >>> 8)) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

function askSnapshot(model, e, seq) {
  // Once per stream: a second failure leaves the end to the kernel's full-sync fallback.
  if (e.asked === seq) return;
  e.asked = seq;
  send(model, { t: "resync", lane: e.name });
}

function finalize(model, st, e, msg, text) {
  e.meta = { ...msg.meta };
  e.text = text;
  if (text.length !== msg.n || crc32u16(text) !== msg.h) {
    notify(st, e.name, "full");
    askSnapshot(model, e, msg.seq);
    return;
  }
  const texts = { ...(model.get("_texts") || {}), [e.name]: text };
  const lanes = [...(model.get("_lanes") || [])];
  const i = lanes.findIndex((m) => m.name === e.name);
  if (i >= 0) lanes[i] = msg.meta;
  else lanes.push(msg.meta);
  // Local state, not save_changes(): the kernel records the same values on the ack, without a round trip
  // of the text. The store is already up to date, so the change events need not redraw.
  st.quiet = true;
  try {
    model.set("_texts", texts);
    model.set("_lanes", lanes);
  } finally {
    st.quiet = false;
  }
  send(model, { t: "ack", lane: e.name, seq: msg.seq, h: msg.h });
  notify(st, e.name, "full");
}

function fromState(model, st) {
  if (st.quiet) return;
  const lanes = model.get("_lanes") || [];
  const texts = model.get("_texts") || {};
  st.order = lanes.map((m) => m.name);
  for (const m of lanes) {
    const e = entry(st, m.name);
    const newer = m.seq > e.meta.seq || (m.seq === e.meta.seq && m.v >= e.meta.v);
    if (!newer) continue;
    e.meta = { ...m };
    // Synced text is authoritative unless the lane is streaming deltas (then the live buffer is newer).
    if (m.mode !== "delta" || m.status !== "streaming") e.text = texts[m.name] ?? "";
  }
  notify(st, null, "all");
}

function onCustom(model, st, msg) {
  if (msg.t === "start" || msg.t === "snap") {
    const e = entry(st, msg.lane);
    if (!st.order.includes(msg.lane)) st.order.push(msg.lane);
    if (msg.t === "snap" && msg.h != null) return finalize(model, st, e, msg, msg.text);
    e.meta = { ...msg.meta };
    e.text = msg.t === "snap" ? msg.text : "";
    notify(st, msg.lane, "full");
  } else if (msg.t === "end") {
    const e = entry(st, msg.lane);
    if (!st.order.includes(msg.lane)) st.order.push(msg.lane);
    if (msg.seq !== e.meta.seq || msg.at > e.text.length) askSnapshot(model, e, msg.seq);
    else finalize(model, st, e, msg, e.text.slice(0, msg.at) + msg.s);
  } else if (msg.t === "d") {
    for (const [name, d] of Object.entries(msg.lanes)) {
      const e = entry(st, name);
      if (d.seq !== e.meta.seq || d.at !== e.text.length) {
        // Missed a start or a delta (view loaded late, message dropped): ask once per stream for a snapshot.
        askSnapshot(model, e, d.seq);
        continue;
      }
      e.text += d.s;
      if (d.m && d.m.v > e.meta.v) Object.assign(e.meta, d.m);
      notify(st, name, "append", d.s);
    }
  }
}

function fmt(m) {
  const parts = [m.status || "idle"];
  if (m.ttft_ms != null) parts.push(`TTFT ${Math.round(m.ttft_ms)} ms`);
  if (m.tokens_per_s != null) parts.push(`${m.tokens_per_s.toFixed(1)} tok/s`);
  parts.push(`${m.tokens ?? 0} tokens`);
  if (m.cache) parts.push(`cache ${m.cache}`);
  return parts.join(" · ");
}

function initialize({ model }) {
  const st = storeFor(model);
  fromState(model, st);
  model.on("msg:custom", (msg) => onCustom(model, st, msg));
  model.on("change:_lanes", () => fromState(model, st));
  model.on("change:_texts", () => fromState(model, st));
  // Tells the kernel a live front end exists: from now on it ends streams with `end` + our `ack`.
  send(model, { t: "hello" });
  return () => stores.delete(model.get("_uid"));
}

function render({ model, el }) {
  const st = storeFor(model);
  const root = document.createElement("div");
  root.className = "wb-sv";
  el.appendChild(root);
  const doms = new Map();

  function laneDom(name) {
    let d = doms.get(name);
    if (d) return d;
    const box = document.createElement("div");
    box.className = "wb-sv-lane";
    const head = document.createElement("div");
    head.className = "wb-sv-head";
    const title = document.createElement("b");
    title.textContent = name;
    const stats = document.createElement("span");
    stats.className = "wb-sv-stats";
    head.append(title, " ", stats);
    const note = document.createElement("div");
    note.className = "wb-sv-note";
    const err = document.createElement("div");
    err.className = "wb-sv-error";
    const pre = document.createElement("pre");
    pre.className = "wb-sv-text";
    box.append(head, note, err, pre);
    d = { box, stats, note, err, pre, status: "" };
    doms.set(name, d);
    return d;
  }

  function paintMeta(name) {
    const e = entry(st, name);
    const d = laneDom(name);
    d.stats.textContent = fmt(e.meta);
    d.note.textContent = e.meta.note || "";
    d.err.textContent = e.meta.error || "";
    d.box.dataset.status = e.meta.status || "idle";
  }

  function stick(pre, fn) {
    const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    fn();
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  function layout() {
    root.replaceChildren(...st.order.map((n) => laneDom(n).box));
    root.style.gridTemplateColumns = `repeat(${Math.max(1, st.order.length)}, minmax(0, 1fr))`;
    for (const n of st.order) {
      const d = laneDom(n);
      stick(d.pre, () => { d.pre.textContent = entry(st, n).text; });
      paintMeta(n);
    }
  }

  const view = (name, kind, piece) => {
    if (kind === "all" || !doms.has(name) || !st.order.includes(name)) return layout();
    const d = laneDom(name);
    if (kind === "append") stick(d.pre, () => d.pre.append(piece));
    else stick(d.pre, () => { d.pre.textContent = entry(st, name).text; });
    paintMeta(name);
  };
  st.views.add(view);
  layout();
  return () => st.views.delete(view);
}

export default { initialize, render };
