// The page: search the catalog (tiled's HTTP API), show a file's default plot and its
// results, and follow running jobs without a reload.
//
// Every value from the catalog is text: it goes into the page through textContent and
// element attributes only, never as HTML (a sample named "<img onerror=...>" shows as typed
// and runs nothing). Who reads, and with what key or session: session.js.
"use strict";

let following = null;

// an element with its attributes and children (strings become text nodes, never HTML)
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function text(value) { return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value ?? ""); }

// a job's status as a class name: one of the known words, nothing a record can inject
function statusClass(status) {
  return ["queued", "running", "done", "failed"].includes(status) ? status : "unknown";
}

function say(text, refused) {
  const el = document.getElementById("message");
  el.textContent = text;
  el.className = refused ? "refused" : "";
}

function refusal(error) {
  if (error.refused) {
    say(session.people
      ? `Refused (HTTP ${error.refused}): log in again.`
      : `Refused: the catalog did not accept this API key (HTTP ${error.refused}). ` +
        "Check the key and search again.", true);
  } else {
    say(`The catalog could not be read: ${error.message}`, true);
  }
}

function epoch(value) { return value ? new Date(value).getTime() / 1000 : null; }

function searchPath() {
  const params = new URLSearchParams();
  const equal = { beamline: "beamline", sample: "sample", technique: "definition" };
  for (const [id, key] of Object.entries(equal)) {
    const value = document.getElementById(id).value.trim();
    if (value) {
      params.append("filter[eq][condition][key]", key);
      params.append("filter[eq][condition][value]", JSON.stringify(value));
    }
  }
  const ranges = [["since", "end_epoch", "ge"], ["until", "start_epoch", "le"]];
  for (const [id, key, op] of ranges) {
    const value = epoch(document.getElementById(id).value);
    if (value !== null) {
      params.append("filter[comparison][condition][operator]", op);
      params.append("filter[comparison][condition][key]", key);
      params.append("filter[comparison][condition][value]", JSON.stringify(value));
    }
  }
  params.append("fields", "metadata");
  params.append("page[limit]", "100");
  return "/api/v1/search/?" + params.toString();
}

function badges(meta) {
  const results = Object.entries(meta.results || {});
  if (!results.length) return [document.createTextNode("-")];
  return results.map(([pipeline, r]) =>
    el("span", { class: `badge ${statusClass(r.status)}`, dataset: { pipeline } },
       `${pipeline}: ${text(r.status)}`));
}

function fileName(path) { return (path || "").split("/").pop(); }

async function search(event) {
  if (event) event.preventDefault();
  say("Searching...");
  let found;
  try {
    found = await api(searchPath());
  } catch (error) {
    document.getElementById("results").hidden = true;
    refusal(error);
    return;
  }
  const rows = found.data.filter((item) => item.attributes.metadata.kind !== "derived");
  const body = document.querySelector("#results tbody");
  body.replaceChildren();
  for (const item of rows) {
    const m = item.attributes.metadata;
    const tr = el("tr", { class: "file", dataset: { key: item.id } },
      el("td", {}, fileName(text(m.file_path))), el("td", {}, text(m.beamline)),
      el("td", { class: "sample" }, text(m.sample)), el("td", {}, text(m.definition || "-")),
      el("td", {}, text(m.start_time).slice(0, 19)), el("td", {}, text(m.status || "ok")),
      el("td", { class: "result-badges" }, ...badges(m)));
    tr.addEventListener("click", () => openFile(item.id));
    body.appendChild(tr);
  }
  document.getElementById("results").hidden = rows.length === 0;
  say(rows.length ? `${rows.length} file(s) found` : "No file found");
}

async function array(key, path, slice) {
  const query = "format=application/json" + (slice !== undefined ? `&slice=${slice}` : "");
  return api(`/api/v1/array/full/${key}/${path}?${query}`);
}

// a dataset's units, as the file says them (its HDF5 attribute), or ""
async function unitOf(key, path) {
  try {
    const meta = (await api(`/api/v1/metadata/${key}/${path}`)).data.attributes.metadata;
    return typeof meta.units === "string" ? meta.units : "";
  } catch (error) { return ""; }
}

function heatmap(div, z, title) {
  Plotly.newPlot(div, [{ z: z, type: "heatmap", colorscale: "Greys", reversescale: true }],
    { title: { text: title }, margin: { t: 40, l: 40, r: 10, b: 30 },
      yaxis: { autorange: "reversed", scaleanchor: "x" } }, { staticPlot: false });
}

function curve(div, x, y, title, xtitle, ytitle, log) {
  Plotly.newPlot(div, [{ x: x, y: y, mode: "lines", type: "scatter" }],
    { title: { text: title }, margin: { t: 40, l: 60, r: 10, b: 50 },
      xaxis: { title: { text: xtitle }, type: log ? "log" : "linear" },
      yaxis: { title: { text: ytitle }, type: log ? "log" : "linear" } });
}

async function defaultPlot(key, meta) {
  const div = document.getElementById("plot-default");
  const caption = document.getElementById("default-caption");
  if (meta.definition === "NXxas") {
    const [e, mu, unit] = await Promise.all([array(key, "during_exposure/energy"),
                                             array(key, "during_exposure/intensity"),
                                             unitOf(key, "during_exposure/energy")]);
    caption.textContent = "mu(E) = ln(I0/It)";
    curve(div, e, mu, "mu(E)", unit ? `energy (${unit})` : "energy", "mu", false);
  } else if (meta.definition === "NXfluo") {
    const spectra = await array(key, "during_exposure/instrument/fluorescence/data");
    const energy = await array(key, "during_exposure/instrument/fluorescence/energy");
    caption.textContent = "The first spectrum";
    curve(div, energy, spectra[0], "spectrum", "energy (keV)", "counts", false);
  } else {
    let index = 0;
    let what = "The first frame";
    if (meta.definition === "NXtomo") {  // darks and flats first: show a projection
      const keys = await array(key, "during_exposure/instrument/detector/image_key");
      index = Math.max(0, keys.indexOf(0));
      what = "The first projection";
    }
    const frame = await array(key, "during_exposure/data/data", index);
    caption.textContent = what;
    heatmap(div, frame, `frame ${index}`);
  }
}

