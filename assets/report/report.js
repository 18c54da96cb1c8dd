(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('cnnviz-data').textContent);
  const runs = data.runs;

  const { el, pct } = cnnvizDom;  // assets/common/dom.js
  const unique = (xs) => [...new Set(xs)];
  // Manifest paths are relative to OUTDIR, as is this page: encode each
  // segment so that '#', '?', '%' or spaces in names survive.
  const href = (p) => String(p).split('/').map(encodeURIComponent).join('/');
  const plural = (n, w) => n + ' ' + w + (n === 1 ? '' : 's');
  const key = (v) => (v === null || v === undefined ? '' : String(v));

  // Header: what was run, on what.
  const models = unique(runs.map((r) => r.model).filter(Boolean));
  const methods = unique(runs.map((r) => r.method).filter(Boolean));
  const failed = data.images.filter((i) => i.error).length;
  document.title = 'cnnviz report: ' + data.title;
  const title = document.getElementById('title');
  title.textContent = 'cnnviz report ';
  title.append(el('span', {class: 'dim', text: data.title}));
  const layers = unique(runs.flatMap((r) => r.layers || []));
  document.getElementById('summary').textContent = [
    models.join(', ') || 'unknown model',
    methods.join(', '),
    layers.length ? plural(layers.length, 'layer') : null,
    plural(data.images.length, 'image') + (failed ? ', ' + failed + ' failed' : ''),
  ].filter(Boolean).join(' · ');
  const notes = document.getElementById('notes');
  if (runs.some((r) => r.weights === 'random')) {
    notes.append(el('p', {class: 'note', text: 'Random weights: the model is untrained, so its ' +
        'predictions and maps are meaningless.'}));
  }
  for (const n of data.notes) notes.append(el('p', {class: 'note', text: n}));
  document.getElementById('footer').textContent = 'Made by ' + data.generator + ' from ' +
      runs.map((r) => r.source).join(', ') + '.';

  // A target's facts after its heading: a classifier's rank and
  // probability, a segmenter's area, a detection's rank and score, a box
  // query's matches and their summed score.
  function targetFacts(t) {
    const score = (v) => (typeof v === 'number' ? v.toFixed(2) : '');
    if (t.query !== null && t.query !== undefined) {
      return 'box ' + t.query + ', score ' + score(t.detection_score);
    }
    if (t.detection !== null && t.detection !== undefined) {
      return 'detection ' + t.detection + ', score ' + score(t.detection_score);
    }
    const facts = [];
    if (t.rank) facts.push('rank ' + t.rank);
    if (typeof t.area === 'number') facts.push(pct(t.area) + ' of the pixels');
    else if (typeof t.probability === 'number') facts.push(pct(t.probability));
    return facts.join(', ');
  }

  // What a reader wants first: the contact sheet, then the deepest layer
  // (the default one of layer methods) down to the first, and at each layer
  // the overlay before the other pictures.
  const variantOrder = ['contact', 'overlay', 'overlay_full', 'heatmap', 'gray'];
  function firstThingsFirst(maps, runLayers) {
    const depth = (m) => {
      const at = runLayers.indexOf(key(m.layer));
      return at < 0 ? -1 : at;
    };
    const rank = (m) => {
      const at = variantOrder.indexOf(key(m.variant));
      return at < 0 ? variantOrder.length : at;
    };
    return maps.map((m, i) => ({m, i})).sort((a, b) =>
        (key(b.m.variant) === 'contact') - (key(a.m.variant) === 'contact') ||
        depth(b.m) - depth(a.m) || rank(a.m) - rank(b.m) || a.i - b.i).map((x) => x.m);
  }

  // Rows, and what the filters offer.
  const classes = new Map();   // class -> {label, images}
  const allMethods = new Set();
  const variants = new Set();
  const rows = [];
  const main = document.getElementById('rows');
  data.images.forEach((img, i) => {
    const run = runs[img.run] || {};
    const targets = img.targets || [];
    const targetClasses = unique(targets.map((t) => key(t.class)));
    for (const t of targets) {
      const c = classes.get(key(t.class)) || {label: t.label, images: new Set()};
      c.images.add(i);
      classes.set(key(t.class), c);
    }
    const maps = firstThingsFirst(img.maps || [], run.layers || []);
    const raw = img.raw || [];
    const rowMethods = unique([run.method, ...maps.map((m) => m.method), ...raw.map((m) => m.method)]
        .filter(Boolean));
    rowMethods.forEach((m) => allMethods.add(m));

    const base = String(img.image).split('/').pop() || String(img.image);
    const info = el('div', {class: 'info'},
        el('h2', {text: base, title: img.image}),
        el('div', {class: 'dir'}, base !== img.image ? el('div', {text: img.image}) : null,
           img.dir ? el('div', {text: 'maps: ' + img.dir + '/'}) : null));
    if (img.input) {
      info.append(el('figure', {class: 'input'},
          el('a', {href: href(img.input)},
              el('img', {src: href(img.input), loading: 'lazy', decoding: 'async', alt: img.image})),
          el('figcaption', {text: 'input'})));
    }
    if (img.error) info.append(el('p', {class: 'error', text: img.error}));
    const preds = el('ol', {class: 'preds', 'aria-label': 'top classes'});
    for (const p of img.predictions || []) {
      const isTarget = targetClasses.includes(key(p.index));
      const bar = el('i');
      bar.style.width = Math.max(0, Math.min(100, (p.probability || 0) * 100)) + '%';
      preds.append(el('li', {class: isTarget ? 'target' : null, title: isTarget ? 'mapped' : null},
          bar,
          el('span', null, el('span', {class: 'k', text: p.index}), p.label || ''),
          el('span', {class: 'p', text: pct(p.probability)})));
    }
    if (preds.children.length) info.append(preds);
    if ((img.warnings || []).length) {
      info.append(el('ul', {class: 'warnings'},
          ...img.warnings.map((w) => el('li', {text: String(w)}))));
    }

    // One group per (method, target), in manifest order: a target is a
    // class, or a detector's detection or box query.
    const targetKey = (x) => key(x['class']) + '\n' + key(x.detection) + '\n' + key(x.query);
    const groups = new Map();
    for (const m of maps.concat(raw.map((r) => Object.assign({isRaw: true}, r)))) {
      const g = key(m.method) + '\n' + targetKey(m);
      if (!groups.has(g)) {
        groups.set(g, {method: key(m.method), cls: key(m['class']), target: targetKey(m), maps: [], raw: []});
      }
      groups.get(g)[m.isRaw ? 'raw' : 'maps'].push(m);
    }
    const mapsBox = el('div', {class: 'maps'});
    const rowGroups = [];
    for (const g of groups.values()) {
      const t = targets.find((x) => targetKey(x) === g.target);
      // Runs without classes (feature visualization, --unit) name the method only.
      const heading = el('h3', null, g.method + (g.cls ? ' · ' + g.cls : '') + (t && t.label ? ' ' + t.label : ''));
      if (t) heading.append(' ', el('small', {text: targetFacts(t)}));
      const thumbs = el('div', {class: 'thumbs'});
      const figures = [];
      for (const m of g.maps) {
        const layer = m.layer === null || m.layer === undefined ? '' : String(m.layer);
        const name = (layer || (m.variant === 'contact' ? 'every layer' : g.method));
        const caption = [g.method, layer || null, g.cls ? 'class ' + g.cls : null, m.variant].filter(Boolean).join(' / ');
        const pic = m.missing
            ? el('div', {class: 'gone', text: 'file missing'})
            : el('a', {href: href(m.path), title: caption},
                el('img', {src: href(m.path), loading: 'lazy', decoding: 'async', alt: caption,
                           width: 160, height: 160}));
        const fig = el('figure', {class: m.missing ? 'missing' : null, 'data-variant': key(m.variant)},
            pic,
            el('figcaption', null, el('b', {text: name}), el('br'),
               key(m.variant) + ' · ' + g.method + (g.cls ? ' · c' + g.cls : '')));
        variants.add(key(m.variant));
        figures.push({el: fig, variant: key(m.variant)});
        thumbs.append(fig);
      }
      const box = el('div', {class: 'group', 'data-method': g.method, 'data-class': g.cls}, heading);
      if (figures.length) box.append(thumbs);
      if (g.raw.length) {
        box.append(el('details', {class: 'raw'},
            el('summary', {text: plural(g.raw.length, 'raw array') + ' (.npy)'}),
            ...g.raw.map((r) => el('a', {href: href(r.path), text: key(r.layer) || key(r.variant) || 'raw'}))));
      }
      mapsBox.append(box);
      rowGroups.push({el: box, method: g.method, cls: g.cls, figures: figures});
    }

    const row = el('section', {
      class: 'row', id: 'image-' + (i + 1),
      'data-classes': targetClasses.join(' '), 'data-methods': rowMethods.join(' '),
      'data-name': img.image,
    }, info, mapsBox);
    main.append(row);
    rows.push({el: row, classes: targetClasses, methods: rowMethods,
               name: (img.image + ' ' + (img.dir || '')).toLowerCase(), groups: rowGroups});
  });

  // Filters.
  const fClass = document.getElementById('f-class');
  const fMethod = document.getElementById('f-method');
  const fVariant = document.getElementById('f-variant');
  const fQuery = document.getElementById('f-q');
  const byNumber = (a, b) => (Number(a) - Number(b)) || (a < b ? -1 : a > b ? 1 : 0);
  for (const c of [...classes.keys()].sort(byNumber)) {
    const info = classes.get(c);
    fClass.append(el('option', {value: c,
        text: c + (info.label ? ' ' + info.label : '') + ' (' + plural(info.images.size, 'image') + ')'}));
  }
  for (const m of [...allMethods].sort()) fMethod.append(el('option', {value: m, text: m}));
  for (const v of [...variants].sort()) fVariant.append(el('option', {value: v, text: v}));
  const controls = {'class': fClass, method: fMethod, variant: fVariant, q: fQuery};

  function apply() {
    const cls = fClass.value, method = fMethod.value, variant = fVariant.value;
    const q = fQuery.value.trim().toLowerCase();
    let shown = 0;
    for (const r of rows) {
      const ok = (!cls || r.classes.includes(cls)) && (!method || r.methods.includes(method)) &&
          (!q || r.name.includes(q));
      r.el.hidden = !ok;
      if (ok) shown++;
      for (const g of r.groups) {
        let visible = 0;
        for (const f of g.figures) {
          f.el.hidden = Boolean(variant) && f.variant !== variant;
          if (!f.el.hidden) visible++;
        }
        g.el.hidden = (Boolean(cls) && g.cls !== cls) || (Boolean(method) && g.method !== method) ||
            (Boolean(variant) && visible === 0);
      }
    }
    document.getElementById('count').textContent = shown + ' of ' + plural(rows.length, 'image');
    document.getElementById('empty').hidden = shown > 0;
  }

  // The hash holds the filters (#class=56&method=gradcam&variant=overlay&q=cat),
  // so that a filtered view can be linked to, bookmarked or opened headless.
  function fromHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    for (const [name, control] of Object.entries(controls)) {
      const value = params.get(name) || '';
      if (control.tagName === 'SELECT' && value &&
          ![...control.options].some((o) => o.value === value)) {
        control.append(el('option', {value: value, text: value + ' (not in this report)'}));
      }
      control.value = value;
    }
    apply();
  }
  function toHash() {
    const params = new URLSearchParams();
    for (const [name, control] of Object.entries(controls)) {
      if (control.value.trim()) params.set(name, control.value.trim());
    }
    const hash = params.toString();
    if (hash !== location.hash.replace(/^#/, '')) location.replace('#' + hash);
  }
  for (const control of [fClass, fMethod, fVariant]) {
    control.addEventListener('change', () => { apply(); toHash(); });
  }
  fQuery.addEventListener('input', () => { apply(); toHash(); });
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();
