import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileKey, parseCategory, selectImages, splitImages, summaryLine, type FaceDataset } from '@extd/core/data/dataset';
import { detectAnnotationFormat, readFaceDataset, trainingSamples } from '../src/data/read-dataset.js';
import { parseWiderAnnotations } from '@extd/core/data/wider-annotations';
import { parseWiderMat } from '@extd/core/data/wider-mat';
import { parseXml, childText } from '@extd/core/data/xml';
import { parseDataYaml } from '@extd/core/data/yaml';
import { parseCoco } from '@extd/core/data/coco';
import { ExtdError } from '@extd/core/utils/errors';
import { isExtdError, throwsExtd } from '../../../test-support/expect-error.js';
import {
  EXPECTED_XYXY,
  FACES,
  H,
  NAMES,
  W,
  vocXml,
  writeCoco,
  writeImages,
  writeVoc,
  writeWiderMat,
  writeWiderText,
  writeYolo,
} from '../../../test-support/face-sets.js';
import { widerMat } from '../../../test-support/mat5-writer.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

const root = mkdtempSync(join(tmpdir(), 'extd-data-formats-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** Boxes of a dataset by image name, rounded to 1e-6 (YOLO's normalised values do not round-trip exactly). */
function boxesByName(d: FaceDataset): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const im of d.images) out[fileKey(im.file).split('/').pop()!] = Array.from(im.boxes, (v) => Math.round(v * 1e6) / 1e6);
  return out;
}
const expected = Object.fromEntries(NAMES.map((n, k) => [n, EXPECTED_XYXY[k]!]));

async function rejectsExtd(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, isExtdError(re));
}

// ---------------------------------------------------------------- XML, YAML

test('xml: elements, attributes, entities, CDATA, comments, declaration; text between children kept', () => {
  const doc = parseXml(
    '\ufeff<?xml version="1.0" encoding="utf-8"?>\n<!-- c -->\n<!DOCTYPE annotation>\n<a x="1" y=\'t&amp;u\'>\n  <name>A &lt;b&gt; &#65;&#x42;</name>\n  <e/>\n  <c><![CDATA[<raw>&]]></c> stray\n</a>\n',
    'doc.xml',
  );
  assert.equal(doc.name, 'a');
  assert.deepEqual(doc.attributes, { x: '1', y: 't&u' });
  assert.equal(childText(doc, 'name'), 'A <b> AB');
  assert.equal(childText(doc, 'c'), '<raw>&');
  assert.equal(childText(doc, 'e'), '');
  assert.equal(doc.children[0]!.line, 5);
  assert.match(doc.text, /stray/);
});

test('xml: malformed documents are one-line errors naming the file and line', () => {
  throwsExtd(() => parseXml('<a>\n<b>\n</c>\n</a>', 'm.xml'), /^m\.xml:3: end tag <\/c> does not match <b> opened on line 2$/);
  throwsExtd(() => parseXml('<a>\n<b>x</b>\n', 'm.xml'), /^m\.xml:1: element <a> not closed/);
  throwsExtd(() => parseXml('<a>x & y</a>', 'm.xml'), /m\.xml:1: '&' not followed by an entity reference/);
  throwsExtd(() => parseXml('<a>&nbsp;</a>', 'm.xml'), /unknown entity &nbsp;/);
  throwsExtd(() => parseXml('<a x=1></a>', 'm.xml'), /attribute x of <a> is not quoted/);
  throwsExtd(() => parseXml('<a></a><b></b>', 'm.xml'), /content after the root element/);
  throwsExtd(() => parseXml('', 'm.xml'), /no root element/);
  throwsExtd(() => parseXml('<a>1 < 2</a>', 'm.xml'), /'<' that starts no tag/);
});

