/**
 * Build the 3,048-image WIDER FACE training set outside the repository: the
 * 1,239 images of `$EXTD_SHARED/wider/WIDER_train` plus 1,809 more (events
 * 0, 2, 3, 5) from a fetched snapshot of SihanWang-WHU/Face_Detection at
 * commit b7e3719a (git dir, no work tree needed), and one annotation file
 * for all of them built from that commit's official
 * `data/wider_face_split/wider_face_train.mat`.
 *
 *   node --conditions=extd-source --import tsx scripts/extract-wider-train.ts [--out /work/data/wider-train-3048]
 *     [--git-dir /work/.mirror/SihanWang-WHU+Face_Detection/repo] [--commit SHA]
 *     [--events 0,2,3,5] [--shared ../shared]
 *
 * Output: OUT/images/EVENT/NAME.jpg and OUT/wider_face_train_bbx_gt.txt
 * (the official text layout; `extd train --annotations OUT/wider_face_train_bbx_gt.txt
 * --images OUT/images`). Every file is written atomically (temp + rename);
 * images already present with the right size are skipped, so an interrupted
 * run resumes. Before anything is written it checks that no image is in the
 * WIDER validation list (`wider/eval_tools/ground_truth/wider_face_val.mat`,
 * all 3,226 validation images), that every image has an annotation in the
 * .mat, and that the .mat's boxes for the shared images equal those of
 * `wider/wider_face_split/wider_face_train_bbx_gt.txt`.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readWiderAnnotations } from 'extd/data/wider-annotations-node';
import { formatWiderAnnotations, type WiderImageAnnotation } from '@extd/core/data/wider-annotations';
import { assertNoValidationImages, sameFaces, widerMatAnnotations, widerMatImageNames } from '@extd/core/data/wider-mat';
import { parseMat5 } from '@extd/core/eval/mat5';
import { writeFileAtomic } from 'extd/utils/atomic';
import { ExtdError } from '@extd/core/utils/errors';
import { Progress } from 'extd/utils/progress';

/** Where the snapshot and its files are, and what to take from it. */
export const EXTRACT_DEFAULTS = Object.freeze({
  gitDir: '/work/.mirror/SihanWang-WHU+Face_Detection/repo',
  commit: 'b7e3719a366c182e79a51ae7e2221cf71acd6674',
  imagesPrefix: 'data/WIDER_train/images/',
  trainMat: 'data/wider_face_split/wider_face_train.mat',
  /** Event numbers taken from the snapshot (the shared set has events 1, 4, 13, 19, 20). */
  events: [0, 2, 3, 5],
  shared: process.env.EXTD_SHARED ?? '../shared',
  out: '/work/data/wider-train-3048',
  annotationFile: 'wider_face_train_bbx_gt.txt',
});

