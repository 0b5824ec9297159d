// Glimpse web page: upload an image, read its caption, see where the model looked.
// Overlays are drawn in the browser from the JSON attention maps (heatmap.js), with no round
// trip, so hovering is instant.
import { outlineCell, renderOverlay, washedOut } from "./heatmap.js";

const SIDE = 512; // longest side of the canvas in pixels: small images are enlarged

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d", { willReadFrequently: true });

const state = {
  file: null,
  image: null, // the decoded <img>
  base: null, // ImageData of the washed-out image
  overlays: new Map(), // key -> ImageData, drawn once
  maps: new Map(), // key -> attention map (h x w nested arrays)
  cells: new Map(), // key -> [row, col], the one cell a hard-attention model read
  pinned: null, // key of the clicked word or glimpse
};

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
  state.base = washedOut(ctx.getImageData(0, 0, view.width, view.height));
  view.hidden = false;
  $("drop-hint").hidden = true;
  $("legend").hidden = false;
}

function drawPlain() {
  ctx.drawImage(state.image, 0, 0, view.width, view.height);
}


function show(key) {
  if (!state.image) return;
  if (key === null || !state.maps.has(key)) {
    drawPlain();
    return;
  }
  if (!state.overlays.has(key)) {
    state.overlays.set(key, renderOverlay(state.base, state.maps.get(key)));
  }
  ctx.putImageData(state.overlays.get(key), 0, 0);
  if (state.cells.has(key)) {
    const map = state.maps.get(key);
    outlineCell(ctx, state.cells.get(key), map.length, map[0].length);
  }
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
  for (const button of document.querySelectorAll(".word, .glimpse, .label")) {
    button.setAttribute("aria-pressed", String(button.dataset.key === state.pinned));
  }
  show(state.pinned);
}

function forget(prefix) {
  for (const key of [...state.maps.keys()]) {
    if (key.startsWith(prefix)) {
      state.maps.delete(key);
      state.overlays.delete(key);
      state.cells.delete(key);
    }
  }
  if (state.pinned && state.pinned.startsWith(prefix)) state.pinned = null;
}

// The out_of_domain warning, if any, as a notice: the model only knows what it was trained on.
function renderNotice(element, warnings) {
  const warning = (warnings || []).find((w) => w.code === "out_of_domain");
  element.hidden = !warning;
  element.replaceChildren();
  if (!warning) return;
  const title = document.createElement("strong");
  title.textContent = "This picture is outside what the model knows. ";
  element.append(title, warning.message);
}

// The question as asked, its words outside the vocabulary marked (the model reads them as <unk>).
function renderQuestion(answer) {
  const unknown = new Set(answer.unknown_words || []);
  const line = document.createElement("p");
  line.className = "asked";
  for (const part of answer.question.split(/(\s+)/)) {
    const word = part.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");
    if (word && unknown.has(word)) {
      const mark = document.createElement("mark");
      mark.className = "unknown";
      mark.title = "not in the model's vocabulary: read as unknown";
      mark.textContent = part;
      line.append(mark);
    } else {
      line.append(part);
    }
  }
  if (unknown.size > 0) {
    const note = document.createElement("span");
    note.className = "meta";
    note.textContent = ` (marked words are unknown to the model)`;
    line.append(note);
  }
  return line;
}

// What the encoder itself recognises in an out-of-domain image: ImageNet classes (not a
// caption), each hoverable like a caption word to see its class-activation map.
function renderLabels(element, labels) {
  forget("label:");
  if (!labels || labels.labels.length === 0) return;
  const line = document.createElement("span");
  line.className = "labels";
  line.append("What the encoder recognises (ImageNet classes, not a caption): ");
  labels.labels.forEach((label, i) => {
    const key = `label:${i}`;
    if (label.attention) state.maps.set(key, label.attention);
    line.append(chip("label", `${label.label} ${Math.round(100 * label.score)}%`, key));
  });
  element.append(line);
}

function renderCaption(result) {
  forget("word:");
  renderNotice($("domain-notice"), result.warnings);
  renderLabels($("domain-notice"), result.labels);
  const box = $("caption");
  box.replaceChildren();
  if (result.tokens.length === 0) {
    box.innerHTML = '<span class="empty">(the model wrote no words)</span>';
  }
  result.tokens.forEach((token, i) => {
    const key = `word:${i}`;
    if (token.attention) state.maps.set(key, token.attention);
    const word = chip("word", token.word, key);
    if (token.cell) {
      state.cells.set(key, token.cell);
      word.dataset.cell = token.cell.join(",");
      word.title = `read from the one cell at row ${token.cell[0]}, column ${token.cell[1]}`;
    }
    box.append(word);
  });
  $("cell-legend").hidden = !result.tokens.some((token) => token.cell);
  $("caption-meta").textContent =
    `${result.model} · grid ${result.grid[0]}×${result.grid[1]} · ${result.timing_ms.total} ms`;
}

function renderAnswer(result) {
  forget("glimpse:");
  const box = $("answer");
  box.replaceChildren();
  const answer = result.answers[0];
  const notice = document.createElement("p");
  notice.className = "notice";
  renderNotice(notice, result.warnings);
  box.append(notice, renderQuestion(answer));
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
    state.cells.clear();
    $("answer").replaceChildren();
    $("domain-notice").hidden = true;
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
