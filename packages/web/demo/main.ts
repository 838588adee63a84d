/**
 * The demo page: pick a photo or start the webcam, faces drawn live with
 * their scores, frame rate shown, EXTD-32/48/64 switchable, score threshold
 * adjustable. It uses only the package's browser entry (src/browser.ts).
 *
 * `window.extdDemo` exposes a few functions for the end-to-end test and the
 * browser benchmark (test/browser-e2e.test.ts, bench/browser.ts); they drive
 * the same detector and drawing code a user sees.
 *
 * URL parameters: ?threads=N (wasm threads, default 2), ?model=ID (initial
 * model), ?ep=webgpu (try WebGPU first), ?precision=int8,
 * ?engine=onnxruntime (onnxruntime-web even where extd's wasm kernels run),
 * ?kernels=/folder/ (where the wasm kernels are served from).
 */
import { BUNDLED_MODELS, DomImageReader, createDetector, readSafetensors, type BrowserDetector, type DetectOptions, type Face } from '../src/index.js';

interface DemoModel {
  id: string;
  label: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const modelSelect = $<HTMLSelectElement>('model');
const modelFile = $<HTMLInputElement>('model-file');
const photoInput = $<HTMLInputElement>('photo');
const webcamButton = $<HTMLButtonElement>('webcam');
const threshold = $<HTMLInputElement>('threshold');
const thresholdValue = $<HTMLOutputElement>('threshold-value');
const statusLine = $<HTMLDivElement>('status');
const errorLine = $<HTMLDivElement>('error');
const runtimeLine = $<HTMLSpanElement>('runtime');
const hint = $<HTMLDivElement>('hint');
const view = $<HTMLCanvasElement>('view');
const video = $<HTMLVideoElement>('video');
const viewCtx = view.getContext('2d', { willReadFrequently: true })!;

const params = new URLSearchParams(location.search);
const THREADS = Number(params.get('threads') ?? 2);
const EXECUTION_PROVIDERS = params.get('ep') === 'webgpu' ? (['webgpu', 'wasm'] as const) : (['wasm'] as const);
// ?precision=int8 runs the int8 graph (the bundled models ship their calibration ranges); default float32.
const PRECISION = params.get('precision') === 'int8' ? ('int8' as const) : ('float32' as const);
const ENGINE = params.get('engine') === 'onnxruntime' ? ('onnxruntime' as const) : ('auto' as const);
// ?kernels=/folder/ serves the wasm kernels from elsewhere (the tests point it at a missing folder).
const KERNELS_PATH = params.get('kernels') ?? undefined;

// The package's bundled models, loaded by name (the browser entry resolves a name to its own file).
const models: DemoModel[] = Object.values(BUNDLED_MODELS).map((m) => ({ id: m.name, label: m.description }));
let detector: BrowserDetector | undefined;
let modelLabel = '';
/** What is on screen: a still picture (re-detected when the threshold moves) or the webcam. */
let still: CanvasImageSource | ImageData | undefined;
let stream: MediaStream | undefined;

// Detection, model switches and drawing run one at a time: the boxes drawn must belong to the
// picture on the view canvas, and a model switch replaces the detector between two detections.
let queue: Promise<unknown> = Promise.resolve();
function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

function showError(e: unknown): void {
  errorLine.textContent = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function scoreThreshold(): number {
  return Number(threshold.value);
}

function describeRuntime(): void {
  const rt = detector?.runtime;
  const isolated = crossOriginIsolated ? ', cross-origin isolated' : ', not cross-origin isolated (1 thread)';
  if (detector?.engine.startsWith('extd-kernels')) {
    runtimeLine.textContent = `extd kernels (WebAssembly SIMD), ${detector.engine === 'extd-kernels-wasm' ? `${Math.min(THREADS, 4)} threads` : '1 thread'}${isolated}`;
    return;
  }
  runtimeLine.textContent = rt
    ? `onnxruntime-web ${rt.build} build, ${rt.executionProviders.join(' > ')}, ${rt.threads} thread${rt.threads > 1 ? 's' : ''}${isolated}` +
      (detector?.kernelsError ? ` (${detector.kernelsError})` : '')
    : '';
}

async function setModel(source: string | ArrayBuffer, label: string): Promise<string> {
  return exclusive(async () => {
    statusLine.textContent = `loading ${label}...`;
    const next = await createDetector({
      model: source,
      threads: THREADS,
      wasmPaths: '/ort/',
      executionProviders: [...EXECUTION_PROVIDERS],
      engine: ENGINE,
      kernelsPath: KERNELS_PATH,
      ...(PRECISION === 'int8' ? { precision: PRECISION } : {}),
    });
    const old = detector;
    detector = next;
    modelLabel = `${label} = ${next.variant}`;
    await old?.dispose();
    describeRuntime();
    statusLine.textContent = `${modelLabel} ready`;
    return next.variant;
  });
}

/** Boxes and scores over whatever is already on the view canvas. */
function drawFaces(faces: Face[]): void {
  const lw = Math.max(2, Math.round(Math.max(view.width, view.height) / 400));
  viewCtx.lineWidth = lw;
  viewCtx.font = `${Math.max(12, lw * 6)}px system-ui, sans-serif`;
  viewCtx.textBaseline = 'bottom';
  for (const { box, score } of faces) {
    viewCtx.strokeStyle = '#2f2';
    viewCtx.strokeRect(box.x, box.y, box.width, box.height);
    const text = score.toFixed(2);
    const tw = viewCtx.measureText(text).width;
    viewCtx.fillStyle = 'rgba(0,0,0,0.6)';
    viewCtx.fillRect(box.x, box.y - lw * 7, tw + lw * 2, lw * 7);
    viewCtx.fillStyle = '#2f2';
    viewCtx.fillText(text, box.x + lw, box.y);
  }
}

function paint(source: CanvasImageSource | ImageData, width: number, height: number): void {
  if (view.width !== width || view.height !== height) {
    view.width = width;
    view.height = height;
  }
  if (source instanceof ImageData) viewCtx.putImageData(source, 0, 0);
  else viewCtx.drawImage(source, 0, 0, width, height);
}

function sizeOf(source: CanvasImageSource | ImageData): { width: number; height: number } {
  if (source instanceof HTMLVideoElement) return { width: source.videoWidth, height: source.videoHeight };
  if (source instanceof HTMLImageElement) return { width: source.naturalWidth, height: source.naturalHeight };
  return source as { width: number; height: number };
}

/**
 * Paint `source`, detect on the painted pixels (so boxes and picture are the
 * same frame), draw the boxes. Returns the faces and the detect() time.
 */
async function detectAndDraw(source: CanvasImageSource | ImageData, options: Partial<DetectOptions> = {}): Promise<{ faces: Face[]; ms: number }> {
  if (!detector) throw new Error('no model loaded yet');
  const { width, height } = sizeOf(source);
  paint(source, width, height);
  const t0 = performance.now();
  const faces = await detector.detect(source instanceof ImageData ? source : view, { scoreThreshold: scoreThreshold(), ...options });
  const ms = performance.now() - t0;
  drawFaces(faces);
  return { faces, ms };
}

async function showStill(source: CanvasImageSource | ImageData): Promise<void> {
  still = source;
  hint.hidden = true;
  const { faces, ms } = await exclusive(() => detectAndDraw(source));
  statusLine.textContent = `${modelLabel}: ${faces.length} face${faces.length === 1 ? '' : 's'} above ${scoreThreshold().toFixed(2)} in ${ms.toFixed(1)} ms`;
}

async function startWebcam(): Promise<void> {
  stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  video.srcObject = stream;
  await video.play();
  still = undefined;
  hint.hidden = true;
  webcamButton.textContent = 'Stop webcam';
  let fps = 0;
  let last = performance.now();
  while (stream) {
    const { faces, ms } = await exclusive(() => detectAndDraw(video, { scale: 1 }));
    const now = performance.now();
    // Exponential moving average: a steady number to read, still reacting within a second.
    fps = fps === 0 ? 1000 / (now - last) : 0.9 * fps + 0.1 * (1000 / (now - last));
    last = now;
    statusLine.textContent = `${modelLabel}: ${faces.length} face${faces.length === 1 ? '' : 's'}, detect ${ms.toFixed(1)} ms, ${fps.toFixed(1)} FPS (${video.videoWidth}x${video.videoHeight})`;
    await new Promise((r) => requestAnimationFrame(r));
  }
}

function stopWebcam(): void {
  for (const t of stream?.getTracks() ?? []) t.stop();
  stream = undefined;
  video.srcObject = null;
  webcamButton.textContent = 'Start webcam';
}

/** The `rgb` (HxWx3 uint8) tensor of a safetensors file as ImageData. */
async function fetchPixels(url: string): Promise<ImageData> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const { tensors } = readSafetensors(new Uint8Array(await res.arrayBuffer()), url);
  const rgb = tensors.get('rgb');
  if (!rgb || rgb.shape.length !== 3 || rgb.shape[2] !== 3) throw new Error(`${url}: no HxWx3 'rgb' tensor`);
  const [h, w] = rgb.shape as [number, number, number];
  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let p = 0; p < w * h; p++) {
    rgba[p * 4] = rgb.data[p * 3] as number;
    rgba[p * 4 + 1] = rgb.data[p * 3 + 1] as number;
    rgba[p * 4 + 2] = rgb.data[p * 3 + 2] as number;
    rgba[p * 4 + 3] = 255;
  }
  return new ImageData(rgba, w, h);
}

