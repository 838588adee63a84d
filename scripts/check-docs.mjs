#!/usr/bin/env node
// Fails when docs/api (the API reference TypeDoc generates from the packages'
// entry points) differs from what the current sources give: `npm run docs`
// regenerates it. CI runs this, so the reference cannot go stale.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const committed = 'docs/api';
const fresh = mkdtempSync(join(tmpdir(), 'extd-api-'));
try {
  const r = spawnSync(process.execPath, ['node_modules/typedoc/bin/typedoc', '--out', fresh, '--treatWarningsAsErrors'], { encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    console.error('docs:check: typedoc failed (see above)');
    process.exit(1);
  }
  const list = (dir) => {
    const out = [];
    const walk = (d) => {
      for (const name of readdirSync(d)) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else out.push(relative(dir, p));
      }
    };
    walk(dir);
    return out.sort();
  };
  let have = [];
  try {
    have = list(committed);
  } catch {
    // no committed reference yet: every generated file counts as missing
  }
  const want = list(fresh);
  const stale = [
    ...want.filter((f) => !have.includes(f) || readFileSync(join(committed, f), 'utf8') !== readFileSync(join(fresh, f), 'utf8')),
    ...have.filter((f) => !want.includes(f)),
  ];
  if (stale.length > 0) {
    console.error(`docs:check: ${committed} is stale (${stale.join(', ')}): run npm run docs and commit it`);
    process.exit(1);
  }
  console.log(`docs:check: ${committed} matches the sources (${want.length} files)`);
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