test('yaml: the data.yaml subset (flow and block lists, index maps, comments, quotes); nested blocks kept as null', () => {
  const y = parseDataYaml(
    "# YOLO\npath: ../data   # root\ntrain: 'images/train'\nval: [a/val, \"b/val\"]\nnc: 2\nnames:\n  - face\n  - 'with # hash'\nroboflow:\n  workspace: w\n  nested:\n    deeper: x\n",
    'data.yaml',
  );
  assert.equal(y.get('path'), '../data');
  assert.equal(y.get('train'), 'images/train');
  assert.deepEqual(y.get('val'), ['a/val', 'b/val']);
  assert.deepEqual(y.get('names'), ['face', 'with # hash']);
  assert.equal(y.get('roboflow'), null);
  assert.deepEqual(parseDataYaml('names:\n  0: face\n  1: mask\n', 'd').get('names'), { 0: 'face', 1: 'mask' });
  assert.deepEqual(parseDataYaml('names: {0: face, 1: mask}\n', 'd').get('names'), { 0: 'face', 1: 'mask' });
  throwsExtd(() => parseDataYaml('names: [face\n', 'd.yaml'), /^d\.yaml:1: flow sequence not closed/);
  throwsExtd(() => parseDataYaml('train: a\ntrain: b\n', 'd.yaml'), /^d\.yaml:2: key 'train' given twice/);
  throwsExtd(() => parseDataYaml('  train: a\n', 'd.yaml'), /^d\.yaml:1: unexpected indentation/);
  throwsExtd(() => parseDataYaml('just text\n', 'd.yaml'), /^d\.yaml:1: expected 'key: value'/);
});

// ---------------------------------------------------------------- every format, same boxes

test('every reader gives the same images and xyxy boxes for the same set; recognised by content', async () => {
  const sets: Array<[string, Promise<{ annotations: string; images?: string }>, string]> = [
    ['wider-text', writeWiderText(join(root, 'wt')), 'wider-text'],
    ['wider-mat', writeWiderMat(join(root, 'wm')), 'wider-mat'],
    ['coco', writeCoco(join(root, 'coco')), 'coco'],
    ['voc', writeVoc(join(root, 'voc')), 'voc'],
    ['yolo', writeYolo(join(root, 'yolo')), 'yolo'],
  ];
  for (const [name, made, format] of sets) {
    const { annotations, images } = await made;
    assert.equal(detectAnnotationFormat(annotations).format, format, name);
    const d = await readFaceDataset(annotations, { images });
    assert.equal(d.format, format);
    assert.deepEqual(boxesByName(d), expected, name);
    assert.equal(d.stats.images, 4, name);
    assert.equal(d.stats.faces, 5, name);
    assert.equal(d.stats.clipped + d.stats.dropped + d.stats.ignored, 0, name);
    // Training samples: the three images with faces, paths that exist.
    const samples = trainingSamples(d);
    assert.equal(samples.length, 3, name);
    for (const s of samples) assert.ok(readFileSync(s.path).length > 100, s.path);
    assert.match(summaryLine(d), /4 images, 5 faces/);
  }
  // A folder that holds the VOC set's Annotations/ is recognised too, and a YOLO folder by its data.yaml.
  assert.equal(detectAnnotationFormat(join(root, 'voc')).format, 'voc');
  assert.equal(detectAnnotationFormat(join(root, 'yolo')).format, 'yolo');
  // Content, not the name: COCO JSON named .txt is still COCO; a WIDER text file named .json is WIDER.
  copyFileSync(join(root, 'coco', 'faces.json'), join(root, 'coco', 'faces.txt'));
  assert.equal(detectAnnotationFormat(join(root, 'coco', 'faces.txt')).format, 'coco');
  copyFileSync(join(root, 'wt', 'gt.txt'), join(root, 'wt', 'gt.json'));
  assert.equal(detectAnnotationFormat(join(root, 'wt', 'gt.json')).format, 'wider-text');
  writeFileSync(join(root, 'odd.txt'), 'hello\nworld\n');
  throwsExtd(() => detectAnnotationFormat(join(root, 'odd.txt')), /odd\.txt: annotation format not recognised \(first line 'hello'\)/);
  writeFileSync(join(root, 'other.json'), '{"a": 1}');
  throwsExtd(() => detectAnnotationFormat(join(root, 'other.json')), /JSON, but not COCO/);
  throwsExtd(() => detectAnnotationFormat(join(root, 'missing')), /annotations not found: .*missing/);
  mkdirSync(join(root, 'empty-dir'));
  throwsExtd(() => detectAnnotationFormat(join(root, 'empty-dir')), /no annotations recognised in this folder/);
});

