// Glimpse web page: upload an image, read its caption, see where the model looked.
// Overlays are drawn here from the JSON attention maps (no round trip), so hovering is instant:
// the small map is upsampled by the canvas with smoothing, colour-mapped, blended on the image.
"use strict";

const SIDE = 512; // longest side of the canvas in pixels: small images are enlarged
const OVERLAY_WEIGHT = 0.6; // share of the colour map in the blend
const WASH = 0.5; // saturation kept from the photo, so it does not compete with the map

// Five stops of matplotlib's "inferno", as in service/overlays.py: lightness rises with value.
const INFERNO = [
  [0.001462, 0.000466, 0.013866],
  [0.3415, 0.062325, 0.429425],
  [0.735683, 0.215906, 0.330245],
  [0.978422, 0.557937, 0.034931],
  [0.988362, 0.998364, 0.644924],
];
const LUT = buildLut(INFERNO); // 256 x RGB in 0..255

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d", { willReadFrequently: true });

const state = {
  file: null,
  image: null, // the decoded <img>
  base: null, // ImageData of the washed-out image
  overlays: new Map(), // key -> ImageData, drawn once
  maps: new Map(), // key -> attention map (h x w nested arrays)
  pinned: null, // key of the clicked word or glimpse
};

function buildLut(stops) {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(t), stops.length - 2);
    const f = t - k;
    for (let c = 0; c < 3; c++) {
      lut[i * 3 + c] = Math.round(255 * (stops[k][c] * (1 - f) + stops[k + 1][c] * f));
    }
  }
  return lut;
}

function apiKeyHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function post(path, form) {
  const response = await fetch(path, { method: "POST", body: form, headers: apiKeyHeaders() });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = body && body.error ? body.error : { message: response.statusText };
    if (response.status === 401) $("key-box").open = true;
    throw new Error(error.message);
  }
  return body;
}

function setStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

// ---- drawing ---------------------------------------------------------------------------

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this file"));
    img.src = URL.createObjectURL(file);
  });
}

function showImage(img) {
  const scale = SIDE / Math.max(img.naturalWidth, img.naturalHeight);
  view.width = Math.max(1, Math.round(img.naturalWidth * scale));
  view.height = Math.max(1, Math.round(img.naturalHeight * scale));
  ctx.drawImage(img, 0, 0, view.width, view.height);
  const base = ctx.getImageData(0, 0, view.width, view.height);
  const px = base.data;
  for (let i = 0; i < px.length; i += 4) {
    const grey = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
    for (let c = 0; c < 3; c++) px[i + c] = grey + WASH * (px[i + c] - grey);
  }
  state.base = base;
  view.hidden = false;
  $("drop-hint").hidden = true;
  $("legend").hidden = false;
}

function drawPlain() {
  ctx.drawImage(state.image, 0, 0, view.width, view.height);
}

// The map as grey levels scaled by its own peak, so a diffuse map still uses the full range.
function mapToCanvas(map) {
  const h = map.length;
  const w = map[0].length;
  let peak = 0;
  for (const row of map) for (const v of row) peak = Math.max(peak, v);
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const data = new ImageData(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = peak > 0 ? Math.round((255 * Math.max(map[y][x], 0)) / peak) : 0;
      const i = (y * w + x) * 4;
      data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
      data.data[i + 3] = 255;
    }
  }
  small.getContext("2d").putImageData(data, 0, 0);
  return small;
}

function renderOverlay(map) {
  const big = document.createElement("canvas");
  big.width = view.width;
  big.height = view.height;
  const bctx = big.getContext("2d", { willReadFrequently: true });
  bctx.imageSmoothingEnabled = true;
  bctx.imageSmoothingQuality = "high";
  bctx.drawImage(mapToCanvas(map), 0, 0, big.width, big.height); // smooth upsampling
  const heat = bctx.getImageData(0, 0, big.width, big.height).data;
  let top = 1;
  for (let i = 0; i < heat.length; i += 4) top = Math.max(top, heat[i]);
  const out = new ImageData(new Uint8ClampedArray(state.base.data), big.width, big.height);
  const px = out.data;
  for (let i = 0; i < px.length; i += 4) {
    const level = Math.round((255 * heat[i]) / top) * 3;
    for (let c = 0; c < 3; c++) {
      px[i + c] = (1 - OVERLAY_WEIGHT) * px[i + c] + OVERLAY_WEIGHT * LUT[level + c];
    }
  }
  return out;
}

