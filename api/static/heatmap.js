// Attention maps drawn over an image, like the paper's figures and the server's overlays
// (drawing/overlays.py): each map is scaled by its own peak, upsampled by the canvas with
// smoothing, colour-mapped and blended over a washed-out copy of the image. A hard-attention
// model reads one cell per word: that cell is outlined on top.

const OVERLAY_WEIGHT = 0.6; // share of the colour map in the blend
const WASH = 0.5; // saturation kept from the photo, so it does not compete with the map
const CELL_COLOUR = "#00e5ff"; // cyan: no colour of the inferno map, so it never reads as attention
const CELL_LINE = 2; // pixels, drawn inside the cell

// Five stops of matplotlib's "inferno", as in drawing/overlays.py: lightness rises with value.
const INFERNO = [
  [0.001462, 0.000466, 0.013866],
  [0.3415, 0.062325, 0.429425],
  [0.735683, 0.215906, 0.330245],
  [0.978422, 0.557937, 0.034931],
  [0.988362, 0.998364, 0.644924],
];
const LUT = buildLut(INFERNO); // 256 x RGB in 0..255

// The image with its colours pulled toward grey, so that it does not compete with the map.
export function washedOut(image) {
  const px = image.data;
  for (let i = 0; i < px.length; i += 4) {
    const grey = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
    for (let c = 0; c < 3; c++) px[i + c] = grey + WASH * (px[i + c] - grey);
  }
  return image;
}

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

// The map upsampled (smoothly) to the image, colour-mapped and blended over `base`, the
// washed-out image as ImageData.
export function renderOverlay(base, map) {
  const big = document.createElement("canvas");
  big.width = base.width;
  big.height = base.height;
  const bctx = big.getContext("2d", { willReadFrequently: true });
  bctx.imageSmoothingEnabled = true;
  bctx.imageSmoothingQuality = "high";
  bctx.drawImage(mapToCanvas(map), 0, 0, big.width, big.height); // smooth upsampling
  const heat = bctx.getImageData(0, 0, big.width, big.height).data;
  let top = 1;
  for (let i = 0; i < heat.length; i += 4) top = Math.max(top, heat[i]);
  const out = new ImageData(new Uint8ClampedArray(base.data), big.width, big.height);
  const px = out.data;
  for (let i = 0; i < px.length; i += 4) {
    const level = Math.round((255 * heat[i]) / top) * 3;
    for (let c = 0; c < 3; c++) {
      px[i + c] = (1 - OVERLAY_WEIGHT) * px[i + c] + OVERLAY_WEIGHT * LUT[level + c];
    }
  }
  return out;
}

// Outline the grid cell [row, col] of a rows x cols grid over the whole canvas, on whole
// pixels so that the line keeps its colour exactly.
export function outlineCell(ctx, [row, col], rows, cols) {
  const { width, height } = ctx.canvas;
  const x0 = Math.round((col * width) / cols);
  const x1 = Math.round(((col + 1) * width) / cols);
  const y0 = Math.round((row * height) / rows);
  const y1 = Math.round(((row + 1) * height) / rows);
  const half = CELL_LINE / 2;
  ctx.save();
  ctx.strokeStyle = CELL_COLOUR;
  ctx.lineWidth = CELL_LINE;
  ctx.strokeRect(x0 + half, y0 + half, x1 - x0 - CELL_LINE, y1 - y0 - CELL_LINE);
  ctx.restore();
}