async function decodeWithBrowser(url: string): Promise<ImageBitmap> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  // 'none': the golden pixels are the file's own pixels, no colour management applied.
  return createImageBitmap(await res.blob(), { colorSpaceConversion: 'none', imageOrientation: 'from-image' });
}

/** The window (x, y, width, height; inside the image) of an ImageData, as a new ImageData. */
function cropWindow(full: ImageData, w: { x: number; y: number; width: number; height: number }): ImageData {
  if (w.x < 0 || w.y < 0 || w.x + w.width > full.width || w.y + w.height > full.height)
    throw new Error(`window ${w.width}x${w.height} at (${w.x}, ${w.y}) is not inside the ${full.width}x${full.height} image`);
  const im = new ImageData(w.width, w.height);
  for (let y = 0; y < w.height; y++)
    im.data.set(full.data.subarray(((w.y + y) * full.width + w.x) * 4, ((w.y + y) * full.width + w.x + w.width) * 4), y * w.width * 4);
  return im;
}

function facesToArrays(faces: Face[]): { boxesXyxy: number[]; scores: number[] } {
  return {
    boxesXyxy: faces.flatMap((f) => [f.box.x, f.box.y, f.box.x + f.box.width, f.box.y + f.box.height]),
    scores: faces.map((f) => f.score),
  };
}

