// `cnnviz report`: the manifest(s) of a run become one static HTML page.
//
// The page is built in the browser from the data embedded as JSON, so the C++
// side only reads, checks and slims the manifests; the markup, style and
// filters live in the three constants below. Nothing is fetched: thumbnails
// are the run's own PNGs, by paths relative to OUTDIR, so the page works from
// file:// and keeps working when OUTDIR is moved or copied whole.
#include "cnnviz/report.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <tuple>
#include <vector>

#include "cnnviz/error.h"
#include "cnnviz/files.h"
#include "cnnviz/version.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

namespace {

constexpr const char* kManifest = "manifest.json";

struct ManifestFile {
  std::string name;   // file name inside OUTDIR
  long k = 0, n = 0;  // shard K of N; 0 for manifest.json
};

Error bad_manifest(const std::string& path, const std::string& problem) {
  return Error(ErrorCode::kInput, "report: '" + path + "': " + problem);
}

// nlohmann's messages start with "[json.exception.<kind>.<id>] ".
std::string json_problem(const std::exception& e) {
  std::string s = first_line(e.what());
  if (s.rfind("[json.exception.", 0) == 0) {
    size_t end = s.find("] ");
    if (end != std::string::npos) s = s.substr(end + 2);
  }
  return s;
}

// manifest.json when it is there, else the shard manifests in increasing K
// (then N, for shards of runs with different shard counts).
std::vector<ManifestFile> find_manifests(const std::string& outdir) {
  std::error_code ec;
  if (fs::is_regular_file(outdir + "/" + kManifest, ec)) return {{kManifest, 0, 0}};
  std::vector<ManifestFile> shards;
  if (fs::is_directory(outdir, ec)) {
    static const std::regex kShard(R"(manifest\.shard-(\d{1,9})-of-(\d{1,9})\.json)");
    for (fs::directory_iterator it(outdir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::smatch m;
      if (std::regex_match(name, m, kShard) && it->is_regular_file(ec)) {
        shards.push_back({name, std::stol(m[1]), std::stol(m[2])});
      }
    }
  }
  std::sort(shards.begin(), shards.end(), [](const ManifestFile& a, const ManifestFile& b) {
    return std::tie(a.k, a.n, a.name) < std::tie(b.k, b.n, b.name);
  });
  if (shards.empty()) {
    throw bad_manifest(outdir + "/" + kManifest,
                       "not found (run a visualization subcommand with -o " + outdir + " first)");
  }
  return shards;
}

json read_manifest(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, "report:");
  json doc;
  try {
    doc = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    throw bad_manifest(path, "not valid JSON (" + json_problem(e) + ")");
  }
  if (!doc.is_object() || !doc.contains("images") || !doc["images"].is_array()) {
    throw bad_manifest(path, "not a cnnviz manifest (no \"images\" array)");
  }
  return doc;
}

// The input image as a path relative to OUTDIR, when it can be found from
// here (an absolute path, or one relative to the current directory) and is a
// format browsers show; null otherwise.
json input_link(const std::string& image, const std::string& outdir) {
  static const std::set<std::string> kShown = {".png",  ".jpg", ".jpeg", ".gif",
                                               ".webp", ".bmp", ".avif"};
  std::string ext = fs::path(image).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::error_code ec;
  if (!kShown.count(ext) || !fs::is_regular_file(image, ec)) return nullptr;
  fs::path rel = fs::relative(fs::absolute(image, ec), fs::absolute(outdir, ec), ec);
  if (ec || rel.empty()) return nullptr;
  return rel.generic_string();
}

json pick(const json& from, std::initializer_list<const char*> keys) {
  json out = json::object();
  for (const char* k : keys) out[k] = from.contains(k) ? from[k] : json(nullptr);
  return out;
}

// What the page needs from the manifests: one run per manifest file, the
// images in order, their PNG maps (with a flag for files that are missing)
// and raw arrays, and notes about what could not be shown.
json report_data(const std::string& outdir, const std::vector<ManifestFile>& files) {
  json data;
  data["title"] = fs::absolute(outdir).lexically_normal().filename().string();
  if (data["title"] == "") data["title"] = outdir;
  data["generator"] = std::string("cnnviz ") + kVersion;
  data["runs"] = json::array();
  data["notes"] = json::array();
  data["images"] = json::array();
  size_t missing = 0;
  std::string first_missing;
  for (const ManifestFile& file : files) {
    const std::string path = outdir + "/" + file.name;
    const json doc = read_manifest(path);
    try {
      const json model = doc.contains("model") && doc["model"].is_object() ? doc["model"] : json();
      json run = {
          {"source", file.name},
          {"model", model.is_object() ? model.value("name", "") : ""},
          {"weights", model.is_object() && model.contains("weights") && model["weights"].is_object()
                          ? model["weights"].value("kind", "")
                          : ""},
          {"method", doc.value("method", "")},
          {"layers", doc.contains("layers") ? doc["layers"] : json::array()}};
      const size_t run_index = data["runs"].size();
      data["runs"].push_back(std::move(run));
      for (const json& e : doc["images"]) {
        json img = {{"image", e.at("image").get<std::string>()},
                    {"dir", e.value("dir", "")},
                    {"run", run_index}};
        img["input"] = input_link(img["image"], outdir);
        if (e.contains("error")) img["error"] = e["error"].get<std::string>();
        img["warnings"] = e.value("warnings", json::array());
        img["predictions"] = json::array();
        for (const json& p : e.value("predictions", json::array())) {
          img["predictions"].push_back(pick(p, {"index", "label", "probability"}));
        }
        img["targets"] = json::array();
        for (const json& t : e.value("targets", json::array())) {
          img["targets"].push_back(pick(t, {"class", "label", "rank", "probability"}));
        }
        img["maps"] = json::array();
        img["raw"] = json::array();
        for (const json& f : e.value("files", json::array())) {
          json m = pick(f, {"path", "method", "layer", "class", "variant"});
          const std::string rel = f.at("path").get<std::string>();
          if (f.value("format", "") == "png") {
            std::error_code ec;
            if (!fs::exists(outdir + "/" + rel, ec)) {
              m["missing"] = true;
              if (missing++ == 0) first_missing = rel;
            }
            img["maps"].push_back(std::move(m));
          } else {
            img["raw"].push_back(std::move(m));
          }
        }
        data["images"].push_back(std::move(img));
      }
    } catch (const json::exception& e) {
      throw bad_manifest(path, "not a cnnviz manifest (" + json_problem(e) + ")");
    }
  }
  if (missing > 0) {
    data["notes"].push_back(std::to_string(missing) + " map file" + (missing > 1 ? "s" : "") +
                            " listed in the manifest " + (missing > 1 ? "are" : "is") +
                            " missing (first: " + first_missing + ")");
  }
  // Shards: say when some are absent, or when stale shards of another run
  // (a different N) were merged too.
  std::map<long, std::vector<long>> by_count;
  for (const ManifestFile& f : files) {
    if (f.n > 0) by_count[f.n].push_back(f.k);
  }
  if (by_count.size() > 1) {
    std::string counts;
    for (const auto& [n, ks] : by_count) counts += (counts.empty() ? "" : ", ") + std::to_string(n);
    data["notes"].push_back("shard manifests of runs with different shard counts (" + counts +
                            ") were merged: images may repeat");
  } else if (by_count.size() == 1) {
    const auto& [n, ks] = *by_count.begin();
    if (static_cast<long>(ks.size()) < n) {
      data["notes"].push_back("only " + std::to_string(ks.size()) + " of " + std::to_string(n) +
                              " shard manifests are present");
    }
  }
  return data;
}

// JSON inside <script>: only "</script" (or "<!--") could end or confuse the
// element, and '<' appears in JSON only inside strings, where \u003c means
// the same.
std::string embed_json(const json& data) {
  const std::string text = data.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size() + 64);
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

constexpr const char* kStyle = R"css(
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1c2330; --muted: #667085; --line: #e2e5ea;
  --accent: #2f6fde; --bar: #dde7fb; --err: #b42318; --errbg: #fef3f2;
  --warn: #93370d; --warnbg: #fffaeb; --thumb: #eef0f3;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #111418; --card: #1a1f26; --ink: #e6e9ee; --muted: #9aa4b2; --line: #2a313b;
    --accent: #7aa7ff; --bar: #26375a; --err: #fda29b; --errbg: #3a1715;
    --warn: #fec84b; --warnbg: #33270c; --thumb: #0d1014;
  }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