test('where images live: WIDER needs --images, COCO defaults to its folder, missing images are named', async () => {
  await rejectsExtd(readFaceDataset(join(root, 'wt', 'gt.txt')), /pass --images DIR/);
  await rejectsExtd(
    readFaceDataset(join(root, 'wt', 'gt.txt'), { images: join(root, 'coco') }),
    /4 of 4 images of .*gt\.txt are missing from .*coco, first: 0--Test\/img_0\.jpg/,
  );
  await rejectsExtd(readFaceDataset(join(root, 'yolo', 'data.yaml'), { images: root }), /--images .*: a YOLO dataset names its image folders/);
  // COCO with an explicit --images elsewhere.
  const d = await readFaceDataset(join(root, 'coco', 'faces.json'), { images: join(root, 'voc', 'JPEGImages') });
  assert.equal(d.imagesDir, join(root, 'voc', 'JPEGImages'));
});

// ---------------------------------------------------------------- COCO

test('coco: iscrowd ignored, other categories skipped, clipping and empty boxes counted, --category', () => {
  const doc = {
    images: [
      { id: 1, file_name: 'a.jpg', width: 100, height: 50 },
      { id: 2, file_name: 'b.jpg', width: 100, height: 50 },
    ],
    annotations: [
      { id: 1, image_id: 1, category_id: 1, bbox: [10, 10, 20, 20], iscrowd: 0 },
      { id: 2, image_id: 1, category_id: 1, bbox: [90, 40, 20, 20], iscrowd: 0 }, // partly outside: clipped to [90,40,100,50]
      { id: 3, image_id: 1, category_id: 1, bbox: [120, 10, 5, 5] }, // entirely outside: empty after clipping
      { id: 4, image_id: 2, category_id: 1, bbox: [0, 0, 0, 10] }, // zero width: empty
      { id: 5, image_id: 2, category_id: 1, bbox: [30, 5, 40, 40], iscrowd: 1 },
      { id: 6, image_id: 2, category_id: 2, bbox: [1, 1, 5, 5] },
    ],
    categories: [
      { id: 1, name: 'face' },
      { id: 2, name: 'hand' },
    ],
  };
  const d = parseCoco(JSON.stringify(doc), 'c.json', '/imgs');
  assert.deepEqual(d.problems, []);
  assert.deepEqual(Array.from(d.images[0]!.boxes), [10, 10, 30, 30, 90, 40, 100, 50]);
  assert.deepEqual(Array.from(d.images[1]!.boxes), [30, 5, 70, 45]);
  assert.deepEqual(Array.from(d.images[1]!.ignore), [1]);
  assert.deepEqual(d.stats, { images: 2, faces: 3, ignored: 1, clipped: 1, dropped: 2, otherClasses: 1 });
  assert.match(
    summaryLine(d),
    /2 images, 3 faces \(classes 'face'\); 1 ignored \(iscrowd\), 1 clipped to the image, 2 empty dropped, 1 objects of other classes skipped/,
  );
  // Training leaves the crowd box out.
  assert.deepEqual(
    trainingSamples(d).map((s) => s.boxes.length / 4),
    [2],
  );
  // Several classes, or all.
  assert.equal(parseCoco(JSON.stringify(doc), 'c.json', '/imgs', { category: ['face', 'hand'] }).stats.faces, 4);
  assert.equal(parseCoco(JSON.stringify(doc), 'c.json', '/imgs', { category: 'all' }).stats.faces, 4);
  throwsExtd(
    () => parseCoco(JSON.stringify(doc), 'c.json', '/imgs', { category: ['head'] }),
    /^c\.json: no category named 'head' \(categories: face \(5\), hand \(1\)\); choose with --category NAME\[,NAME\.\.\.\] or --category all$/,
  );
});

