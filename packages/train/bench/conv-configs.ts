/**
 * Forward and backward time of the convolution configurations of an EXTD
 * training step, one at a time, through the addon's conv2d (what libtorch or
 * the addon's own kernels do for each): the 1x1 expand / project convs, the
 * 3x3 depthwise convs (stride 1 and 2) at the finest scale of F.
 *
 *   node --conditions=extd-source --import tsx bench/conv-configs.ts [--size 320] [--batch 4] [--threads 1] [--reps 5]
 */
import { parseArgs } from 'node:util';
import { loadTorch } from '../src/train/torch.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '320' },
    batch: { type: 'string', default: '4' },
    threads: { type: 'string', default: '1' },
    reps: { type: 'string', default: '5' },
  },
});
const torch = loadTorch();
torch.setNumThreads(Number(values.threads));
const B = Number(values.batch);
const r = Number(values.size) / 2;
const reps = Number(values.reps);
interface Cfg {
  name: string;
  cin: number;
  cout: number;
  k: number;
  stride: 1 | 2;
  groups: number;
  bias: boolean;
  hw: number;
}
const cfgs: Cfg[] = [
  { name: '1x1 32->64', cin: 32, cout: 64, k: 1, stride: 1, groups: 1, bias: false, hw: r },
  { name: '1x1 32->128', cin: 32, cout: 128, k: 1, stride: 1, groups: 1, bias: false, hw: r },
  { name: '1x1 64->32', cin: 64, cout: 32, k: 1, stride: 1, groups: 1, bias: false, hw: r },
  { name: '1x1 128->32', cin: 128, cout: 32, k: 1, stride: 1, groups: 1, bias: false, hw: r },
  { name: 'dw3x3 64 s1 +b', cin: 64, cout: 64, k: 3, stride: 1, groups: 64, bias: true, hw: r },
  { name: 'dw3x3 128 s1 +b', cin: 128, cout: 128, k: 3, stride: 1, groups: 128, bias: true, hw: r },
  { name: 'dw3x3 64 s2 +b', cin: 64, cout: 64, k: 3, stride: 2, groups: 64, bias: true, hw: r },
  { name: 'dw3x3 32 s1 (fpn)', cin: 32, cout: 32, k: 3, stride: 1, groups: 32, bias: false, hw: r },
  { name: '3x3 32->4 head', cin: 32, cout: 4, k: 3, stride: 1, groups: 1, bias: true, hw: r },
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`batch ${B}, ${r}x${r} maps, ${torch.getNumThreads()} threads; median of ${reps}`);
console.log('config                 fwd ms   bwd ms');
for (const c of cfgs) {
  const fw: number[] = [];
  const bw: number[] = [];
  for (let i = 0; i <= reps; i++) {
    torch.tidy(() => {
      const x = torch.randn([B, c.cin, c.hw, c.hw]);
      x.requiresGrad = true;
      const w = torch.randn([c.cout, c.cin / c.groups, c.k, c.k]);
      w.requiresGrad = true;
      const b = c.bias ? torch.randn([c.cout]) : null;
      if (b) b.requiresGrad = true;
      const g = torch.randn([B, c.cout, Math.ceil(c.hw / c.stride), Math.ceil(c.hw / c.stride)]);
      const t0 = performance.now();
      const y = torch.conv2d(x, w, b, [c.stride, c.stride], [c.k >> 1, c.k >> 1], c.groups);
      const t1 = performance.now();
      y.backward(g);
      const t2 = performance.now();
      if (i > 0) fw.push(t1 - t0), bw.push(t2 - t1);
    });
  }
  console.log(`${c.name.padEnd(20)} ${median(fw).toFixed(1).padStart(8)} ${median(bw).toFixed(1).padStart(8)}`);
}