const PASS = { scoreThreshold: 0.05, nmsThreshold: 0.3, maxFaces: 750, scale: 1 } as const;

/**
 * Show `image` and detect with the evaluation pass settings (PASS); via
 * 'imagedata' feeds the ImageData, 'canvas' the canvas it was painted on.
 */
async function detectShown(image: ImageData, via: 'imagedata' | 'canvas') {
  still = image;
  hint.hidden = true;
  return exclusive(async () => {
    paint(image, image.width, image.height);
    const faces = await detector!.detect(via === 'imagedata' ? image : view, PASS);
    // Redraw for the screenshot: the boxes a user would see at the slider's threshold.
    paint(image, image.width, image.height);
    drawFaces(faces.filter((f) => f.score > scoreThreshold()));
    statusLine.textContent = `${modelLabel}: ${faces.filter((f) => f.score > scoreThreshold()).length} faces above ${scoreThreshold().toFixed(2)}`;
    return { width: image.width, height: image.height, ...facesToArrays(faces) };
  });
}

/** Hooks for the end-to-end test and the benchmark. */
const api = {
  ready: undefined as unknown as Promise<void>,
  models: () => models,
  runtime: () => detector?.runtime,
  /** What runs the network: 'extd-kernels-wasm' (threads), 'extd-kernels-wasm-st' (one thread) or 'onnxruntime'. */
  engine: () => detector?.engine,
  kernelsError: () => detector?.kernelsError,
  precision: () => detector?.precision,
  useModel: async (id: string) => {
    const m = models.find((x) => x.id === id);
    if (!m) throw new Error(`no model '${id}' (have ${models.map((x) => x.id).join(', ')})`);
    modelSelect.value = id;
    return setModel(m.id, m.label);
  },
  /**
   * Show the pixels of a `rgb` safetensors file and detect with the
   * evaluation pass settings (score > 0.05, NMS 0.3, top 750, scale 1).
   * via 'imagedata' feeds ImageData; 'canvas' feeds the canvas it was painted on.
   */
  detectPixels: async (url: string, via: 'imagedata' | 'canvas' = 'imagedata') => detectShown(await fetchPixels(url), via),
  /**
   * detectPixels on one window (x, y, width, height in pixels) of the `rgb`
   * image of a safetensors URL, fed as ImageData.
   */
  detectWindow: async (w: { url: string; x: number; y: number; width: number; height: number }) =>
    detectShown(cropWindow(await fetchPixels(w.url), w), 'imagedata'),
  /** Decode a JPEG with the browser and compare its pixels with golden ones (shows the decoded image). */
  compareDecode: async (jpegUrl: string, pixelsUrl: string) => {
    const [bitmap, gold] = await Promise.all([decodeWithBrowser(jpegUrl), fetchPixels(pixelsUrl)]);
    return exclusive(async () => {
      paint(bitmap, bitmap.width, bitmap.height);
      const ours = viewCtx.getImageData(0, 0, bitmap.width, bitmap.height).data;
      let maxAbs = 0,
        differing = 0,
        sumAbs = 0;
      const same = bitmap.width === gold.width && bitmap.height === gold.height;
      if (same) {
        for (let i = 0; i < ours.length; i++) {
          if (i % 4 === 3) continue;
          const d = Math.abs(ours[i]! - gold.data[i]!);
          if (d) differing++, (sumAbs += d), (maxAbs = Math.max(maxAbs, d));
        }
      }
      return { sameSize: same, width: bitmap.width, height: bitmap.height, maxAbs, differing, meanAbs: sumAbs / ((ours.length / 4) * 3) };
    });
  },
  /** Webcam mode, as the button does it; resolves once it runs. */
  startWebcam: () => {
    startWebcam().catch(showError);
  },
  stopWebcam,
  /**
   * Read the playing video twice through one DomImageReader (the reader the
   * detector uses): each read owns its pixels, so a second read (another
   * detect() in flight) cannot overwrite the first.
   */
  readVideoTwice: () => {
    const reader = new DomImageReader();
    const a = reader.read(video);
    const first = a.data.slice();
    const b = reader.read(video);
    return {
      width: a.width,
      height: a.height,
      sameBuffer: a.data === b.data,
      firstUnchanged: a.data.every((v, i) => v === first[i]),
      nonZero: b.data.some((v) => v !== 0),
    };
  },
  /**
   * Calls in flight on one detector. For each window (x, y, width, height)
   * of the `rgb` image of a safetensors URL, the window, a flat grey frame
   * and a mirrored copy of the same size are detected one after another and
   * then all at once with Promise.all (as ImageData, and each painted on its
   * own canvas), with the evaluation pass settings; detectPass and forward
   * likewise. Returns every result for the test to compare.
   */
  detectConcurrently: async (windows: Array<{ url: string; x: number; y: number; width: number; height: number }>) => {
    const images: ImageData[] = [];
    for (const w of windows) {
      const im = cropWindow(await fetchPixels(w.url), w);
      const g = new ImageData(im.width, im.height);
      for (let i = 0; i < g.data.length; i++) g.data[i] = i % 4 === 3 ? 255 : 128;
      const m = new ImageData(im.width, im.height);
      for (let y = 0; y < im.height; y++) {
        for (let x = 0; x < im.width; x++) {
          const s = (y * im.width + x) * 4,
            d = (y * im.width + im.width - 1 - x) * 4;
          (m.data[d] = im.data[s]!), (m.data[d + 1] = im.data[s + 1]!), (m.data[d + 2] = im.data[s + 2]!), (m.data[d + 3] = 255);
        }
      }
      images.push(im, g, m);
    }
    const canvases = images.map((im) => {
      const c = new OffscreenCanvas(im.width, im.height);
      c.getContext('2d')!.putImageData(im, 0, 0);
      return c;
    });
    const rgb = images.map((im) => new DomImageReader().read(im));
    const passOpts = { scale: 1, scoreThreshold: 0.05, nmsThreshold: 0.3, maxFaces: 750 };
    return exclusive(async () => {
      const d = detector!;
      const arrays = (p: { boxes: Float32Array; scores: Float32Array }) => ({ boxes: Array.from(p.boxes), scores: Array.from(p.scores) });
      const sequential: Array<ReturnType<typeof facesToArrays>> = [];
      for (const im of images) sequential.push(facesToArrays(await d.detect(im, PASS)));
      // Canvas inputs go through drawImage + getImageData: compared with their own sequential results.
      const seqCanvas: Array<ReturnType<typeof facesToArrays>> = [];
      for (const c of canvases) seqCanvas.push(facesToArrays(await d.detect(c, PASS)));
      const seqPass: Array<{ boxes: number[]; scores: number[] }> = [];
      for (const im of rgb) seqPass.push(arrays(await d.detectPass(im, passOpts)));
      const seqForward: Array<{ loc: Float32Array; conf: Float32Array }> = [];
      for (const im of rgb) seqForward.push(await d.forward(im));
      const [viaImageData, viaCanvas, reversed, passes, forwards] = await Promise.all([
        Promise.all(images.map((im) => d.detect(im, PASS))),
        Promise.all(canvases.map((c) => d.detect(c, PASS))),
        Promise.all([...images].reverse().map((im) => d.detect(im, PASS))),
        Promise.all(rgb.map((im) => d.detectPass(im, passOpts))),
        Promise.all(rgb.map((im) => d.forward(im))),
      ]);
      const sameForward = forwards.map(
        (f, i) =>
          f.loc.length === seqForward[i]!.loc.length &&
          f.loc.every((v, k) => v === seqForward[i]!.loc[k]) &&
          f.conf.every((v, k) => v === seqForward[i]!.conf[k]),
      );
      return {
        sizes: images.map((im) => `${im.width}x${im.height}`),
        sequential,
        seqCanvas,
        viaImageData: viaImageData.map(facesToArrays),
        viaCanvas: viaCanvas.map(facesToArrays),
        reversed: reversed.map(facesToArrays).reverse(),
        seqPass,
        passes: passes.map(arrays),
        sameForward,
      };
    });
  },
  /** detect() times in ms on a frame of the given size made from an image URL (scale 1, default thresholds). */
  bench: async (imageUrl: string, width: number, height: number, warmup: number, runs: number) => {
    const bitmap = await decodeWithBrowser(imageUrl);
    return exclusive(async () => {
      paint(bitmap, width, height);
      const times: number[] = [];
      for (let i = 0; i < warmup + runs; i++) {
        const t0 = performance.now();
        await detector!.detect(view, { scale: 1 });
        if (i >= warmup) times.push(performance.now() - t0);
      }
      return times;
    });
  },
};
declare global {
  interface Window {
    extdDemo: typeof api;
  }
}
window.extdDemo = api;