test('coco: malformed files and entries; each problem names the file and the annotation id', async () => {
  throwsExtd(() => parseCoco('{"images": [', 'bad.json', '/'), /^bad\.json: not valid JSON/);
  throwsExtd(() => parseCoco('{"images": [], "annotations": {}}', 'bad.json', '/'), /'annotations' is not an array/);
  const doc = {
    images: [{ id: 1, file_name: 'a.jpg', width: 10, height: 10 }, { id: 1, file_name: 'dup.jpg' }, { id: 3 }],
    annotations: [
      { id: 7, image_id: 1, category_id: 1, bbox: [1, 2, 'x', 4] },
      { id: 8, image_id: 9, category_id: 1, bbox: [1, 2, 3, 4] },
      { id: 9, image_id: 1, category_id: 5, bbox: [1, 2, 3, 4] },
      { id: 10, image_id: 1, category_id: 1, bbox: [1, 2, -3, 4] },
      { id: 11, image_id: 1, category_id: 1, bbox: [1, 2, 3, 4], iscrowd: 2 },
    ],
    categories: [{ id: 1, name: 'face' }],
  };
  const d = parseCoco(JSON.stringify(doc), 'p.json', '/');
  assert.deepEqual(d.problems, [
    'p.json: image id 1: image id given twice',
    'p.json: image id 3: no file_name',
    'p.json: annotation id 7: bbox [1,2,"x",4] is not [x, y, width, height] numbers',
    'p.json: annotation id 8: image_id 9 is not in images',
    'p.json: annotation id 9: category_id 5 is not in categories',
    'p.json: annotation id 10: bbox [1, 2, -3, 4] has a negative width or height',
    'p.json: annotation id 11: iscrowd 2, expected 0 or 1',
  ]);
  // Through the dispatcher: every problem on its own line, then one error naming the first and the count.
  writeFileSync(join(root, 'p.json'), JSON.stringify(doc));
  const lines: string[] = [];
  await rejectsExtd(
    readFaceDataset(join(root, 'p.json'), { onProblem: (l) => lines.push(l) }),
    /^.*p\.json: image id 1: image id given twice \(and 6 more problems in .*p\.json, listed above\)$/,
  );
  assert.equal(lines.length, 7);
});

// ---------------------------------------------------------------- Pascal VOC

test('voc: difficult ignored, 1-based coordinates, clipping, several classes, images found by <folder>', async () => {
  const dir = join(root, 'voc2');
  await writeImages(join(dir, 'photos'));
  mkdirSync(join(dir, 'ann'));
  writeFileSync(
    join(dir, 'ann', 'a.xml'),
    vocXml(
      'img_0.jpg',
      [
        { name: 'with_mask', box: [8, 10, 30, 34] },
        { name: 'without_mask', box: [52, 30, 24, 26], difficult: 1 },
        { name: 'hand', box: [1, 1, 5, 5] },
        { name: 'with_mask', box: [80, 70, 30, 30] }, // beyond 96 x 80: clipped
      ],
      [W, H],
      'photos',
    ),
  );
  writeFileSync(join(dir, 'ann', 'b.xml'), vocXml('img_1', [{ name: 'with_mask', box: [12, 10, 30, 34] }], [0, 0], 'photos')); // no extension, no size
  await rejectsExtd(
    readFaceDataset(join(dir, 'ann')),
    /ann: no object named 'face' in 2 files \(names: with_mask \(3\), without_mask \(1\), hand \(1\)\); choose with --category/,
  );
  const d = await readFaceDataset(join(dir, 'ann'), { category: parseCategory('with_mask,without_mask') });
  assert.equal(d.imagesDir, join(dir, 'photos'));
  assert.deepEqual(d.classes, ['with_mask', 'without_mask']);
  assert.deepEqual(
    d.images.map((im) => im.file),
    ['img_0.jpg', 'img_1.jpg'],
  );
  assert.deepEqual(Array.from(d.images[0]!.boxes), [8, 10, 38, 44, 52, 30, 76, 56, 80, 70, 96, 80]);
  assert.deepEqual(Array.from(d.images[0]!.ignore), [0, 1, 0]);
  // b.xml gave no size: read from the image header.
  assert.deepEqual([d.images[1]!.width, d.images[1]!.height], [W, H]);
  assert.deepEqual(d.stats, { images: 2, faces: 4, ignored: 1, clipped: 1, dropped: 0, otherClasses: 1 });
  // Training leaves the difficult face out.
  assert.deepEqual(
    trainingSamples(d).map((s) => s.boxes.length / 4),
    [2, 1],
  );
  assert.equal((await readFaceDataset(join(dir, 'ann'), { category: 'all' })).stats.faces, 5);
  // An explicit --images that lacks the files is named.
  await rejectsExtd(readFaceDataset(join(dir, 'ann'), { category: 'all', images: root }), /2 of 2 images of .* are missing from/);
});