a { color: var(--accent); }
header.top { padding: 20px 28px 10px; }
h1 { font-size: 20px; font-weight: 600; margin: 0 0 2px; }
h1 .dim { color: var(--muted); font-weight: 400; }
.sub { color: var(--muted); margin: 0; }
.note {
  margin: 8px 0 0; padding: 6px 10px; border-radius: 6px;
  color: var(--warn); background: var(--warnbg); max-width: 900px;
}
.bar {
  position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; align-items: center;
  gap: 10px 22px; padding: 10px 28px; background: var(--bg); border-bottom: 1px solid var(--line);
}
.bar label { display: flex; align-items: center; gap: 6px; color: var(--muted); }
select, input {
  font: inherit; color: var(--ink); background: var(--card);
  border: 1px solid var(--line); border-radius: 6px; padding: 4px 8px; max-width: 320px;
}
input[type=search] { width: 200px; }
#count { margin-left: auto; color: var(--muted); font-variant-numeric: tabular-nums; }
main { display: flex; flex-direction: column; gap: 14px; padding: 16px 28px 48px; }
#empty { color: var(--muted); padding: 0 28px; }
.row {
  display: grid; grid-template-columns: 250px minmax(0, 1fr); gap: 22px;
  background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px;
  content-visibility: auto; contain-intrinsic-size: auto 360px;
}
.info h2 { font-size: 15px; font-weight: 600; margin: 0; overflow-wrap: anywhere; }
.dir { color: var(--muted); font-size: 12px; margin: 2px 0 10px; overflow-wrap: anywhere; }
.input img { width: 160px; height: 160px; }
.preds { list-style: none; margin: 10px 0 0; padding: 0; }
.preds li {
  position: relative; display: flex; justify-content: space-between; gap: 10px;
  padding: 2px 6px; border-radius: 4px; font-size: 13px;
}
.preds li > i { position: absolute; inset: 0 auto 0 0; background: var(--bar); border-radius: 4px; }
.preds li > span { position: relative; overflow-wrap: anywhere; }
.preds li.target > span:first-of-type { font-weight: 600; }
.preds .p { color: var(--muted); font-variant-numeric: tabular-nums; white-space: nowrap; }
.preds .k { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: 4px; }
.error, .warnings li {
  padding: 6px 10px; border-radius: 6px; margin: 10px 0 0; overflow-wrap: anywhere;
}
.error { color: var(--err); background: var(--errbg); }
.warnings { list-style: none; margin: 0; padding: 0; font-size: 12px; }
.warnings li { color: var(--warn); background: var(--warnbg); margin-top: 6px; }
.maps { display: flex; flex-direction: column; gap: 16px; min-width: 0; }
.group h3 { font-size: 13px; font-weight: 600; margin: 0 0 8px; }
.group h3 small { color: var(--muted); font-weight: 400; font-size: 12px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 160px; }
figure a { display: block; }
figure img {
  display: block; width: 160px; height: 160px; object-fit: contain;
  background: var(--thumb); border-radius: 4px;
}
figure a:hover img { outline: 2px solid var(--accent); outline-offset: 1px; }
figure.missing .gone {
  display: flex; align-items: center; justify-content: center; width: 160px; height: 160px;
  border: 1px dashed var(--line); border-radius: 4px; color: var(--muted); font-size: 12px;
}
figcaption { font-size: 11px; line-height: 1.35; color: var(--muted); margin-top: 4px; overflow-wrap: anywhere; }
figcaption b { color: var(--ink); font-weight: 500; }
details.raw { font-size: 12px; color: var(--muted); margin-top: 8px; }
details.raw a { margin-right: 10px; }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 24px; }
@media (max-width: 760px) { .row { grid-template-columns: minmax(0, 1fr); } }
)css";

