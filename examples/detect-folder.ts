/**
 * Detect the faces in every photo of a folder (Node).
 *
 *   npx tsx examples/detect-folder.ts PHOTOS_DIR [MODEL]      # in your project, after `npm install extd`
 *   node --conditions=extd-source --import tsx examples/detect-folder.ts PHOTOS_DIR   # in this repository
 *
 * MODEL is a bundled name (extd-32, the default; extd-48; extd-64) or a
 * .safetensors/.pth file. Prints one line per photo, then one per face:
 * x y width height (pixels, top-left origin, clipped to the photo) and score.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createDetector } from 'extd';

const [dir, model = 'extd-32'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: detect-folder.ts PHOTOS_DIR [MODEL]');
  process.exit(2);
}
if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
  console.error(`detect-folder: ${dir}: not a folder`);
  process.exit(2);
}
const photos = readdirSync(dir)
  .filter((f) => /\.(jpe?g|png|webp|tiff?)$/i.test(f))
  .sort();
const detector = await createDetector({ model });
try {
  for (const photo of photos) {
    const faces = await detector.detect(join(dir, photo), { scoreThreshold: 0.5 });
    console.log(`${photo}: ${faces.length} face${faces.length === 1 ? '' : 's'}`);
    for (const { box, score } of faces) {
      console.log(`  ${box.x.toFixed(1)} ${box.y.toFixed(1)} ${box.width.toFixed(1)} ${box.height.toFixed(1)} ${score.toFixed(3)}`);
    }
  }
} finally {
  await detector.dispose();
}
