// Helpers shared by cnnviz's pages (the report and the explorer). Loaded
// before each page's own script; it defines one global, cnnvizDom.
var cnnvizDom = (function () {
  'use strict';

  // An element with attributes (text: its text; false/null: left out) and
  // children.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  // A probability as a percentage with three significant digits at most
  // ('' for anything but a number).
  function pct(p) {
    if (typeof p !== 'number') return '';
    const v = p * 100;
    return (v >= 10 ? v.toFixed(1) : v >= 0.1 ? v.toFixed(2) : v.toFixed(3)) + '%';
  }

  return { el, pct };
})();