async function resultPlot(div, result) {
  const meta = (await api(`/api/v1/metadata/${result.key}`)).data.attributes.metadata;
  if (meta.pipeline === "nabu") {
    const shape = (meta.results && meta.results.shape) || [1];
    const middle = Math.floor(shape[0] / 2);
    const slice = await array(result.key, "reconstruction/data/data", middle);
    heatmap(div, slice, `reconstructed slice ${middle}`);
  } else if (meta.pipeline === "pyfai") {
    const [q, i] = await Promise.all([array(result.key, "sasentry01/sasdata01/Q"),
                                      array(result.key, "sasentry01/sasdata01/I")]);
    curve(div, q, i, "I(q)", "q (1/angstrom)", "I", true);
  } else if (meta.pipeline === "larch") {
    const [e, n] = await Promise.all([array(result.key, "normalized/data/energy"),
                                      array(result.key, "normalized/data/norm")]);
    curve(div, e, n, `normalised mu(E), E0 ${Number(meta.results.e0).toFixed(1)} eV`, "energy (eV)",
          "normalised mu", false);
  }
  return meta;
}

// what a person can do about a failed reduction, then the program's own words folded away
const REMEDY = {
  nabu: "nabu reconstructs on the CPU through OpenCL: the processor's machine needs its " +
        "backend (scripts/nabu-cpu.sh installs pyopencl, PoCL and pyvkfft), and the file " +
        "its darks, flats and rotation angles.",
  pyfai: "pyFAI integrates with the file's geometry: the detector distance, beam centre, " +
         "pixel size and wavelength must be in it.",
  larch: "mu(E) is ln(I0/It) over the energy: the file needs I0, It and the energy scan.",
};

function failure(pipeline, reason) {
  return [el("p", { class: "remedy" }, "What to do: ",
             REMEDY[pipeline] || "see the processor's log (assonant-ioc process)", " ",
             "Then send the file's event again, or ask the beamline staff."),
          el("details", { class: "reason" }, el("summary", {}, "The program said"),
             el("pre", {}, text(reason)))];
}

function provenance(meta) {
  const p = meta || {};
  const rows = [["program", `${text(p.program)} ${text(p.version)}`], ["from", text(p.raw_file_path)],
    ["raw sha256", text(p.raw_sha256)], ["took", `${text(p.seconds)} s`],
    ["results", JSON.stringify(p.results)]];
  return el("details", { class: "provenance" }, el("summary", {}, "How this was made"),
    el("table", {}, ...rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v)))));
}

async function showResults(key, meta, drawn) {
  const list = document.getElementById("results-list");
  for (const [pipeline, r] of Object.entries(meta.results || {})) {
    let box = [...list.children].find((b) => b.dataset.pipeline === pipeline);
    if (!box) {
      box = el("div", { class: "result", dataset: { pipeline } }, el("h3", {}, pipeline),
        el("p", { class: "status" }), el("div", { class: "plot result-plot" }),
        el("div", { class: "how" }));
      list.appendChild(box);
    }
    box.querySelector(".status").replaceChildren(
      el("span", { class: `badge ${statusClass(r.status)}` }, text(r.status)),
      ...(r.status === "failed" ? failure(pipeline, r.reason) : []));
    box.dataset.status = text(r.status);
    if (r.status === "done" && r.key && !drawn.has(pipeline)) {
      drawn.add(pipeline);
      const derived = await resultPlot(box.querySelector(".result-plot"), r);
      box.querySelector(".how").replaceChildren(provenance(derived));
      box.dataset.drawn = "yes";
    }
  }
}

function metadataTable(meta) {
  document.getElementById("metadata-table").replaceChildren(...Object.entries(meta)
    .filter(([k]) => k !== "results")
    .map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, text(v)))));
}

async function openFile(key) {
  if (following) clearInterval(following);
  const section = document.getElementById("file");
  document.getElementById("results-list").replaceChildren();
  let meta;
  try {
    meta = (await api(`/api/v1/metadata/${key}`)).data.attributes.metadata;
  } catch (error) { refusal(error); return; }
  section.hidden = false;
  section.dataset.key = key;
  document.getElementById("file-title").textContent =
    `${fileName(text(meta.file_path))}: ${text(meta.beamline)}, ${text(meta.sample)} ` +
    `(${text(meta.definition || "no definition")})`;
  metadataTable(meta);
  const drawn = new Set();
  try {
    await defaultPlot(key, meta);
    document.getElementById("plot-default").dataset.drawn = "yes";
  } catch (error) { say(`The default plot could not be drawn: ${error.message}`, true); }
  await showResults(key, meta, drawn);
  // follow the jobs still queued or running: their status and plots update in place
  following = setInterval(async () => {
    const now = (await api(`/api/v1/metadata/${key}`)).data.attributes.metadata;
    await showResults(key, now, drawn);
    const tr = [...document.querySelectorAll("tr.file")].find((t) => t.dataset.key === key);
    if (tr) tr.querySelector(".result-badges").replaceChildren(...badges(now));
  }, 1500);
}

async function start() {
  await startSession();
  document.getElementById("search-form").addEventListener("submit", search);
}

start();