test('voc: a malformed file or object is a problem line naming the file, line and object', async () => {
  const dir = join(root, 'voc-bad');
  await writeImages(join(dir, 'JPEGImages'));
  mkdirSync(join(dir, 'Annotations'), { recursive: true });
  writeFileSync(join(dir, 'Annotations', 'a.xml'), vocXml('img_0.jpg', [{ name: 'face', box: [8, 10, 30, 34] }]));
  writeFileSync(join(dir, 'Annotations', 'b.xml'), '<annotation>\n<filename>img_1.jpg</filename>\n<object><name>face</name>\n</annotation>\n');
  writeFileSync(
    join(dir, 'Annotations', 'c.xml'),
    vocXml('img_2.jpg', [{ name: 'face', box: [8, 10, 30, 34] }]).replace('<xmax>38</xmax>', '<xmax>3x8</xmax>'),
  );
  writeFileSync(join(dir, 'Annotations', 'd.xml'), '<annotation><folder>JPEGImages</folder></annotation>');
  writeFileSync(join(dir, 'Annotations', 'e.xml'), vocXml('img_3.jpg', [{ name: 'face', box: [8, 10, 30, 34], difficult: 2 }]));
  const lines: string[] = [];
  await rejectsExtd(
    readFaceDataset(join(dir, 'Annotations'), { onProblem: (l) => lines.push(l) }),
    /b\.xml:4: end tag <\/annotation> does not match <object> opened on line 3 \(and 3 more problems/,
  );
  assert.equal(lines.length, 4);
  assert.match(lines[1]!, /c\.xml:6: object 1 \(face\): <xmax> is '3x8', expected a number$/);
  assert.match(lines[2]!, /d\.xml: no <filename>/);
  assert.match(lines[3]!, /e\.xml:6: object 1 \(face\): <difficult> is '2', expected 0 or 1$/);
});

// ---------------------------------------------------------------- YOLO

test('yolo: normalised boxes to pixels, class by name, splits, names as a map, polygons, problems by file:line', async () => {
  const dir = join(root, 'yolo');
  const val = await readFaceDataset(join(dir, 'data.yaml'), { split: 'val' });
  assert.equal(val.imagesDir, join(dir, 'images', 'val'));
  assert.deepEqual(boxesByName(val), expected);
  // Class 0 ('person') has no boxes in this set.
  await rejectsExtd(readFaceDataset(join(dir, 'data.yaml'), { category: ['mask'] }), /no class named 'mask' \(names: person, face\)/);
  await rejectsExtd(readFaceDataset(join(dir, 'data.yaml'), { split: 'test' }), /no 'test' split \(it names: train, val\)/);
  // A second dataset: names as a map, a test list file, a polygon label, and bad lines.
  const d2 = join(root, 'yolo2');
  await writeImages(join(d2, 'images'));
  mkdirSync(join(d2, 'labels'));
  writeFileSync(join(d2, 'labels', 'img_0.txt'), `0 ${19 / W} ${22 / H} ${22 / W} ${24 / H}\n0 0.1 0.1 0.2 0.2 0.2 0.3\n1 0.5 0.5 0.1 0.1\n`);
  writeFileSync(join(d2, 'test.txt'), 'images/img_0.jpg\n./images/img_1.jpg\n');
  writeFileSync(join(d2, 'data.yaml'), 'train: test.txt\nnames:\n  0: face\n  1: hand\n');
  const d = await readFaceDataset(join(d2, 'data.yaml'));
  assert.deepEqual(
    d.images.map((im) => im.file),
    ['images/img_0.jpg', 'images/img_1.jpg'],
  );
  const b = Array.from(d.images[0]!.boxes, (v) => Math.round(v * 1000) / 1000);
  assert.deepEqual(b, [8, 10, 30, 34, 9.6, 8, 19.2, 24]);
  assert.equal(d.stats.otherClasses, 1);
  writeFileSync(join(d2, 'labels', 'img_1.txt'), '0 0.5 0.5 0.1\n7 0.5 0.5 0.1 0.1\n0 0.5 x 0.1 0.1\n');
  const lines: string[] = [];
  await rejectsExtd(readFaceDataset(join(d2, 'data.yaml'), { onProblem: (l) => lines.push(l) }), /img_1\.txt:1: 4 fields, expected 5/);
  assert.equal(lines.length, 3);
  assert.match(lines[1]!, /img_1\.txt:2: class 7 is not an index 0\.\.1 of names/);
  assert.match(lines[2]!, /img_1\.txt:3: .* has a field that is not a number/);
  writeFileSync(join(d2, 'data.yaml'), 'train: nowhere\nnames: [face]\n');
  await rejectsExtd(readFaceDataset(join(d2, 'data.yaml')), /train 'nowhere' not found/);
  writeFileSync(join(d2, 'data.yaml'), 'train: images\nnc: 3\nnames: [face]\n');
  await rejectsExtd(readFaceDataset(join(d2, 'data.yaml')), /nc is 3 but names lists 1 classes/);
});

// ---------------------------------------------------------------- WIDER .mat

test('wider .mat: our writer round trip, invalid faces marked ignore, malformed files named', () => {
  const bytes = widerMat([
    {
      event: '0--A',
      images: [
        {
          name: 'x',
          boxes: [
            [1, 2, 3, 4],
            [5, 6, 0, 8],
          ],
          invalid: [0, 1],
        },
        { name: 'y', boxes: [] },
      ],
    },
    { event: '1--B', images: [{ name: 'z', boxes: [[10, 20, 30, 40]] }] },
  ]);
  const a = parseWiderMat(bytes, 't.mat');
  assert.deepEqual(
    a.map((x) => x.path),
    ['0--A/x.jpg', '0--A/y.jpg', '1--B/z.jpg'],
  );
  assert.deepEqual(
    a[0]!.faces.map((f) => [f.x, f.y, f.w, f.h, f.invalid]),
    [
      [1, 2, 3, 4, 0],
      [5, 6, 0, 8, 1],
    ],
  );
  assert.equal(a[1]!.faces.length, 0);
  throwsExtd(() => parseWiderMat(bytes.subarray(0, 128), 'empty.mat'), /empty\.mat: no variable 'event_list'/);
  throwsExtd(() => parseWiderMat(new TextEncoder().encode('not a mat file at all'), 'txt.mat'), /txt\.mat/);
});

test("wider .mat: the kit's real wider_face_val.mat gives the same faces and labels as the text file", {
  skip: noShared('wider/eval_tools/ground_truth/wider_face_val.mat'),
}, () => {
  const mat = parseWiderMat(readFileSync(sharedPath('wider/eval_tools/ground_truth/wider_face_val.mat')), 'val.mat');
  assert.equal(mat.length, 3226);
  const byPath = new Map(mat.map((a) => [a.path, a]));
  const text = parseWiderAnnotations(readFileSync(sharedPath('wider/wider_face_split/wider_face_val_bbx_gt.txt'), 'utf8'), 'val.txt');
  assert.equal(text.length, 646);
  let faces = 0;
  for (const t of text) {
    const m = byPath.get(t.path);
    assert.ok(m, t.path);
    assert.deepEqual(m!.faces, t.faces, t.path);
    faces += t.faces.length;
  }
  assert.ok(faces > 6000);
});

// ---------------------------------------------------------------- lists and splits

test('lists select images (extension optional, unknown or repeated entries named); splits are seeded and complete', async () => {
  const d = await readFaceDataset(join(root, 'voc', 'Annotations'));
  const s = selectImages(d, ['img_2', 'img_0.jpg'], 'l.txt');
  assert.deepEqual(
    s.images.map((im) => im.file),
    ['img_2.jpg', 'img_0.jpg'],
  );
  assert.equal(s.stats.faces, 3);
  throwsExtd(() => selectImages(d, ['img_9'], 'l.txt'), /^l\.txt: entry 1 'img_9' is not an image of/);
  throwsExtd(() => selectImages(d, ['img_1', 'img_1.jpg'], 'l.txt'), /entry 2 'img_1\.jpg' is listed twice/);
  writeFileSync(join(root, 'list.txt'), '# comment\nimg_1\n\nimg_3.jpg\n');
  const l = await readFaceDataset(join(root, 'voc', 'Annotations'), { list: join(root, 'list.txt') });
  assert.deepEqual(
    l.images.map((im) => im.file),
    ['img_1.jpg', 'img_3.jpg'],
  );

  const a = splitImages(d, 0.5, 7);
  assert.deepEqual(a, splitImages(d, 0.5, 7));
  assert.equal(a.val.length, 2);
  assert.deepEqual([...a.train, ...a.val].sort(), d.images.map((im) => im.file).sort());
  // The order the reader gave does not matter.
  assert.deepEqual(splitImages({ ...d, images: [...d.images].reverse() }, 0.5, 7), a);
  throwsExtd(() => splitImages(d, 1, 0), /split fraction 1/);
  throwsExtd(() => parseCategory('a,,b'), /--category a,,b: expected/);
  assert.equal(parseCategory(' all '), 'all');
  assert.ok(FACES.length === 4 && H === 80);
  assert.ok(new ExtdError('x') instanceof Error);
});