function git(gitDir: string, args: string[]): Buffer {
  try {
    return execFileSync('git', ['--git-dir', gitDir, ...args], { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const msg = (err as { stderr?: Buffer }).stderr?.toString().trim().split('\n')[0] ?? String(err);
    throw new ExtdError(`git --git-dir ${gitDir} ${args.join(' ')}: ${msg}`);
  }
}

interface SourceImage {
  /** EVENT/NAME.jpg */
  path: string;
  size: number;
  /** Snapshot blob id, or the shared file's path. */
  from: { blob: string } | { file: string };
}

function snapshotImages(gitDir: string, commit: string, events: readonly number[]): SourceImage[] {
  const prefix = EXTRACT_DEFAULTS.imagesPrefix;
  const out: SourceImage[] = [];
  const listing = git(gitDir, ['ls-tree', '-r', '-l', commit, prefix]).toString();
  for (const line of listing.split('\n')) {
    const m = /^\d+ blob ([0-9a-f]{40})\s+(\d+)\t(.*)$/.exec(line);
    if (!m) continue;
    const path = m[3]!.slice(prefix.length);
    const event = Number(path.split('--')[0]);
    if (events.includes(event) && path.endsWith('.jpg')) out.push({ path, size: Number(m[2]), from: { blob: m[1]! } });
  }
  return out;
}

function sharedImages(dir: string): SourceImage[] {
  const out: SourceImage[] = [];
  for (const event of readdirSync(dir).sort()) {
    for (const name of readdirSync(join(dir, event)).sort()) {
      if (!name.endsWith('.jpg')) continue;
      const file = join(dir, event, name);
      out.push({ path: `${event}/${name}`, size: statSync(file).size, from: { file } });
    }
  }
  return out;
}

function main(): void {
  const { values: v } = parseArgs({
    options: {
      out: { type: 'string' },
      'git-dir': { type: 'string' },
      commit: { type: 'string' },
      events: { type: 'string' },
      shared: { type: 'string' },
    },
  });
  const d = EXTRACT_DEFAULTS;
  const out = resolve(v.out ?? d.out);
  const gitDir = v['git-dir'] ?? d.gitDir;
  const commit = v.commit ?? d.commit;
  const shared = resolve(v.shared ?? d.shared);
  const events = v.events ? v.events.split(',').map(Number) : d.events;
  if (!events.every((e) => Number.isInteger(e) && e >= 0)) throw new ExtdError(`--events ${v.events}: expected comma-separated event numbers`);
  if (!existsSync(gitDir)) throw new ExtdError(`--git-dir ${gitDir}: not found (fetch github:SihanWang-WHU/Face_Detection first)`);
  const repoRoot = resolve(dirname(new URL(import.meta.url).pathname), '..');
  if (out === repoRoot || out.startsWith(repoRoot + '/')) throw new ExtdError(`--out ${out}: inside the repository; the images must stay outside it`);

  // 1. Annotations of all 12,880 training images, and the validation names.
  const matBytes = git(gitDir, ['show', `${commit}:${d.trainMat}`]);
  const matSource = `${commit.slice(0, 8)}:${d.trainMat}`;
  const all = widerMatAnnotations(parseMat5(matBytes, matSource), matSource);
  const valMat = join(shared, 'wider/eval_tools/ground_truth/wider_face_val.mat');
  if (!existsSync(valMat)) throw new ExtdError(`${valMat}: not found (the validation list the check needs; set --shared or EXTD_SHARED)`);
  const valNames = widerMatImageNames(parseMat5(readFileSync(valMat), valMat), valMat);
  console.error(`train .mat: ${all.length} images, ${all.reduce((s, a) => s + a.faces.length, 0)} faces; validation list: ${valNames.size} images`);

  // 2. The images: the snapshot's events and the shared set, each refused if it is a validation image.
  const fromSnapshot = snapshotImages(gitDir, commit, events);
  assertNoValidationImages(
    fromSnapshot.map((s) => s.path),
    valNames,
    `${gitDir} at ${commit.slice(0, 8)}`,
  );
  const sharedDir = join(shared, 'wider/WIDER_train/images');
  const fromShared = sharedImages(sharedDir);
  assertNoValidationImages(
    fromShared.map((s) => s.path),
    valNames,
    sharedDir,
  );
  const byPath = new Map<string, SourceImage>();
  for (const s of [...fromShared, ...fromSnapshot]) {
    if (byPath.has(s.path))
      throw new ExtdError(`${s.path}: both in ${sharedDir} and in the snapshot's events ${events.join(',')}; pick events the shared set lacks`);
    byPath.set(s.path, s);
  }
  const annotationByPath = new Map(all.map((a) => [a.path, a]));
  const missing = [...byPath.keys()].filter((p) => !annotationByPath.has(p));
  if (missing.length > 0) throw new ExtdError(`${missing.length} images have no annotation in ${matSource} (first: ${missing[0]})`);
  console.error(
    `images: ${fromSnapshot.length} from the snapshot (events ${events.join(', ')}), ${fromShared.length} shared, ${byPath.size} in all; none is a validation image`,
  );

  // 3. The .mat agrees with the shared annotation file on the shared images.
  const sharedTxt = join(shared, 'wider/wider_face_split/wider_face_train_bbx_gt.txt');
  let compared = 0;
  for (const a of readWiderAnnotations(sharedTxt)) {
    const m = annotationByPath.get(a.path);
    if (!m) throw new ExtdError(`${sharedTxt}: ${a.path} is not in ${matSource}`);
    if (!sameFaces(m.faces, a.faces))
      throw new ExtdError(`${a.path}: ${matSource} gives ${m.faces.length} faces, ${sharedTxt} ${a.faces.length}, or their boxes differ`);
    compared++;
  }
  console.error(`${matSource} matches ${sharedTxt} on all ${compared} of its images (boxes and attributes)`);

  // 4. Extract / copy the images (atomic, skipping those already present with the right size).
  const todo = [...byPath.values()].filter((s) => {
    const dst = join(out, 'images', s.path);
    return !(existsSync(dst) && statSync(dst).size === s.size);
  });
  console.error(`${byPath.size - todo.length} images already in ${out}/images, ${todo.length} to write`);
  const progress = new Progress({ label: 'extract', total: todo.length, unit: 'img' });
  for (const s of todo) {
    const dst = join(out, 'images', s.path);
    mkdirSync(dirname(dst), { recursive: true });
    const tmp = join(dirname(dst), `.tmp-${process.pid}-${Date.now()}`);
    try {
      if ('blob' in s.from) {
        const bytes = git(gitDir, ['cat-file', 'blob', s.from.blob]);
        if (bytes.length !== s.size || bytes[0] !== 0xff || bytes[1] !== 0xd8) {
          throw new ExtdError(
            `${s.path}: snapshot blob ${s.from.blob} is ${bytes.length} bytes, not a ${s.size}-byte JPEG (a Git LFS pointer or an absent large file?)`,
          );
        }
        writeFileSync(tmp, bytes);
      } else {
        copyFileSync(s.from.file, tmp);
      }
      renameSync(tmp, dst);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    progress.tick();
  }

  // 5. The annotation file, in the .mat's order.
  const chosen: WiderImageAnnotation[] = all.filter((a) => byPath.has(a.path));
  const annotationPath = join(out, d.annotationFile);
  writeFileAtomic(annotationPath, formatWiderAnnotations(chosen));
  const faces = chosen.reduce((s, a) => s + a.faces.length, 0);
  const usable = chosen.reduce((s, a) => s + a.faces.filter((f) => f.w > 0 && f.h > 0).length, 0);
  const empty = chosen.filter((a) => a.faces.every((f) => !(f.w > 0 && f.h > 0))).length;
  console.error(
    `wrote ${annotationPath}: ${chosen.length} images, ${faces} faces (${usable} with w, h > 0; ${empty} images without a usable face, which training skips)`,
  );
}

try {
  main();
} catch (err) {
  if (err instanceof ExtdError) {
    console.error(`extract-wider-train: ${err.message}`);
    process.exit(2);
  }
  throw err;
}
