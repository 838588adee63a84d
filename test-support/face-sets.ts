/**
 * One small annotated face set written in every format extd reads (WIDER
 * text and .mat, COCO JSON, Pascal VOC, YOLO), with the same images and
 * faces, so tests can check that each reader gives the same boxes and that
 * training and evaluation run from each.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng } from '@extd/core/utils/rng';
import { widerMat } from './mat5-writer.js';

export const W = 96;
export const H = 80;

/** Faces per image as x, y, w, h (integers, pixels); the last image has none. */
export const FACES: number[][][] = [
  [
    [8, 10, 30, 34],
    [52, 30, 24, 26],
  ],
  [
    [12, 10, 30, 34],
    [52, 33, 24, 26],
  ],
  [[20, 14, 40, 44]],
  [],
];

export const NAMES = FACES.map((_, k) => `img_${k}`);

/** The boxes every reader must give: xyxy, continuous pixels. */
export const EXPECTED_XYXY = FACES.map((fs) => fs.flatMap(([x, y, w, h]) => [x!, y!, x! + w!, y! + h!]));

/** Noisy images with bright "faces" at FACES, as JPEG. */
export async function writeImages(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const rng = Rng.fromSeed(3);
  for (let k = 0; k < FACES.length; k++) {
    const px = new Uint8Array(W * H * 3).map(() => 60 + rng.int(60));
    for (const [x, y, w, h] of FACES[k]!) {
      for (let j = y!; j < y! + h!; j++) for (let i = x!; i < x! + w!; i++) px.set([230, 190, 160], 3 * (j * W + i));
    }
    await sharp(px, { raw: { width: W, height: H, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(join(dir, `${NAMES[k]}.jpg`));
  }
}

/** WIDER text: ROOT/gt.txt and ROOT/images/0--Test/img_k.jpg. Returns { annotations, images }. */
export async function writeWiderText(root: string): Promise<{ annotations: string; images: string }> {
  await writeImages(join(root, 'images', '0--Test'));
  const lines: string[] = [];
  FACES.forEach((fs, k) => {
    lines.push(`0--Test/${NAMES[k]}.jpg`, String(fs.length));
    if (fs.length === 0) lines.push('0 0 0 0 0 0 0 0 0 0');
    for (const f of fs) lines.push(`${f.join(' ')} 0 0 0 0 0 0`);
  });
  writeFileSync(join(root, 'gt.txt'), lines.join('\n') + '\n');
  return { annotations: join(root, 'gt.txt'), images: join(root, 'images') };
}

/** WIDER .mat: ROOT/wider_face_train.mat and ROOT/images/0--Test/img_k.jpg. */
export async function writeWiderMat(root: string): Promise<{ annotations: string; images: string }> {
  await writeImages(join(root, 'images', '0--Test'));
  const bytes = widerMat([{ event: '0--Test', images: FACES.map((fs, k) => ({ name: NAMES[k]!, boxes: fs })) }]);
  writeFileSync(join(root, 'wider_face_train.mat'), bytes);
  return { annotations: join(root, 'wider_face_train.mat'), images: join(root, 'images') };
}

/** COCO: ROOT/faces.json beside the images (category 'face' id 1, plus an unused 'person' id 2). */
export async function writeCoco(root: string): Promise<{ annotations: string }> {
  await writeImages(root);
  let id = 100;
  const doc = {
    images: FACES.map((_, k) => ({ id: k + 1, file_name: `${NAMES[k]}.jpg`, width: W, height: H })),
    annotations: FACES.flatMap((fs, k) =>
      fs.map(([x, y, w, h]) => ({ id: id++, image_id: k + 1, category_id: 1, bbox: [x, y, w, h], area: w! * h!, iscrowd: 0 })),
    ),
    categories: [
      { id: 1, name: 'face' },
      { id: 2, name: 'person' },
    ],
  };
  writeFileSync(join(root, 'faces.json'), JSON.stringify(doc));
  return { annotations: join(root, 'faces.json') };
}

/** One VOC XML text (1-based inclusive coordinates). */
export function vocXml(
  filename: string,
  objects: Array<{ name: string; box: number[]; difficult?: number }>,
  size: [number, number] = [W, H],
  folder = 'JPEGImages',
): string {
  const objs = objects.map((o) => {
    const [x, y, w, h] = o.box as [number, number, number, number];
    return (
      `  <object>\n    <name>${o.name}</name>\n    <pose>Unspecified</pose>\n    <difficult>${o.difficult ?? 0}</difficult>\n` +
      `    <bndbox><xmin>${x + 1}</xmin><ymin>${y + 1}</ymin><xmax>${x + w}</xmax><ymax>${y + h}</ymax></bndbox>\n  </object>`
    );
  });
  return (
    `<?xml version="1.0"?>\n<annotation>\n  <folder>${folder}</folder>\n  <filename>${filename}</filename>\n` +
    `  <size><width>${size[0]}</width><height>${size[1]}</height><depth>3</depth></size>\n${objs.join('\n')}\n</annotation>\n`
  );
}

/** Pascal VOC: ROOT/Annotations/img_k.xml and ROOT/JPEGImages/img_k.jpg. */
export async function writeVoc(root: string): Promise<{ annotations: string }> {
  await writeImages(join(root, 'JPEGImages'));
  mkdirSync(join(root, 'Annotations'), { recursive: true });
  FACES.forEach((fs, k) => {
    writeFileSync(
      join(root, 'Annotations', `${NAMES[k]}.xml`),
      vocXml(
        `${NAMES[k]}.jpg`,
        fs.map((box) => ({ name: 'face', box })),
      ),
    );
  });
  return { annotations: join(root, 'Annotations') };
}

/** YOLO: ROOT/data.yaml, ROOT/images/{train,val}/img_k.jpg, ROOT/labels/{train,val}/img_k.txt (class 1 = face). */
export async function writeYolo(root: string): Promise<{ annotations: string }> {
  for (const split of ['train', 'val']) {
    await writeImages(join(root, 'images', split));
    mkdirSync(join(root, 'labels', split), { recursive: true });
    FACES.forEach((fs, k) => {
      if (fs.length === 0) return; // no label file: an image without faces
      const rows = fs.map(([x, y, w, h]) => `1 ${(x! + w! / 2) / W} ${(y! + h! / 2) / H} ${w! / W} ${h! / H}`);
      writeFileSync(join(root, 'labels', split, `${NAMES[k]}.txt`), rows.join('\n') + '\n');
    });
  }
  writeFileSync(join(root, 'data.yaml'), 'path: .\ntrain: images/train\nval: images/val  # held out\n\nnc: 2\nnames: [person, face]\n');
  return { annotations: join(root, 'data.yaml') };
}