threshold.addEventListener('input', () => {
  thresholdValue.textContent = scoreThreshold().toFixed(2);
  if (still && !stream) showStill(still).catch(showError);
});

modelSelect.addEventListener('change', () => {
  errorLine.textContent = '';
  api
    .useModel(modelSelect.value)
    .then(() => (still && !stream ? showStill(still) : undefined))
    .catch(showError);
});

modelFile.addEventListener('change', async () => {
  const file = modelFile.files?.[0];
  if (!file) return;
  errorLine.textContent = '';
  try {
    await setModel(await file.arrayBuffer(), file.name);
    if (still && !stream) await showStill(still);
  } catch (e) {
    showError(e);
  }
});

photoInput.addEventListener('change', async () => {
  const file = photoInput.files?.[0];
  if (!file) return;
  errorLine.textContent = '';
  stopWebcam();
  try {
    await showStill(await createImageBitmap(file, { imageOrientation: 'from-image' }));
  } catch (e) {
    showError(e);
  }
});

webcamButton.addEventListener('click', () => {
  errorLine.textContent = '';
  if (stream) stopWebcam();
  else startWebcam().catch((e) => (stopWebcam(), showError(e)));
});

api.ready = (async () => {
  for (const m of models) modelSelect.add(new Option(`${m.id}: ${m.label}`, m.id));
  const initial = models.find((m) => m.id === params.get('model')) ?? models.find((m) => m.id === 'extd-64') ?? models[0]!;
  await api.useModel(initial.id);
})();
api.ready.catch(showError);