function show(key) {
  if (!state.image) return;
  if (key === null || !state.maps.has(key)) {
    drawPlain();
    return;
  }
  if (!state.overlays.has(key)) state.overlays.set(key, renderOverlay(state.maps.get(key)));
  ctx.putImageData(state.overlays.get(key), 0, 0);
}

// ---- words and glimpses ----------------------------------------------------------------

function chip(className, label, key) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = label;
  button.dataset.key = key;
  button.setAttribute("aria-pressed", "false");
  button.addEventListener("mouseenter", () => show(key));
  button.addEventListener("focus", () => show(key));
  button.addEventListener("mouseleave", () => show(state.pinned));
  button.addEventListener("blur", () => show(state.pinned));
  button.addEventListener("click", () => pin(key));
  return button;
}

function pin(key) {
  state.pinned = state.pinned === key ? null : key;
  for (const button of document.querySelectorAll(".word, .glimpse")) {
    button.setAttribute("aria-pressed", String(button.dataset.key === state.pinned));
  }
  show(state.pinned);
}

function forget(prefix) {
  for (const key of [...state.maps.keys()]) {
    if (key.startsWith(prefix)) {
      state.maps.delete(key);
      state.overlays.delete(key);
    }
  }
  if (state.pinned && state.pinned.startsWith(prefix)) state.pinned = null;
}

function renderCaption(result) {
  forget("word:");
  const box = $("caption");
  box.replaceChildren();
  if (result.tokens.length === 0) {
    box.innerHTML = '<span class="empty">(the model wrote no words)</span>';
  }
  result.tokens.forEach((token, i) => {
    const key = `word:${i}`;
    if (token.attention) state.maps.set(key, token.attention);
    box.append(chip("word", token.word, key));
  });
  $("caption-meta").textContent =
    `${result.model} · grid ${result.grid[0]}×${result.grid[1]} · ${result.timing_ms.total} ms`;
}

function renderAnswer(result) {
  forget("glimpse:");
  const box = $("answer");
  box.replaceChildren();
  const answer = result.answers[0];
  const title = document.createElement("p");
  title.className = "answer";
  title.textContent = answer.answer;
  const list = document.createElement("ul");
  list.className = "topk";
  for (const { answer: name, score } of answer.top_k) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * score).toFixed(1)}%`;
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = score.toFixed(3);
    item.append(label, bar, value);
    list.append(item);
  }
  box.append(title, list);
  const maps = answer.attention || [];
  if (maps.length === 0) {
    box.insertAdjacentHTML("beforeend", '<p class="meta">This model has no attention maps.</p>');
  } else {
    const row = document.createElement("p");
    row.append("Where it looked: ");
    maps.forEach((map, g) => {
      const key = `glimpse:${g}`;
      state.maps.set(key, map);
      row.append(chip("glimpse", `glimpse ${g + 1}`, key));
    });
    box.append(row);
    pin(`glimpse:0`);
  }
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.textContent = `${result.model} · ${result.timing_ms.total} ms`;
  box.append(meta);
}

// ---- actions ---------------------------------------------------------------------------

async function caption() {
  const form = new FormData();
  form.append("image", state.file);
  form.append("beam_size", $("beam-size").value);
  setStatus("Captioning…");
  try {
    renderCaption(await post("/v1/captions", form));
    setStatus("");
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function choose(file) {
  if (!file) return;
  try {
    const img = await loadImage(file);
    state.file = file;
    state.image = img;
    state.pinned = null;
    state.maps.clear();
    state.overlays.clear();
    $("answer").replaceChildren();
    showImage(img);
    $("ask-button").disabled = false;
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  await caption();
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!state.file || !question) return;
  const form = new FormData();
  form.append("image", state.file);
  form.append("question", question);
  setStatus("Thinking…");
  try {
    renderAnswer(await post("/v1/vqa", form));
    setStatus("");
  } catch (error) {
    setStatus(error.message, true);
  }
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => choose(event.target.files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files[0]);
  });
  $("beam-size").addEventListener("change", () => state.file && caption());
  $("ask").addEventListener("submit", ask);
  const key = $("api-key");
  key.value = sessionStorage.getItem("glimpse-api-key") || "";
  key.addEventListener("change", () => sessionStorage.setItem("glimpse-api-key", key.value));
}

setUp();
