/* cnnviz serve: the page. It talks to the server only through its HTTP API
 * (/api/..., implemented in src/serve/) and keeps the whole view in the URL
 * hash, so that a link brings the same view back. Opacity, colormap and the
 * layer slider redraw from maps kept in memory, without a request.
 *
 * Element ids (stable; tests/serve_browser_test.py relies on them):
 *   #model          select   the model (/api/models; unusable ones disabled, their problem as title)
 *   #images         select   the image (the server's folder, then uploads)
 *   #upload         input[type=file]  uploads the picked file (POST /api/images); dropping a
 *                   file anywhere on the page does the same
 *   #opacity        range 0..1  heatmap opacity (both panes; no request)
 *   #colormap       select   heatmap colormap (both panes; no request)
 *   #compare        checkbox shows pane B
 *   #permalink      a        href = this view's URL; clicking copies it
 *   #status         what is in flight ("computing…"), or the last timing when idle
 *   #error          the last error (the server's JSON "error"), hidden when none; #error-text holds it
 *   #side-title     the side list's title: "Top 5", "Detections" or "Classes" (the model's task)
 *   #predictions    ol       a classifier's top 5 (each li: data-class, data-probability), a
 *                            detector's detections (data-box: its rank, data-score) or a
 *                            segmenter's classes (data-class, data-share); clicking one makes
 *                            it the target of the active pane
 *   #labels         datalist of the model's labels (for the class inputs)
 *   Per pane, P = a or b (section #pane-a, #pane-b; B only while #compare is on):
 *   #P-method select, #P-class input (index or label, case-insensitive; empty = top class; a
 *   detector's box: its rank or x1,y1,x2,y2[:label]), #P-class-name (its label: Class or Box),
 *   #P-class-clear, #P-score select, #P-cf checkbox (counterfactual),
 *   #P-layer range (layer methods: one step per layer /api/maps returned), #P-layer-name,
 *   #P-view select and #P-gray checkbox (input-space methods), #P-canvas,
 *   #P-layer-row, #P-view-row: the rows of those controls (class "na" when they do not apply),
 *   #P-caption, #P-png (button: the canvas as PNG), #P-map-png and #P-npy (download links).
 *   #P-head select (attention maps: "" for the mean of the heads, or a head index), in
 *   #P-head-field (class "na" when the layer has no per-head maps),
 *   #P-canvas carries data-method, data-class, data-layer, data-head, data-view, data-kind: what
 *   it shows; data-box (a detector's target as asked), data-boxes (the detections drawn),
 *   data-outline (a segmenter's class outlined), data-width and data-height (the image's size).
 *   A click on it picks a detector's box (the smallest under the pointer) or the class of a
 *   segmenter's pixel as the pane's target.
 * document.body.dataset.state is "busy" while any request is in flight and "ready" once the
 * page is idle with everything drawn; body.dataset.ready counts the turns to "ready".
 *
 * URL hash (permalink), each value URI-encoded:
 *   #model=M&image=ID&opacity=0.5&cmap=jet&a=PANE[&b=PANE]      (b present = compare on)
 *   PANE = method,class,layer,score,counterfactual(0|1),view,gray(0|1),head,box
 *          (class empty = top class; head empty = the mean of the heads)
 * The page's own ?token=T is sent as the X-Cnnviz-Token header on fetches and as token=T in
 * the download links' URLs.
 */
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get('token') || '';
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const { el, pct } = cnnvizDom;  // assets/common/dom.js
  const num = (x) => (Math.abs(x) >= 1000 || (x !== 0 && Math.abs(x) < 0.01) ? x.toExponential(2)
                                                                           : x.toFixed(3));
  function bytes(n) {
    return n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + ' MiB'
         : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' bytes';
  }

  // ---------------------------------------------------------------- requests

  // A result nobody wants any more (the user moved on); never shown as an error.
  class Stale extends Error {}

  function query(q) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(q || {})) {
      if (v !== null && v !== undefined && v !== '') u.set(k, String(v));
    }
    return u;
  }
  // A URL for links (and anything else that cannot send headers): the token
  // travels in the query.
  function linkUrl(path, q) {
    const u = query(q);
    if (token) u.set('token', token);
    return path + '?' + u;
  }

  // fetch() with the token header, JSON errors turned into Error(error), and
  // 503 (queue full) retried after Retry-After. `as`: json | bytes | blob.
  async function api(path, q, {method = 'GET', body, as = 'json', item} = {}) {
    const qs = query(q).toString();
    const url = path + (qs ? '?' + qs : '');
    const headers = {};
    if (token) headers['X-Cnnviz-Token'] = token;
    if (body) headers['Content-Type'] = 'application/octet-stream';
    for (let attempt = 1; ; attempt++) {
      let res;
      try {
        res = await fetch(url, {method, body, headers});
      } catch (e) {
        throw new Error(path + ': no answer from the server (is cnnviz serve still running?)');
      }
      if (res.status === 503 && attempt <= 30) {
        // Retry-After is seconds (or, per HTTP, a date: then wait a second).
        const s = Math.min(Math.max(Number(res.headers.get('Retry-After')) || 1, 0.1), 60);
        const label = item ? item.label : null;
        if (item) item.label = 'server busy, retrying in ' + s + ' s…';
        renderStatus();
        await sleep(s * 1000);
        if (item) item.label = label;
        continue;
      }
      if (!res.ok) {
        let msg = '';
        try { msg = (await res.json()).error; } catch (e) { /* not JSON */ }
        msg = msg || path + ': HTTP ' + res.status + ' ' + res.statusText;
        if (res.status === 403) msg += ' (open the URL cnnviz serve printed: it carries ?token=…)';
        throw new Error(msg);
      }
      if (as === 'bytes') return new Uint8Array(await res.arrayBuffer());
      if (as === 'blob') return res.blob();
      return res.json();
    }
  }

  // At most a few map downloads at once, so that one pane's prefetch of every
  // layer does not hold up the other pane's requests for long.
  const limiter = {running: 0, queue: []};
  function limited(fn) {
    return new Promise((resolve, reject) => {
      const start = () => {
        limiter.running++;
        fn().then(resolve, reject).finally(() => {
          limiter.running--;
          const next = limiter.queue.shift();
          if (next) next();
        });
      };
      if (limiter.running < 4) start(); else limiter.queue.push(start);
    });
  }

  // ------------------------------------------------------ busy state, errors

  const busy = {items: [], idle: '', timer: 0, turns: 0};
  // Runs fn (sync or async) as one tracked operation: the page is "busy" from
  // now (synchronously) until it settles. Returns its promise.
  function track(label, fn) {
    const item = {label};
    busy.items.push(item);
    renderStatus();
    let p;
    try { p = Promise.resolve(fn(item)); } catch (e) { p = Promise.reject(e); }
    return p.finally(() => {
      busy.items.splice(busy.items.indexOf(item), 1);
      renderStatus();
    });
  }
  function renderStatus() {
    const status = $('status');
    clearTimeout(busy.timer);
    if (busy.items.length) {
      document.body.dataset.state = 'busy';
      status.textContent = busy.items[busy.items.length - 1].label;
      return;
    }
    // "ready" only after the settling code has drawn (a task later).
    busy.timer = setTimeout(() => {
      if (busy.items.length) return;
      status.textContent = busy.idle;
      document.body.dataset.ready = String(++busy.turns);
      document.body.dataset.state = 'ready';
    }, 0);
  }
  function showError(e) {
    if (e instanceof Stale) return;
    const msg = e && e.message ? e.message : String(e);
    console.error(msg);
    $('error-text').textContent = msg;
    $('error').hidden = false;
  }
  function clearError() {
    $('error').hidden = true;
    $('error-text').textContent = '';
  }
  // track() whose failure is shown in #error.
  const run = (label, fn) => track(label, fn).catch(showError);

  // ------------------------------------------------------------ state, data

  // What the user chose; the hash mirrors it.
  const S = {model: '', image: '', opacity: 0.5, cmap: 'jet', compare: false, active: 'a'};
  // What the server told us.
  const D = {
    info: {}, models: [], defaultModel: '', methods: new Map(), defaultMethod: '', colormaps: {}, luts: new Map(),
    images: [], uploads: [], labels: [], labelIndex: new Map(), layers: {layers: [], default: ''},
    classify: null, grid: null, source: null, sources: new Map(), imageP: null, imageGen: 0, scoreNames: [],
  };
  const panes = {};

  const model = () => D.models.find((m) => m.name === S.model) || {};
  const imageName = () => {
    const i = [...D.images, ...D.uploads].find((x) => x.id === S.image);
    return i ? i.name : S.image;
  };
  // The most boxes drawn besides a pane's targets (the best ones).
  const DRAWN_BOXES = 50;
  // What the model does: 'classify', 'detect' (targets are boxes) or
  // 'segment' (targets are classes of pixels).
  const task = () => model().task || 'classify';
  const isBackground = (label) => /^_*background_*$/i.test(label || '');
  // The class a pane explains when none is given: a classifier's most
  // probable, a segmenter's largest but the background.
  function topClass() {
    const c = D.classify;
    if (!c) return null;
    if (c.task === 'segment') {
      const s = (c.segments || []).find((x) => !isBackground(x.label));
      return s ? s.class : null;
    }
    return c.predictions && c.predictions.length ? c.predictions[0].index : null;
  }
  // Class k's colour: the PASCAL VOC palette, as the command line draws
  // masks (a detector's boxes take class k + 1's, as `cnnviz detect` does).
  function classColour(k) {
    let r = 0, g = 0, b = 0;
    for (let j = 0, c = k; j < 8; j++, c >>= 3) {
      r |= (c & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
    }
    return 'rgb(' + r + ',' + g + ',' + b + ')';
  }
  // The scores a pane may pick: a detector's and a segmenter's targets are
  // explained by their logit only.
  function paneScores(p) {
    const all = p.def().scores || [];
    return task() === 'classify' ? all : all.filter((x) => x === 'logit');
  }
  const methodFits = (m) => !m.tasks || m.tasks.includes(task());
  const visiblePanes = () => (S.compare ? [panes.a, panes.b] : [panes.a]);

  // The 256-entry colour table of a colormap, as RGBA bytes.
  function lut(name) {
    if (!D.luts.has(name)) {
      const table = D.colormaps[name] || [];
      const out = new Uint8ClampedArray(256 * 4);
      for (let i = 0; i < 256; i++) {
        const c = table[i] || [i, i, i];
        out.set([c[0], c[1], c[2], 255], i * 4);
      }
      D.luts.set(name, out);
    }
    return D.luts.get(name);
  }

  // ----------------------------------------------------------- URL hash

  function paneHash(p) {
    return [p.method, p.cls === null ? '' : p.cls, p.layer, p.score, p.cf ? 1 : 0, p.view,
            p.gray ? 1 : 0, p.head === null ? '' : p.head, p.box === null ? '' : p.box]
        .map((v) => encodeURIComponent(String(v))).join(',');
  }
  function hashText() {
    const parts = [['model', S.model], ['image', S.image], ['opacity', S.opacity], ['cmap', S.cmap]]
        .map(([k, v]) => k + '=' + encodeURIComponent(String(v)));
    parts.push('a=' + paneHash(panes.a));
    if (S.compare) parts.push('b=' + paneHash(panes.b));
    return '#' + parts.join('&');
  }
  let writtenHash = '', hashTimer = 0;
  function saveHash() {
    clearTimeout(hashTimer);
    writtenHash = hashText();
    const url = location.pathname + location.search + writtenHash;
    if (location.hash !== writtenHash) history.replaceState(null, '', url);
    $('permalink').href = url;
  }
  // For sliders: browsers throttle history.replaceState when it is called on
  // every input event of a drag.
  function saveHashSoon() {
    clearTimeout(hashTimer);
    hashTimer = setTimeout(saveHash, 150);
  }
  function parseHash(h) {
    const out = {};
    for (const part of h.replace(/^#/, '').split('&')) {
      const i = part.indexOf('=');
      if (i <= 0) continue;
      const k = part.slice(0, i), v = part.slice(i + 1);
      try {
        if (k === 'a' || k === 'b') {
          const f = v.split(',').map(decodeURIComponent);
          out[k] = {method: f[0] || '', cls: f[1] || '', layer: f[2] || '', score: f[3] || '',
                    cf: f[4] === '1', view: f[5] || '', gray: f[6] === '1', head: f[7] || '',
                    box: f[8] || ''};
        } else {
          out[k] = decodeURIComponent(v);
        }
      } catch (e) { /* a malformed escape: ignore that field */ }
    }
    return out;
  }
  // Applies a parsed hash to S and the panes; what names nothing here is
  // reported and replaced by the default.
  function applyHash(h) {
    const problems = [];
    if (h.model) {
      const m = D.models.find((x) => x.name === h.model);
      if (!m) problems.push('model "' + h.model + '" is not on this server');
      else if (m.problem) problems.push('model ' + h.model + ': ' + m.problem);
      else S.model = h.model;
      // (The panes' methods are checked against the model's task below.)
    }
    if (h.image) {
      if ([...D.images, ...D.uploads].some((x) => x.id === h.image)) S.image = h.image;
      else problems.push('image "' + h.image + '" is not on this server (uploads do not outlive it)');
    }
    const op = parseFloat(h.opacity);
    if (h.opacity !== undefined && op >= 0 && op <= 1) S.opacity = op;
    if (h.cmap && D.colormaps[h.cmap]) S.cmap = h.cmap;
    for (const id of ['a', 'b']) {
      const ph = h[id];
      if (!ph) continue;
      const p = panes[id];
      if (D.methods.has(ph.method)) p.method = ph.method;
      else if (ph.method) problems.push('pane ' + id.toUpperCase() + ': no method "' + ph.method + '"');
      p.cls = /^\d+$/.test(ph.cls) ? Number(ph.cls) : null;
      p.layer = ph.layer;
      p.score = ph.score;
      p.cf = ph.cf;
      p.view = ph.view;
      p.gray = ph.gray;
      p.head = /^\d+$/.test(ph.head) ? Number(ph.head) : null;
      p.box = ph.box ? ph.box : null;
      fixPaneOptions(p);
    }
    S.compare = !!h.b;
    if (problems.length) showError(new Error('permalink: ' + problems.join('; ')));
  }

  // ------------------------------------------------------ shared controls

  function fillModels() {
    const sel = $('model');
    sel.replaceChildren(...D.models.map((m) => el('option', {
      value: m.name, disabled: !!m.problem, title: m.problem || null,
      text: m.name + (m.arch && m.arch !== m.name ? ' (' + m.arch + ')' : '') +
            (m.task && m.task !== 'classify' ? ', ' + (m.task === 'detect' ? 'detector' : 'segmenter') : '') +
            (m.weights === 'random' ? ' (random)' : '') + (m.problem ? ' (unusable)' : ''),
    })));
    sel.value = S.model;
  }
  function fillImages() {
    const sel = $('images');
    const group = (label, list) => (list.length
      ? el('optgroup', {label}, ...list.map((i) => el('option', {value: i.id, text: i.name, title: i.id})))
      : null);
    sel.replaceChildren(...[group('Folder', D.images), group('Uploads', D.uploads)].filter(Boolean));
    if (!D.images.length && !D.uploads.length) {
      sel.append(el('option', {value: '', text: 'no images: upload one'}));
    }
    sel.value = S.image;
  }
  function fillColormaps() {
    const sel = $('colormap');
    sel.replaceChildren(...Object.keys(D.colormaps).map((n) => el('option', {value: n, text: n})));
    sel.value = S.cmap;
  }
  function fillLabels() {
    const frag = document.createDocumentFragment();
    D.labels.forEach((l, i) => frag.append(el('option', {value: l, label: '#' + i})));
    $('labels').replaceChildren(frag);
  }
  function renderShared() {
    $('model').value = S.model;
    $('images').value = S.image;
    $('colormap').value = S.cmap;
    $('opacity').value = String(S.opacity);
    $('opacity-value').textContent = Math.round(S.opacity * 100) + '%';
    $('compare').checked = S.compare;
    panes.b.node.hidden = !S.compare;
    $('panes').classList.toggle('two', S.compare);
    syncRows();
    if (!S.compare) S.active = 'a';
    for (const p of Object.values(panes)) p.node.classList.toggle('active', p.id === S.active);
    const t = task();
    $('side-title').textContent = t === 'detect' ? 'Detections' : t === 'segment' ? 'Classes' : 'Top 5';
    $('pred-hint').textContent = (t === 'detect' ? 'click a box, here or on the image, to explain it'
        : t === 'segment' ? 'click a class, or a pixel of the image, to explain its pixels'
        : 'click a class to explain it') + (S.compare ? ' in pane ' + S.active.toUpperCase() : '');
    const m = model();
    $('notes').replaceChildren(...(m.weights === 'random'
      ? [el('p', {class: 'note', text: 'Random weights: ' + m.name + ' is untrained, so its ' +
                  'predictions and maps are meaningless.'})] : []));
  }

  // One entry of the side list: a bar of `share` (0..1), its rank, a
  // label, the panes that explain it, and a figure.
  function sideItem(data, share, rank, label, panesOn, figure, title, swatch) {
    return el('li', Object.assign({tabindex: 0, title, class: panesOn.length ? 'target' : null}, data),
      el('i', {style: 'width:' + (100 * Math.max(0, Math.min(1, share))).toFixed(1) + '%'}),
      el('span', {class: 'k', text: String(rank)}),
      ...(swatch ? [el('span', {class: 'sw', style: 'background:' + swatch})] : []),
      el('span', {class: 'l', text: label}),
      el('span', {class: 'tags'}, ...(S.compare ? panesOn.map((p) => el('b', {text: p.id.toUpperCase()})) : [])),
      el('span', {class: 'p', text: figure}));
  }

  function sideItems(c) {
    if (c.task === 'detect') {
      return (c.detections || []).map((d) => sideItem(
        {'data-box': d.index, 'data-score': d.score}, d.score, d.index, d.label,
        visiblePanes().filter((p) => p.targetBoxes().includes(d.index)), num(d.score),
        'box ' + d.index + ': ' + [d.x1, d.y1, d.x2, d.y2].map((v) => Math.round(v)).join(', ') +
        ' (class #' + d.class + ')', classColour(d.class + 1)));
    }
    if (c.task === 'segment') {
      return (c.segments || []).map((a, i) => sideItem(
        {'data-class': a.class, 'data-share': a.share}, a.share, i + 1, a.label,
        visiblePanes().filter((p) => p.targets() === a.class), pct(a.share),
        '#' + a.class + ', ' + a.pixels + ' pixels', classColour(a.class)));
    }
    const top = c.predictions.length ? c.predictions[0].probability : 1;
    return c.predictions.map((pr, i) => sideItem(
      {'data-class': pr.index, 'data-probability': pr.probability}, pr.probability / (top || 1), i + 1,
      pr.label, visiblePanes().filter((p) => p.targets() === pr.index), pct(pr.probability),
      '#' + pr.index + ', logit ' + num(pr.logit)));
  }

  function renderPredictions() {
    const list = $('predictions');
    const c = D.classify;
    if (!c) { list.replaceChildren(); return; }
    list.replaceChildren(...sideItems(c));
    if (c.task === 'detect' && !(c.detections || []).length) {
      list.append(el('li', {class: 'none', text: 'no box scores above ' + c.min_score}));
    }
    const m = model();
    const facts = [
      ['image', imageName()],
      ['size', c.width + ' × ' + c.height],
      ['crop', c.task === 'classify' ? c.crop.width + ' × ' + c.crop.height + ' at ' + c.crop.x + ', ' + c.crop.y
                                     : null],
      ['model', (m.arch || m.name || c.model) + (m.weights ? ', ' + m.weights : '')],
      ['classes', m.classes],
      ['decoding', c.task === 'detect' ? 'score > ' + c.min_score + ', NMS IoU ' + c.iou : null],
      ['drawn', c.task === 'detect' && (c.detections || []).length > DRAWN_BOXES
        ? 'the targets and the best ' + DRAWN_BOXES + ' other boxes' : null],
      [c.task === 'classify' ? 'classify' : c.task, c.ms ? c.ms.toFixed(0) + ' ms' : 'cached'],
    ].filter(([, v]) => v !== undefined && v !== null && v !== '');
    $('facts').replaceChildren(...facts.flatMap(([k, v]) =>
      [el('dt', {text: k}), el('dd', {text: String(v)})]));
  }

  // ---------------------------------------------------------------- panes

  const KIND_GROUPS = [['layer-map', 'Layer maps'], ['input-gradient', 'Input gradients'],
                       ['input-product', 'Input attributions']];

  function makePane(id) {
    const node = $('pane-template').content.firstElementChild.cloneNode(true);
    node.id = 'pane-' + id;
    const e = {};
    for (const x of node.querySelectorAll('[data-role]')) {
      e[x.dataset.role] = x;
      x.id = id + '-' + x.dataset.role;
    }
    e.badge.textContent = id.toUpperCase();
    const p = {
      id, node, el: e,
      // the choice
      method: '', cls: null, box: null, layer: '', head: null, score: '', cf: false, view: '', gray: false,
      // what the server gave for it
      gen: 0, maps: null, mapsKey: '', query: null, u8: new Map(), u8data: new Map(),
      png: new Map(), pngdata: new Map(), heat: null, error: '',
      def() { return D.methods.get(this.method) || {}; },
      // The class this pane explains (null: the method needs none, or the
      // model is a detector).
      targets() {
        if (!(this.def().scores || []).length || task() === 'detect') return null;
        return this.cls !== null ? this.cls : this.maps ? this.maps.class : topClass();
      },
      // A detector's detections this pane explains (their indices).
      targetBoxes() {
        if (!(this.def().scores || []).length || task() !== 'detect') return [];
        if (this.maps && Array.isArray(this.maps.matched)) return this.maps.matched;
        return this.box === null ? [0] : /^\d+$/.test(this.box) ? [Number(this.box)] : [];
      },
    };
    $('panes').append(node);
    wirePane(p);
    return p;
  }

  function fillMethods(p) {
    const all = [...D.methods.values()];
    const groups = KIND_GROUPS.map(([kind, label]) => [label, all.filter((m) => m.kind === kind)]);
    const known = new Set(KIND_GROUPS.map(([k]) => k));
    groups.push(['Other', all.filter((m) => !known.has(m.kind))]);
    p.el.method.replaceChildren(...groups.filter(([, ms]) => ms.length).map(([label, ms]) =>
      el('optgroup', {label}, ...ms.map((m) => el('option', {value: m.name, text: m.name, title: m.summary})))));
  }

  // Makes the pane's score, counterfactual and view fit its method.
  function fixPaneOptions(p) {
    if (p.method && !methodFits(p.def())) {
      const d = D.methods.get(D.defaultMethod);
      p.method = d && methodFits(d) ? d.name : ([...D.methods.values()].find(methodFits) || {}).name || '';
    }
    const m = p.def();
    const scores = paneScores(p);
    if (!scores.includes(p.score)) p.score = scores[0] || '';
    if (!m.counterfactual) p.cf = false;
    const views = m.views || [];
    if (!views.includes(p.view)) p.view = views[0] || '';
  }

  // The pane's controls from its state (no request).
  function renderPaneControls(p) {
    const m = p.def();
    const e = p.el;
    for (const o of e.method.querySelectorAll('option')) {
      const fits = methodFits(D.methods.get(o.value) || {});
      o.disabled = !fits;
      o.title = fits ? (D.methods.get(o.value) || {}).summary || '' : o.value + ' explains a detector\'s boxes only';
    }
    e.method.value = p.method;
    e.title.textContent = p.method || '—';
    e.summary.textContent = m.summary || '';
    e.summary.title = m.summary || '';
    const scores = paneScores(p);
    e.score.replaceChildren(...(scores.length ? [] : [el('option', {value: '', text: 'none'})]),
      ...D.scoreNames.map((s) => el('option', {value: s, text: s, disabled: !scores.includes(s)})));
    e.score.value = p.score;
    e.score.disabled = scores.length < 2;
    e.score.title = scores.length ? '' : p.method + ' explains no score: its map is the same for every class';
    e.cf.checked = p.cf;
    e.cf.disabled = !m.counterfactual;
    e.cf.parentElement.title = m.counterfactual ? 'Explain the negated score (what speaks against the class)'
                                                : p.method + ' has no counterfactual';
    const targeted = scores.length > 0;
    const detector = task() === 'detect';
    e.class.disabled = !targeted;
    e['class-clear'].disabled = !targeted;
    e['class-name'].textContent = detector ? 'Box' : 'Class';
    e.class.title = detector ? 'A detection by its rank (0: the best), or x1,y1,x2,y2[:label] in the ' +
        'image\'s pixels (the detections overlapping it)' : 'A class index or label';
    if (detector) e.class.removeAttribute('list'); else e.class.setAttribute('list', 'labels');
    if (detector) {
      e.class.value = p.box === null ? '' : p.box;
      e.class.placeholder = !targeted ? 'no target needed' : 'best: 0';
    } else {
      e.class.value = p.cls === null ? '' : (D.labels[p.cls] !== undefined ? D.labels[p.cls] : String(p.cls));
      const top = topClass();
      e.class.placeholder = !targeted ? 'no target needed'
          : top !== null ? (task() === 'segment' ? 'largest: ' : 'top class: ') + (D.labels[top] || top)
          : task() === 'segment' ? 'largest class' : 'top class';
    }
    e.class.classList.remove('invalid');
    // Layer maps have a layer slider; so do input-space maps made per layer
    // (guided Grad-CAM). Input-space maps have views.
    // A row that does not apply is hidden (class "na"); side by side, it may
    // keep its space so that both panes' images line up (syncRows).
    e['layer-row'].classList.toggle('na', !(m.kind === 'layer-map' || m.layers === 'all' || entries(p).length > 1));
    e['view-row'].classList.toggle('na', m.kind === 'layer-map');
    syncRows();
    e.view.replaceChildren(...(m.views || []).map((v) => el('option', {value: v, text: v})));
    e.view.value = p.view;
    e.view.disabled = (m.views || []).length < 2;
    e.gray.checked = p.gray;
    renderLayer(p);
  }

  // Side by side, a row one pane shows keeps its space in the other pane.
  function syncRows() {
    const shown = (role) => visiblePanes().some((p) => !p.el[role].classList.contains('na'));
    $('panes').classList.toggle('need-layer', S.compare && shown('layer-row'));
    $('panes').classList.toggle('need-view', S.compare && shown('view-row'));
  }

  // The slider's entries: one per layer (an attention method's per-head
  // maps are reached by the head picker, not the slider).
  const entries = (p) => (p.maps ? p.maps.layers.filter((x) => x.head === null || x.head === undefined) : []);
  const headsOf = (p, layer) =>
    (p.maps ? p.maps.layers.filter((x) => x.layer === layer && typeof x.head === 'number') : []);
  // A map's key in the pane's caches: its layer, and its head if any.
  const keyOf = (entry) => (typeof entry.head === 'number' ? entry.layer + '#' + entry.head : entry.layer);
  function entryIndex(p) {
    const i = entries(p).findIndex((x) => x.layer === p.layer);
    return i < 0 ? 0 : i;
  }
  // The map the pane shows: the slider's layer, or the picked head of it.
  function currentEntry(p) {
    const layer = entries(p)[entryIndex(p)] || null;
    if (!layer || p.head === null) return layer;
    return headsOf(p, layer.layer).find((x) => x.head === p.head) || layer;
  }

  function renderLayer(p) {
    const e = p.el;
    const list = entries(p);
    e.layer.max = String(Math.max(list.length - 1, 0));
    e.layer.value = String(entryIndex(p));
    e.layer.disabled = list.length < 2;
    e['layer-name'].textContent = list.length ? (currentEntry(p).layer || 'input') : (p.layer || '…');
    e['layer-pos'].textContent = list.length > 1 ? (entryIndex(p) + 1) + ' of ' + list.length
                               : list.length === 1 ? 'only layer' : '';
    const heads = list.length ? headsOf(p, list[entryIndex(p)].layer) : [];
    e['head-field'].classList.toggle('na', heads.length === 0);
    e.head.replaceChildren(el('option', {value: '', text: 'mean of ' + heads.length}),
      ...heads.map((x) => el('option', {value: String(x.head), text: String(x.head)})));
    e.head.value = p.head === null || !heads.some((x) => x.head === p.head) ? '' : String(p.head);
  }

  // The /api/maps (and /api/map) parameters of the pane's choice.
  function mapsQuery(p) {
    const m = p.def();
    const targeted = (m.scores || []).length > 0;
    const detector = task() === 'detect';
    return {
      image: S.image, model: S.model, method: p.method,
      class: targeted && !detector && p.cls !== null ? p.cls : null,
      // A map that does not depend on its target is the best detection's.
      box: detector ? (targeted && p.box !== null ? p.box : '0') : null,
      score: targeted ? p.score : null,
      counterfactual: m.counterfactual && p.cf ? 1 : null,
    };
  }
  function mapQuery(p, entry, format) {
    const q = Object.assign({}, p.query, {layer: entry.layer, format,
                                          head: typeof entry.head === 'number' ? entry.head : null});
    if (entry.kind !== 'layer-map' && format === 'png') {
      q.view = p.view;
      q.gray = p.gray ? 1 : null;
    }
    if (entry.kind === 'layer-map' && format === 'png') q.colormap = S.cmap;
    return q;
  }

  // One layer map's u8 bytes: fetched once per map set, kept in memory.
  function u8For(p, entry) {
    let pr = p.u8.get(keyOf(entry));
    if (!pr) {
      const store = p.u8data, w = p.maps.input_width, h = p.maps.input_height;
      const q = mapQuery(p, entry, 'u8');
      pr = limited(() => api('/api/map', q, {as: 'bytes'})).then((b) => {
        if (b.length !== w * h) {
          throw new Error('map of layer ' + keyOf(entry) + ': ' + b.length + ' bytes, not ' +
                          w + ' × ' + h);
        }
        store.set(keyOf(entry), b);
        return b;
      });
      pr.catch(() => {});  // reported by whoever waits for it
      p.u8.set(keyOf(entry), pr);
    }
    return pr;
  }
  // An input-space map rendered by the server (view, gray) as a bitmap, kept
  // in memory per view.
  function pngFor(p, entry) {
    const q = mapQuery(p, entry, 'png');
    const key = JSON.stringify(q);
    let pr = p.png.get(key);
    if (!pr) {
      const store = p.pngdata;
      pr = limited(() => api('/api/map', q, {as: 'blob'}))
          .then((b) => createImageBitmap(b))
          .then((bm) => { store.set(key, bm); return bm; });
      pr.catch(() => {});
      p.png.set(key, pr);
    }
    return pr;
  }
  // Resolves when the entry the pane shows can be drawn; returns its bitmap
  // or bytes.
  function ensureCurrent(p) {
    const entry = currentEntry(p);
    if (!entry) return Promise.resolve(null);
    return entry.kind === 'layer-map' ? u8For(p, entry) : pngFor(p, entry);
  }

  // Recomputes what the pane needs (a map set, its maps) and draws it.
  function refreshPane(p) {
    const gen = ++p.gen;
    const label = 'computing ' + (p.method || '…') + (S.compare ? ' (' + p.id.toUpperCase() + ')' : '') + '…';
    return track(label, (item) => computePane(p, gen, item)).catch((e) => {
      if (gen !== p.gen || e instanceof Stale) return;
      p.error = e.message || String(e);
      draw(p);
      showError(e);
    });
  }

  async function computePane(p, gen, item) {
    const check = () => { if (gen !== p.gen) throw new Stale(); };
    p.error = '';
    if (!S.image || !p.method) { draw(p); return; }
    setVeil(p, 'computing…');
    try {
      await D.imageP;  // the source image and its classification
      check();
      const q = mapsQuery(p);
      const key = JSON.stringify(q);
      if (p.mapsKey !== key) {
        const maps = await api('/api/maps', q, {item});
        check();
        adoptMaps(p, maps, q, key);
      }
      renderPaneControls(p);
      await ensureCurrent(p);
      check();
      draw(p);
      // Every other layer's map (and head's), so that the slider and the
      // head picker swap images without a request (input-space maps in the
      // current view).
      const rest = p.maps.layers.map((x) => (x.kind === 'layer-map' ? u8For(p, x) : pngFor(p, x)));
      if (rest.length > 1) {
        setVeil(p, 'loading layers…');
        item.label = 'loading ' + rest.length + ' layer maps…';
        renderStatus();
        const res = await Promise.allSettled(rest);
        check();
        const bad = res.find((r) => r.status === 'rejected');
        if (bad) throw bad.reason;
      }
    } finally {
      if (gen === p.gen) setVeil(p, null);
    }
  }

  function adoptMaps(p, maps, q, key) {
    p.maps = maps;
    p.mapsKey = key;
    p.query = q;
    p.u8 = new Map();
    p.u8data = new Map();
    p.png = new Map();
    p.pngdata = new Map();
    p.heat = null;
    const names = maps.layers.filter((x) => typeof x.head !== 'number').map((x) => x.layer);
    if (!names.includes(p.layer)) {
      // The layer the model's default names, else the last (deepest) one.
      p.layer = names.includes(D.layers.default) ? D.layers.default : names[names.length - 1] || '';
    }
    const ms = maps.cached ? 'cached' : Math.round(maps.compute_ms) + ' ms' +
        (maps.queue_ms >= 1 ? ' (+' + Math.round(maps.queue_ms) + ' ms queued)' : '');
    busy.idle = maps.method + ': ' + (names.length > 1 ? names.length + ' layers, ' : '') + ms;
    saveHash();
    renderPredictions();
  }

  function setVeil(p, text) {
    p.el.veil.hidden = !text;
    p.el.veil.textContent = text || '';
  }

  // The u8 map coloured with the colormap, as an N × N canvas (cached per
  // layer and colormap).
  function heatmap(p, entry) {
    const key = keyOf(entry) + '\n' + S.cmap;
    if (p.heat && p.heat.key === key) return p.heat.canvas;
    const b = p.u8data.get(keyOf(entry));
    if (!b) return null;
    const w = p.maps.input_width, h = p.maps.input_height;
    const c = p.heat && p.heat.canvas.width === w && p.heat.canvas.height === h
        ? p.heat.canvas : el('canvas', {width: w, height: h});
    const img = new ImageData(w, h);
    // One 32-bit RGBA word per pixel (both views share the byte order).
    const table = new Uint32Array(lut(S.cmap).buffer);
    const out = new Uint32Array(img.data.buffer);
    for (let i = 0; i < b.length; i++) out[i] = table[b[i]];
    c.getContext('2d').putImageData(img, 0, 0);
    p.heat = {key, canvas: c};
    return c;
  }

  // Draws the source image scaled to fit the pane and the map over its crop
  // square: a layer map in the colormap at the chosen opacity, an
  // input-space map opaque (it is an image of its own).
  function draw(p) {
    const e = p.el;
    const canvas = e.canvas;
    const src = D.source, c = D.classify;
    if (!src || !c) { canvas.width = canvas.height = 0; updateCaption(p, null); return; }
    const W = c.width || src.width, H = c.height || src.height;
    const boxW = Math.max(e.stage.clientWidth, 100);
    // As tall as fits in the window below the stage's top, with what the
    // pane shows under it (caption, download links), but not tiny; side by
    // side, both panes get the same size.
    let top = 0, below = 70;
    for (const q of visiblePanes().includes(p) ? visiblePanes() : [p]) {
      const r = q.el.stage.getBoundingClientRect();
      top = Math.max(top, r.top + window.scrollY);
      below = Math.max(below, q.node.getBoundingClientRect().bottom - r.bottom);
    }
    const boxH = Math.max(window.innerHeight - top - below - 16, 260);
    const scale = Math.min(boxW / W, boxH / H);
    const cssW = Math.max(1, Math.floor(W * scale)), cssH = Math.max(1, Math.floor(H * scale));
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    canvas.style.width = cssW + 'px';
    canvas.style.height = cssH + 'px';
    const ctx = canvas.getContext('2d');
    ctx.setTransform(canvas.width / W, 0, 0, canvas.height / H, 0, 0);  // source pixels
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(src, 0, 0, W, H);
    const entry = p.error ? null : currentEntry(p);
    const crop = (p.maps && p.maps.crop) || c.crop;
    // Where the maps go: the network's whole input (a letterbox's bars
    // included, outside the image), else the crop.
    const input = (p.maps && p.maps.input) || c.input || crop;
    let drawn = null;
    if (entry && entry.kind === 'layer-map') {
      const heat = heatmap(p, entry);
      if (heat) {
        ctx.globalAlpha = S.opacity;
        ctx.drawImage(heat, input.x, input.y, input.width, input.height);
        ctx.globalAlpha = 1;
        drawn = entry;
      }
    } else if (entry) {
      const bitmap = p.pngdata.get(JSON.stringify(mapQuery(p, entry, 'png')));
      if (bitmap) {
        ctx.drawImage(bitmap, input.x, input.y, input.width, input.height);
        drawn = entry;
      }
    }
    // Outline the network's input square when it is not the whole image.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const sx = cssW / W, sy = cssH / H;
    if (crop.x > 0 || crop.y > 0 || crop.width < W || crop.height < H) {
      ctx.strokeStyle = 'rgba(255,255,255,0.85)';
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      ctx.strokeRect(crop.x * sx + 0.5, crop.y * sy + 0.5, crop.width * sx - 1, crop.height * sy - 1);
      ctx.setLineDash([]);
    }
    const marks = drawTargets(p, ctx, sx, sy, input);
    e.stage.classList.toggle('pick', c.task === 'detect' || c.task === 'segment');
    Object.assign(canvas.dataset, marks, {
      box: drawn && p.maps && p.maps.box !== undefined ? p.maps.box : '',
      width: W, height: H,
      method: drawn ? p.method : '', class: drawn && p.maps ? p.maps.class : '',
      layer: drawn ? drawn.layer : '', head: drawn && typeof drawn.head === 'number' ? drawn.head : '',
      kind: drawn ? drawn.kind : '',
      view: drawn && drawn.kind !== 'layer-map' ? p.view : '',
    });
    updateCaption(p, drawn);
    updateDownloads(p, drawn);
  }

  // One box in CSS pixels (sx, sy: per source pixel), with its label on a
  // tag of its colour when `tag` is given.
  function strokeBox(ctx, d, sx, sy, colour, width, tag) {
    const x = d.x1 * sx, y = d.y1 * sy, w = (d.x2 - d.x1) * sx, h = (d.y2 - d.y1) * sy;
    if (tag) {  // a dark halo: the target stands out of any map
      ctx.lineWidth = width + 2;
      ctx.strokeStyle = 'rgba(0,0,0,0.55)';
      ctx.strokeRect(x, y, w, h);
    }
    ctx.lineWidth = width;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    if (!tag) return;
    ctx.font = '600 12px system-ui, sans-serif';
    const tw = ctx.measureText(tag).width + 8;
    const ty = y >= 18 ? y - 18 : y;
    ctx.fillStyle = colour;
    ctx.fillRect(x - width / 2, ty, tw, 18);
    ctx.fillStyle = '#fff';
    ctx.fillText(tag, x + 4 - width / 2, ty + 13);
  }

  // Class k's outline on the segmenter's grid, as a path in grid units:
  // the edges between a pixel of k and one of another class (or the grid's
  // border), runs of them joined (cached per image and class).
  function outline(k) {
    const g = D.grid;
    if (!g.outlines.has(k)) {
      const w = g.width, h = g.height, L = g.labels;
      const path = new Path2D();
      const is = (x, y) => x >= 0 && y >= 0 && x < w && y < h && L[y * w + x] === k;
      // Horizontal edges above row y, then vertical edges left of column x.
      for (let y = 0; y <= h; y++) {
        let start = -1;
        for (let x = 0; x <= w; x++) {
          const edge = x < w && is(x, y) !== is(x, y - 1);
          if (edge && start < 0) start = x;
          if (!edge && start >= 0) { path.moveTo(start, y); path.lineTo(x, y); start = -1; }
        }
      }
      for (let x = 0; x <= w; x++) {
        let start = -1;
        for (let y = 0; y <= h; y++) {
          const edge = y < h && is(x, y) !== is(x - 1, y);
          if (edge && start < 0) start = y;
          if (!edge && start >= 0) { path.moveTo(x, start); path.lineTo(x, y); start = -1; }
        }
      }
      g.outlines.set(k, path);
    }
    return g.outlines.get(k);
  }

  // What the pane explains, over its image: a detector's boxes (its
  // targets bold and tagged; a box asked about dashed), or the outline of
  // a segmenter's target class. Returns what it drew (the canvas's data-).
  function drawTargets(p, ctx, sx, sy, input) {
    const c = D.classify;
    if (c.task === 'detect') {
      const on = new Set(p.targetBoxes());
      const dets = c.detections || [];
      // The others faint, and only the best of them: hundreds of boxes (an
      // untrained detector's) would hide the map.
      const others = dets.filter((d) => !on.has(d.index)).slice(0, DRAWN_BOXES);
      ctx.globalAlpha = 0.5;
      for (const d of others) strokeBox(ctx, d, sx, sy, classColour(d.class + 1), 1, '');
      ctx.globalAlpha = 1;
      for (const d of dets) {
        if (on.has(d.index)) {
          strokeBox(ctx, d, sx, sy, classColour(d.class + 1), 3, d.index + ' ' + d.label + ' ' + num(d.score));
        }
      }
      const m = p.maps;
      if (m && m.target && m.box && !/^\d+$/.test(m.box)) {
        ctx.setLineDash([6, 4]);
        strokeBox(ctx, m.target, sx, sy, '#fff', 2, '');
        ctx.setLineDash([]);
      }
      return {boxes: others.length + dets.filter((d) => on.has(d.index)).length, outline: ''};
    }
    const k = p.targets();
    if (c.task !== 'segment' || !D.grid || k === null) return {boxes: '', outline: ''};
    // Grid units to CSS pixels; lines of the same width whatever the grid.
    const gx = input.width * sx / D.grid.width, gy = input.height * sy / D.grid.height;
    ctx.save();
    ctx.transform(gx, 0, 0, gy, input.x * sx, input.y * sy);
    const unit = 1 / Math.min(gx, gy);
    ctx.lineJoin = 'round';
    ctx.lineWidth = 3.5 * unit;
    ctx.strokeStyle = 'rgba(0,0,0,0.6)';
    ctx.stroke(outline(k));
    ctx.lineWidth = 1.75 * unit;
    ctx.strokeStyle = '#fff';
    ctx.stroke(outline(k));
    ctx.restore();
    return {boxes: '', outline: k};
  }

  // A click on the image: the smallest detection under it, or the class of
  // the segmenter's pixel under it, becomes the pane's target.
  function pickAt(p, ev) {
    const c = D.classify;
    if (!c || !(p.def().scores || []).length) return;
    const r = p.el.canvas.getBoundingClientRect();
    if (!r.width || !r.height) return;
    const x = (ev.clientX - r.left) * c.width / r.width, y = (ev.clientY - r.top) * c.height / r.height;
    if (c.task === 'detect') {
      const under = (c.detections || []).filter((d) => x >= d.x1 && x <= d.x2 && y >= d.y1 && y <= d.y2);
      const area = (d) => (d.x2 - d.x1) * (d.y2 - d.y1);
      under.sort((a, b) => area(a) - area(b) || a.index - b.index);
      if (under.length) setClass(p, String(under[0].index));
    } else if (c.task === 'segment' && D.grid) {
      const input = c.input || c.crop, g = D.grid;
      const gx = Math.floor((x - input.x) * g.width / input.width);
      const gy = Math.floor((y - input.y) * g.height / input.height);
      if (gx >= 0 && gy >= 0 && gx < g.width && gy < g.height) setClass(p, String(g.labels[gy * g.width + gx]));
    }
  }

  function updateCaption(p, entry) {
    const cap = p.el.caption;
    if (p.error) { cap.textContent = 'No map: ' + p.error; return; }
    if (!entry || !p.maps) { cap.textContent = ''; return; }
    const m = p.maps;
    const parts = [];
    const cf = m.counterfactual ? ' (counterfactual)' : '';
    if ((p.def().scores || []).length && m.task === 'detect') {
      const n = (m.matched || []).length;
      parts.push(el('b', {text: m.label}), ' · box ' + m.box +
                 (/^\d+$/.test(m.box) ? '' : ' (' + n + ' detection' + (n === 1 ? '' : 's') + ')') +
                 ' · score ' + num(m.target.score) + cf);
    } else if ((p.def().scores || []).length && m.task === 'segment') {
      parts.push(el('b', {text: m.label}), ' #' + m.class + ' · ' + pct(m.probability) +
                 ' of the pixels · its logits summed over them' + cf);
    } else if ((p.def().scores || []).length) {
      parts.push(el('b', {text: m.label}), ' #' + m.class + ' · p ' + pct(m.probability) + ' · ' +
                 m.score + cf);
    } else {
      parts.push('target-independent');
    }
    // A layer map's own resolution (before the upsampling to the input).
    const native = entry.kind === 'layer-map' && Array.isArray(entry.shape) && entry.shape.length === 2
      ? ' (' + entry.shape[0] + ' × ' + entry.shape[1] + ')' : '';
    const head = typeof entry.head === 'number' ? ' head ' + entry.head : '';
    parts.push(' · ' + (entry.layer ? entry.layer : 'input') + head + native + ' · ' +
               (entry.min === entry.max ? 'flat: every value ' + num(entry.min)
                                        : 'range ' + num(entry.min) + ' … ' + num(entry.max)));
    parts.push(' · ' + (m.cached ? 'cached' : Math.round(m.compute_ms) + ' ms'));
    cap.replaceChildren(...parts);
  }

  function fileStem(p, entry) {
    const base = imageName().replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '') || 'image';
    const bits = [base, p.method, entry.layer || p.view];
    if (typeof entry.head === 'number') bits.push('head' + entry.head);
    if (p.maps && (p.def().scores || []).length) {
      // As the command line names them: c3, or a detector's d1-c3.
      bits.push((p.maps.task === 'detect' ? 'd' + p.maps.box + '-' : '') + 'c' + p.maps.class +
                (p.maps.counterfactual ? 'cf' : ''));
    }
    return bits.join('_').replace(/[^\w.+-]+/g, '-');
  }
  function updateDownloads(p, entry) {
    const e = p.el;
    if (!entry) {
      e['map-png'].removeAttribute('href');
      e.npy.removeAttribute('href');
      e.png.disabled = true;
      return;
    }
    const stem = fileStem(p, entry);
    e['map-png'].href = linkUrl('/api/map', mapQuery(p, entry, 'png'));
    e['map-png'].download = stem + '.png';
    e.npy.href = linkUrl('/api/map', mapQuery(p, entry, 'npy'));
    e.npy.download = stem + '.npy';
    e.png.disabled = false;
    e.png.dataset.name = stem + '_view.png';
  }

  // Redraws after the slider moved: the map is in memory, or on its way
  // (the prefetch; then wait for the same promise).
  function redraw(p) {
    const entry = currentEntry(p);
    if (!entry) return;
    const ready = entry.kind === 'layer-map' ? p.u8data.has(keyOf(entry))
                                         : p.pngdata.has(JSON.stringify(mapQuery(p, entry, 'png')));
    if (ready) { draw(p); return; }
    const gen = p.gen;
    run('loading layer ' + entry.layer + '…', () => ensureCurrent(p).then(() => {
      if (gen === p.gen && currentEntry(p) === entry) draw(p);
    }));
  }

  // A detector's target: a detection's rank, or a box (x1,y1,x2,y2[:label])
  // whose overlapping detections are explained together.
  function setBox(p, text) {
    const t = String(text).trim();
    if (t !== '' && !/^\d+$/.test(t) && !/^\s*[\d.]+\s*,\s*[\d.]+\s*,\s*[\d.]+\s*,\s*[\d.]+\s*(:.+)?$/.test(t)) {
      p.el.class.classList.add('invalid');
      showError(new Error('box "' + t + '": neither a detection\'s rank (0: the best) nor x1,y1,x2,y2[:label]'));
      return;
    }
    clearError();
    // Spaces go from the corners, not from the label ("traffic light").
    const colon = t.indexOf(':');
    p.box = t === '' ? null
        : colon < 0 ? t.replace(/\s+/g, '') : t.slice(0, colon).replace(/\s+/g, '') + t.slice(colon);
    renderPaneControls(p);
    saveHash();
    renderPredictions();
    refreshPane(p);
  }

  function setClass(p, text) {
    if (task() === 'detect') { setBox(p, text); return; }
    const t = String(text).trim().replace(/^#/, '');
    let cls = null;
    if (t !== '') {
      if (/^\d+$/.test(t)) {
        cls = Number(t);
        if (D.labels.length && cls >= D.labels.length) {
          p.el.class.classList.add('invalid');
          showError(new Error('class ' + cls + ': ' + S.model + ' has classes 0 to ' +
                              (D.labels.length - 1)));
          return;
        }
      } else if (D.labelIndex.has(t.toLowerCase())) {
        cls = D.labelIndex.get(t.toLowerCase());
      } else {
        p.el.class.classList.add('invalid');
        showError(new Error('class "' + t + '": neither a class index nor a label of ' + S.model));
        return;
      }
    }
    clearError();
    p.cls = cls;
    renderPaneControls(p);
    saveHash();
    renderPredictions();
    refreshPane(p);
  }

  function wirePane(p) {
    const e = p.el;
    p.node.addEventListener('pointerdown', () => activate(p));
    p.node.addEventListener('focusin', () => activate(p));
    e.method.addEventListener('change', () => {
      clearError();
      p.method = e.method.value;
      fixPaneOptions(p);
      renderPaneControls(p);
      saveHash();
      refreshPane(p);
    });
    e.class.addEventListener('change', () => setClass(p, e.class.value));
    e.class.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') e.class.blur(); });
    e['class-clear'].addEventListener('click', () => setClass(p, ''));
    e.canvas.addEventListener('click', (ev) => pickAt(p, ev));
    for (const [role, key, value] of [['score', 'score', () => e.score.value],
                                      ['cf', 'cf', () => e.cf.checked],
                                      ['view', 'view', () => e.view.value],
                                      ['gray', 'gray', () => e.gray.checked]]) {
      e[role].addEventListener('change', () => {
        clearError();
        p[key] = value();
        saveHash();
        refreshPane(p);
      });
    }
    e.head.addEventListener('change', () => {
      p.head = e.head.value === '' ? null : Number(e.head.value);
      saveHash();
      renderLayer(p);
      redraw(p);
    });
    // The slider only swaps maps already in memory.
    e.layer.addEventListener('input', () => {
      const entry = entries(p)[Number(e.layer.value)];
      if (!entry) return;
      p.layer = entry.layer;
      renderLayer(p);
      saveHashSoon();
      redraw(p);
    });
    e.png.addEventListener('click', () => {
      e.canvas.toBlob((blob) => {
        if (!blob) { showError(new Error('view PNG: the canvas is empty')); return; }
        const a = el('a', {href: URL.createObjectURL(blob), download: e.png.dataset.name || 'cnnviz.png'});
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      }, 'image/png');
    });
  }

  function activate(p) {
    if (S.active === p.id || (!S.compare && p.id !== 'a')) return;
    S.active = p.id;
    renderShared();
    renderPredictions();
  }

  // -------------------------------------------------------- loading things

  async function loadModelData() {
    const [labels, layers] = await Promise.all([
      api('/api/labels', {model: S.model}),
      api('/api/layers', {model: S.model}),
    ]);
    D.labels = labels.labels || [];
    D.labelIndex = new Map();
    D.labels.forEach((l, i) => { if (!D.labelIndex.has(l.toLowerCase())) D.labelIndex.set(l.toLowerCase(), i); });
    D.layers = layers;
    fillLabels();
    for (const p of Object.values(panes)) {
      if (p.cls !== null && p.cls >= D.labels.length) p.cls = null;
    }
  }

  // The source image (decoded by the server) and its classification.
  function loadImageData() {
    const gen = ++D.imageGen;
    D.classify = null;
    D.grid = null;
    D.imageP = (async () => {
      if (!S.image) { D.source = null; return; }
      const id = S.image;
      const source = D.sources.get(id) || api('/api/image', {image: id}, {as: 'blob'})
          .then((b) => createImageBitmap(b));
      D.sources.set(id, source);
      source.catch(() => D.sources.delete(id));
      const [cls, bitmap] = await Promise.all([api('/api/classify', {image: id, model: S.model, top: 5}), source]);
      if (gen !== D.imageGen) throw new Stale();
      let grid = null;
      if (cls.task === 'segment') {
        const b = await api('/api/segments', {image: id, model: S.model}, {as: 'bytes'});
        if (gen !== D.imageGen) throw new Stale();
        const w = cls.grid.width, h = cls.grid.height;
        if (b.length !== 2 * w * h) throw new Error('segments: ' + b.length + ' bytes, not 2 × ' + w + ' × ' + h);
        // Little-endian uint16, as every browser's platform reads them.
        grid = {width: w, height: h, labels: new Uint16Array(b.buffer, b.byteOffset, w * h), outlines: new Map()};
      }
      D.classify = cls;
      D.grid = grid;
      D.source = bitmap;
      renderPredictions();
    })();
    return D.imageP;
  }

  // After a model or image change: everything that depends on it.
  function reload(label, withModel) {
    saveHash();
    renderShared();
    return run(label, async () => {
      if (withModel) await loadModelData();
      const img = loadImageData();
      const work = visiblePanes().map((p) => refreshPane(p));
      await img;
      for (const p of Object.values(panes)) renderPaneControls(p);
      await Promise.all(work);
    });
  }

  async function refreshImageList() {
    const r = await api('/api/images');
    D.images = r.images || [];
    D.uploads = r.uploads || [];
    fillImages();
  }

  function upload(file) {
    clearError();
    const max = D.info.max_upload_bytes;
    if (max && file.size > max) {
      showError(new Error('upload ' + file.name + ': ' + bytes(file.size) + ', over the server\'s ' +
                          'limit of ' + bytes(max)));
      return Promise.resolve();
    }
    return run('uploading ' + file.name + '…', async (item) => {
      const r = await api('/api/images', {name: file.name}, {method: 'POST', body: file, item});
      await refreshImageList();
      S.image = r.id;
      fillImages();
      await reload('loading ' + r.name + '…', false);
    });
  }

  // ------------------------------------------------------------- wiring

  function wireShared() {
    $('model').addEventListener('change', () => {
      const before = task();
      S.model = $('model').value;
      // Layer names of another architecture mean something else: start at
      // the new model's default layer.
      // A method made for detectors only gives way to the default on others;
      // boxes belong to the detector, classes to the task.
      const changed = task() !== before;
      for (const p of Object.values(panes)) {
        p.layer = '';
        p.box = null;
        if (changed) p.cls = null;
        p.maps = null;
        p.mapsKey = '';
        fixPaneOptions(p);
        renderPaneControls(p);
      }
      clearError();
      reload('loading ' + S.model + '…', true);
    });
    $('images').addEventListener('change', () => {
      S.image = $('images').value;
      for (const p of Object.values(panes)) p.box = null;  // boxes belong to their image
      clearError();
      reload('loading ' + imageName() + '…', false);
    });
    $('upload').addEventListener('change', () => {
      const f = $('upload').files[0];
      if (f) upload(f).finally(() => { $('upload').value = ''; });
    });
    $('opacity').addEventListener('input', () => {
      S.opacity = Number($('opacity').value);
      $('opacity-value').textContent = Math.round(S.opacity * 100) + '%';
      saveHashSoon();
      visiblePanes().forEach(draw);
    });
    $('colormap').addEventListener('change', () => {
      S.cmap = $('colormap').value;
      saveHash();
      visiblePanes().forEach(draw);
    });
    $('compare').addEventListener('change', setCompare);
    $('permalink').addEventListener('click', (ev) => {
      ev.preventDefault();
      saveHash();
      const url = location.href;
      const done = () => { busy.idle = 'permalink copied'; renderStatus(); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url).then(done, () => window.prompt('Permalink', url));
      } else {
        window.prompt('Permalink', url);
      }
    });
    $('error-close').addEventListener('click', clearError);
    wireSideList();
    window.addEventListener('hashchange', () => {
      if (location.hash === writtenHash) return;
      clearError();
      applyHash(parseHash(location.hash));
      for (const p of Object.values(panes)) renderPaneControls(p);
      reload('loading…', true);
    });
    wireDrop();
    // Redraw when the panes change size (window, compare).
    let pending = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => visiblePanes().forEach(draw));
    }).observe($('panes'));
  }

  // Compare on or off: pane B shows, a copy of A to begin with.
  function setCompare() {
    S.compare = $('compare').checked;
    const b = panes.b, a = panes.a;
    if (S.compare && !b.method) {
      // Pane B starts as a copy of A: change one thing to compare.
      Object.assign(b, {method: a.method, cls: a.cls, box: a.box, layer: a.layer, score: a.score, cf: a.cf,
                        view: a.view, gray: a.gray});
      renderPaneControls(b);
    }
    if (!S.compare) S.active = 'a';
    saveHash();
    renderShared();
    renderPredictions();
    if (S.compare) refreshPane(b); else a.node.scrollIntoView({block: 'nearest'});
    requestAnimationFrame(() => visiblePanes().forEach(draw));
  }

  // The side list: a click (or Enter) on an item makes it the active pane's target.
  function wireSideList() {
    const target = (li) => (li.dataset.box !== undefined ? li.dataset.box : li.dataset.class);
    $('predictions').addEventListener('click', (ev) => {
      const li = ev.target.closest('li[data-class], li[data-box]');
      if (li) setClass(panes[S.active], target(li));
    });
    $('predictions').addEventListener('keydown', (ev) => {
      const li = ev.target.closest('li[data-class], li[data-box]');
      if (li && (ev.key === 'Enter' || ev.key === ' ')) { ev.preventDefault(); setClass(panes[S.active], target(li)); }
    });
  }

  // Dropping a file anywhere uploads it.
  function wireDrop() {
    let depth = 0;
    const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes('Files');
    window.addEventListener('dragenter', (ev) => { if (hasFiles(ev)) { depth++; $('drop').hidden = false; } });
    window.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; $('drop').hidden = true; } });
    window.addEventListener('dragover', (ev) => { if (hasFiles(ev)) ev.preventDefault(); });
    window.addEventListener('drop', (ev) => {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      depth = 0;
      $('drop').hidden = true;
      const f = ev.dataTransfer.files[0];
      if (f) upload(f);
    });
  }

  async function boot() {
    const [info, models, methods, colormaps, images] = await Promise.all([
      api('/api/info'), api('/api/models'), api('/api/methods'), api('/api/colormaps'), api('/api/images'),
    ]);
    D.info = info;
    D.models = models.models || [];
    D.defaultModel = models.default || info.model || '';
    for (const m of methods.methods || []) D.methods.set(m.name, m);
    D.defaultMethod = methods.default || '';
    D.scoreNames = [...new Set([...D.methods.values()].flatMap((m) => m.scores || []))];
    D.colormaps = colormaps;
    D.images = images.images || [];
    D.uploads = images.uploads || [];

    // Defaults, then what the hash says.
    S.model = D.defaultModel;
    S.image = (D.images[0] || D.uploads[0] || {}).id || '';
    S.cmap = D.colormaps.jet ? 'jet' : Object.keys(D.colormaps)[0] || '';
    panes.a = makePane('a');
    panes.b = makePane('b');
    for (const p of Object.values(panes)) fillMethods(p);
    panes.a.method = D.methods.has(D.defaultMethod) ? D.defaultMethod
                   : ([...D.methods.values()][0] || {}).name || '';
    fixPaneOptions(panes.a);
    applyHash(parseHash(location.hash));

    fillModels();
    fillImages();
    fillColormaps();
    for (const p of Object.values(panes)) renderPaneControls(p);
    wireShared();
    $('summary').textContent = [
      'cnnviz ' + (info.version || ''),
      D.images.length + ' image' + (D.images.length === 1 ? '' : 's'),
      D.methods.size + ' methods',
      D.models.length + ' model' + (D.models.length === 1 ? '' : 's'),
    ].join(' · ');
    document.title = 'cnnviz serve: ' + S.model;
    if (!S.image) showError(new Error('The server has no images: upload one (or drop it on the page).'));
  }

  document.addEventListener('DOMContentLoaded', () => {
    renderStatus();
    run('connecting…', async () => {
      await boot();
      await reload('loading…', true);
    });
  });
})();
