// The page of `gluon-dcgan share`: an export's generator, run in the browser by
// onnxruntime-web's WebAssembly backend. site.json (written by share) gives the shapes;
// latents.bin holds, for each seed the page offers, the latents of
// `generate --onnx --seed S --num N`, then the sliders' directions. Nothing is sent anywhere.
import * as ort from './ort.wasm.bundle.min.mjs';

// One thread: a page served by python -m http.server is not cross-origin isolated (no
// shared memory for threads), and one thread adds in the same order on every machine.
ort.env.wasm.numThreads = 1;

const $ = (id) => document.getElementById(id);
const PAD = 2;          // white pixels between and around tiles, as images.grid draws them
const FRAME_MS = 40;    // the pause between two frames of the walk, after each is drawn
const SLIDER_STEP = 0.1;

function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;  // the style shows busy and error; the text stays readable
  if (text !== undefined) status.textContent = text;
}

async function fetched(name) {
  const response = await fetch(name);
  if (!response.ok) throw new Error(`cannot fetch ${name}: HTTP ${response.status}`);
  return response;
}

// share writes little-endian float32 ('<f4'), whatever this machine's byte order.
function float32s(buffer) {
  const view = new DataView(buffer);
  const out = new Float32Array(buffer.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

// images.PIXEL_RECIPE in numpy's float32 steps: round((x + 1) * 127.5), halves to even,
// clipped to [0, 255]. So a pixel differs from Python's only where the two runtimes'
// sums do.
function pixel(x) {
  const y = Math.fround(Math.fround(x + 1) * 127.5);
  let r = Math.round(y);
  if (r - y === 0.5 && r % 2 !== 0) r -= 1;  // Math.round sends halves up, numpy to even
  return Math.min(255, Math.max(0, r));
}

// Image i of the generator's (n, C, H, W) output as RGBA (a grey image on all three).
function imageData(out, i, [C, H, W]) {
  const image = new ImageData(W, H);
  const px = image.data, size = H * W, base = i * C * size;
  for (let p = 0; p < size; p++) {
    for (let c = 0; c < 3; c++) px[4 * p + c] = pixel(out[base + (C === 1 ? 0 : c) * size + p]);
    px[4 * p + 3] = 255;
  }
  return image;
}

// latent.slerp: the direction turns along the great circle in equal angles and the norm
// goes linearly, so the walk stays where the generator was trained.
function slerp(a, b, t) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  na = Math.sqrt(na); nb = Math.sqrt(nb);
  const omega = na * nb > 0 ? Math.acos(Math.min(1, Math.max(-1, dot / (na * nb)))) : 0;
  let c0 = 1 - t, c1 = t;  // parallel or zero ends have no great circle: a straight line
  if (Math.sin(omega) >= 1e-6) {
    const norm = (1 - t) * na + t * nb;
    c0 = Math.sin((1 - t) * omega) / Math.sin(omega) * (norm / na);
    c1 = Math.sin(t * omega) / Math.sin(omega) * (norm / nb);
  }
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = c0 * a[i] + c1 * b[i];
  return out;
}

// One session.run at a time (a wasm session takes one call at a time). Of the draws asked
// for one view while another runs, only the latest is made: a dragged slider sends many.
const pending = new Map();
const took = {};  // the milliseconds of the last draw of each view, for the status line
let running = false;

function draw(view, job) {
  pending.set(view, job);
  setStatus('busy');
  if (!running) drain();
}

async function drain() {
  running = true;
  try {
    while (pending.size) {
      const [view, job] = pending.entries().next().value;
      pending.delete(view);
      const started = performance.now();
      await job();
      took[view] = Math.round(performance.now() - started);
    }
    setStatus('ready', `ready · the grid took ${took.grid} ms, one image ` +
      `${took.sample ?? took.walk} ms (WebAssembly, one thread)`);
  } catch (error) {
    pending.clear();
    setStatus('error', `error: ${error.message || error}`);
  } finally {
    running = false;
  }
}

class Page {
  constructor(site, latents, session) {
    Object.assign(this, { site, session });
    const { seeds, num, latent_dim: dim, directions } = site;
    this.dim = dim;
    this.grids = latents.subarray(0, seeds * num * dim);
    this.directions = latents.subarray(seeds * num * dim, (seeds * num + directions) * dim);
    this.frames = num * (site.walk_steps - 1);  // a closed loop: tile 0 -> 1 -> ... -> 0
    this.playing = false;
  }

  async generate(Z, n) {
    const input = new ort.Tensor('float32', Z, [n, this.dim, 1, 1]);
    const result = await this.session.run({ [this.session.inputNames[0]]: input });
    return result[this.session.outputNames[0]].data;
  }

  latent(seed, tile) {
    const start = (seed * this.site.num + tile) * this.dim;
    return this.grids.subarray(start, start + this.dim);
  }

  get seed() { return Number($('seed').value); }
  get tile() { return Math.min(this.site.num - 1, Math.max(0, Number($('tile').value) || 0)); }

  // images.grid: ceil(sqrt(n)) columns, PAD white pixels between and around the tiles.
  async drawGrid() {
    const [, H, W] = this.site.image, n = this.site.num, cols = Math.ceil(Math.sqrt(n));
    const start = this.seed * n * this.dim;
    const out = await this.generate(this.grids.slice(start, start + n * this.dim), n);
    const canvas = $('grid'), rows = Math.ceil(n / cols);
    canvas.width = cols * (W + PAD) + PAD;
    canvas.height = rows * (H + PAD) + PAD;
    const context = canvas.getContext('2d');
    context.fillStyle = '#fff';
    context.fillRect(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < n; i++) {
      const r = Math.floor(i / cols), k = i % cols;
      const x = PAD + k * (W + PAD), y = PAD + r * (H + PAD);
      context.putImageData(imageData(out, i, this.site.image), x, y);
    }
    $('command').textContent =
      `gluon-dcgan generate --onnx --export EXPORT --seed ${this.seed} --num ${n}`;
    $('walk-command').textContent = `gluon-dcgan generate --onnx --export EXPORT ` +
      `--interpolate 1 --steps ${this.site.walk_steps} --seed ${this.seed}`;
    this.mark();
  }

  // The chosen tile's frame over the grid: drawn beside the canvas, whose pixels stay Python's.
  mark() {
    const [, H, W] = this.site.image, cols = Math.ceil(Math.sqrt(this.site.num));
    const canvas = $('grid'), scale = canvas.clientWidth / canvas.width, marker = $('marker');
    const r = Math.floor(this.tile / cols), k = this.tile % cols;
    Object.assign(marker.style, {
      left: `${(PAD + k * (W + PAD)) * scale - 2}px`, top: `${(PAD + r * (H + PAD)) * scale - 2}px`,
      width: `${W * scale}px`, height: `${H * scale}px`,
    });
  }

  async drawOne(canvasId, z) {
    const out = await this.generate(z, 1);
    const canvas = $(canvasId);
    [canvas.width, canvas.height] = [this.site.image[2], this.site.image[1]];
    canvas.getContext('2d').putImageData(imageData(out, 0, this.site.image), 0, 0);
  }

  // The chosen tile's latent plus each slider's value times its unit direction.
  async drawSample() {
    const z = Float32Array.from(this.latent(this.seed, this.tile));
    document.querySelectorAll('#sliders input').forEach((slider, k) => {
      const a = Number(slider.value);
      const d = this.directions.subarray(k * this.dim, (k + 1) * this.dim);
      for (let i = 0; i < this.dim; i++) z[i] += a * d[i];
      slider.nextElementSibling.textContent = a.toFixed(1);
    });
    await this.drawOne('sample', z);
  }

  async drawWalk() {
    const steps = this.site.walk_steps, frame = Number($('walk-frame').value);
    const leg = Math.floor(frame / (steps - 1)), j = frame % (steps - 1);
    const next = (leg + 1) % this.site.num;
    await this.drawOne('walk', slerp(this.latent(this.seed, leg), this.latent(this.seed, next),
                                     j / (steps - 1)));
    $('walk-label').textContent = `tile ${leg} → ${next}, ${j}/${steps - 1} of the way`;
    if (this.playing) setTimeout(() => this.advance(), FRAME_MS);
  }

  advance() {
    if (!this.playing) return;
    const slider = $('walk-frame');
    slider.value = (Number(slider.value) + 1) % this.frames;
    draw('walk', () => this.drawWalk());
  }

  drawAll() {
    draw('grid', () => this.drawGrid());
    draw('sample', () => this.drawSample());
    draw('walk', () => this.drawWalk());
  }

  build() {
    const { seeds, num, directions, slider_range: range, walk_steps: steps } = this.site;
    for (let s = 0; s < seeds; s++) $('seed').add(new Option(`seed ${s}`, String(s)));
    $('tile').max = String(num - 1);
    for (let k = 0; k < directions; k++) {
      const label = document.createElement('label');
      label.innerHTML = `direction ${k + 1} <input type="range" min="${-range}" max="${range}" ` +
        `step="${SLIDER_STEP}" value="0"><output>0.0</output>`;
      $('sliders').append(label);
    }
    $('walk-frame').max = String(this.frames - 1);
    $('walk-steps').textContent = `${steps - 1} steps from tile to tile; its first ${steps} frames`;
    this.listen();
    this.drawAll();
  }

  listen() {
    const sample = () => draw('sample', () => this.drawSample());
    $('seed').addEventListener('change', () => this.drawAll());
    $('tile').addEventListener('input', () => { this.mark(); sample(); });
    $('sliders').addEventListener('input', sample);
    $('reset').addEventListener('click', () => {
      document.querySelectorAll('#sliders input').forEach((slider) => { slider.value = '0'; });
      sample();
    });
    $('grid').addEventListener('click', (event) => this.pick(event));
    $('walk-frame').addEventListener('input', () => draw('walk', () => this.drawWalk()));
    $('play').addEventListener('click', () => {
      this.playing = !this.playing;
      $('play').textContent = this.playing ? 'pause' : 'play';
      if (this.playing) this.advance();
    });
    window.addEventListener('resize', () => this.mark());
  }

  pick(event) {
    const [, H, W] = this.site.image, cols = Math.ceil(Math.sqrt(this.site.num));
    const canvas = $('grid'), box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) * canvas.width / box.width - PAD;
    const y = (event.clientY - box.top) * canvas.height / box.height - PAD;
    const k = Math.floor(x / (W + PAD)), r = Math.floor(y / (H + PAD)), tile = r * cols + k;
    if (k < 0 || k >= cols || r < 0 || tile >= this.site.num) return;
    $('tile').value = String(tile);
    this.mark();
    draw('sample', () => this.drawSample());
  }
}

async function start() {
  if (location.protocol === 'file:') return;  // index.html says how to serve the folder
  setStatus('loading', 'loading the generator…');
  const site = await (await fetched('site.json')).json();
  const latents = float32s(await (await fetched(site.latents)).arrayBuffer());
  const expected = (site.seeds * site.num + site.directions) * site.latent_dim;
  if (latents.length !== expected) {
    throw new Error(`${site.latents} holds ${latents.length} numbers, site.json says ${expected}`);
  }
  const model = new Uint8Array(await (await fetched(site.model)).arrayBuffer());
  const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
  new Page(site, latents, session).build();
}

start().catch((error) => setStatus('error', `error: ${error.message || error}`));
