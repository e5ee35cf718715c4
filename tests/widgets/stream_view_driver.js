// Evaluated in a real Chromium page by test_stream_view_js.py: loads stream_view.js as an ES module from a
// blob URL, drives it with a fake anywidget model, replays recorded comm messages, reads back the real DOM.
async (input) => {
  const url = URL.createObjectURL(new Blob([input.esm], { type: "text/javascript" }));
  const mod = (await import(url)).default;
  const attrs = { ...input.state };
  const handlers = {};
  const sent = [];
  const fire = (name, arg) => (handlers[name] || []).forEach((cb) => cb(arg));
  let saved = 0;
  const model = {
    get: (k) => attrs[k],
    // Like Backbone: a local set changes the attribute (what JupyterLab saves) and fires change events.
    set: (k, v) => { attrs[k] = v; fire(`change:${k}`); },
    on: (name, cb) => { (handlers[name] ||= []).push(cb); },
    off: () => {},
    send: (m) => sent.push(m),
    save_changes: () => { saved += 1; },
  };
  const el = document.createElement("div");
  document.body.replaceChildren(el);
  const initAt = input.init_at ?? 0;
  const renderAt = input.render_at ?? 0;
  input.messages.forEach((m, i) => {
    if (i === initAt) mod.initialize({ model });
    if (i === renderAt) mod.render({ model, el });
    if (m.method === "update") Object.assign(attrs, m.state);
    if (i < initAt) return; // custom messages before the ESM loaded are lost; state still lands
    if (m.method === "update") for (const k of Object.keys(m.state)) fire(`change:${k}`);
    else if (m.method === "custom") fire("msg:custom", m.content);
  });
  if (input.messages.length <= initAt) mod.initialize({ model });
  if (input.messages.length <= renderAt) mod.render({ model, el });
  const lanes = {};
  for (const box of el.querySelectorAll(".wb-sv-lane")) {
    const q = (sel) => box.querySelector(sel).textContent;
    lanes[box.querySelector("b").textContent] = {
      text: q(".wb-sv-text"), stats: q(".wb-sv-stats"), note: q(".wb-sv-note"), error: q(".wb-sv-error"),
    };
  }
  return { lanes, sent, saved, attrs: { _texts: attrs._texts, _lanes: attrs._lanes } };
}