constexpr const char* kBody = R"html(
<header class="top">
  <h1 id="title">cnnviz report</h1>
  <p class="sub" id="summary"></p>
  <div id="notes"></div>
</header>
<nav class="bar" aria-label="Filters">
  <label>Class <select id="f-class"><option value="">all classes</option></select></label>
  <label>Method <select id="f-method"><option value="">all methods</option></select></label>
  <label>Variant <select id="f-variant"><option value="">all variants</option></select></label>
  <label>Image <input id="f-q" type="search" placeholder="filter by name" autocomplete="off"></label>
  <span id="count" role="status"></span>
</nav>
<main id="rows"><noscript><p>This report builds its rows with JavaScript; the data is embedded
in this file as JSON (the element with id "cnnviz-data").</p></noscript></main>
<p id="empty" hidden>No image matches these filters.</p>
<footer id="footer"></footer>
)html";

constexpr const char* kScript = R"js(
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('cnnviz-data').textContent);
  const runs = data.runs;

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
  const unique = (xs) => [...new Set(xs)];
  // Manifest paths are relative to OUTDIR, as is this page: encode each
  // segment so that '#', '?', '%' or spaces in names survive.
  const href = (p) => String(p).split('/').map(encodeURIComponent).join('/');
  function pct(p) {
    if (typeof p !== 'number') return '';
    const v = p * 100;
    return (v >= 10 ? v.toFixed(1) : v >= 0.1 ? v.toFixed(2) : v.toFixed(3)) + '%';
  }
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
    const maps = img.maps || [];
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

    // One group per (method, class), in manifest order.
    const groups = new Map();
    for (const m of maps.concat(raw.map((r) => Object.assign({isRaw: true}, r)))) {
      const g = key(m.method) + '\n' + key(m['class']);
      if (!groups.has(g)) groups.set(g, {method: key(m.method), cls: key(m['class']), maps: [], raw: []});
      groups.get(g)[m.isRaw ? 'raw' : 'maps'].push(m);
    }
    const mapsBox = el('div', {class: 'maps'});
    const rowGroups = [];
    for (const g of groups.values()) {
      const t = targets.find((x) => key(x['class']) === g.cls);
      const heading = el('h3', null, g.method + ' · ' + g.cls + (t && t.label ? ' ' + t.label : ''));
      if (t) {
        heading.append(' ', el('small', {text: (t.rank ? 'rank ' + t.rank + ', ' : '') + pct(t.probability)}));
      }
      const thumbs = el('div', {class: 'thumbs'});
      const figures = [];
      for (const m of g.maps) {
        const layer = m.layer === null || m.layer === undefined ? '' : String(m.layer);
        const name = (layer || (m.variant === 'contact' ? 'every layer' : g.method));
        const caption = [g.method, layer || null, 'class ' + g.cls, m.variant].filter(Boolean).join(' / ');
        const pic = m.missing
            ? el('div', {class: 'gone', text: 'file missing'})
            : el('a', {href: href(m.path), title: caption},
                el('img', {src: href(m.path), loading: 'lazy', decoding: 'async', alt: caption,
                           width: 160, height: 160}));
        const fig = el('figure', {class: m.missing ? 'missing' : null, 'data-variant': key(m.variant)},
            pic,
            el('figcaption', null, el('b', {text: name}), el('br'),
               key(m.variant) + ' · ' + g.method + ' · c' + g.cls));
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
)js";

}  // namespace

std::string write_report(const std::string& outdir_arg) {
  std::string outdir = outdir_arg;
  while (outdir.size() > 1 && outdir.back() == '/') outdir.pop_back();
  const std::vector<ManifestFile> files = find_manifests(outdir);
  const json data = report_data(outdir, files);

  std::string html;
  html += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  html += "<meta name=\"generator\" content=\"cnnviz " + std::string(kVersion) + "\">\n";
  html += "<title>cnnviz report: " + html_escape(data["title"].get<std::string>()) + "</title>\n";
  html += "<style>" + std::string(kStyle) + "</style>\n</head>\n<body>";
  html += kBody;
  html +=
      "<script type=\"application/json\" id=\"cnnviz-data\">" + embed_json(data) + "</script>\n";
  html += "<script>" + std::string(kScript) + "</script>\n</body>\n</html>\n";

  const std::string path = outdir + "/index.html";
  write_file_atomic(path, html.data(), html.size());
  return path;
}

}  // namespace cnnviz
