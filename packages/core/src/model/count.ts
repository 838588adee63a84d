import type { ModelGraph } from './graph.js';

/** Spatial size [height, width] of every value in the graph for an input of h x w pixels. */
export function inferSizes(graph: ModelGraph, height: number, width: number): Map<string, [number, number]> {
  const sizes = new Map<string, [number, number]>([[graph.input, [height, width]]]);
  const get = (v: string) => {
    const s = sizes.get(v);
    if (!s) throw new Error(`graph value '${v}' used before it is defined`);
    return s;
  };
  for (const n of graph.nodes) {
    if (n.op === 'conv') {
      const [h, w] = get(n.input);
      // 3x3 convs have padding 1, 1x1 none: both give ceil(n / stride).
      sizes.set(n.output, [Math.ceil(h / n.stride), Math.ceil(w / n.stride)]);
    } else if (n.op === 'add') sizes.set(n.output, get(n.a));
    else if (n.op === 'upsample') sizes.set(n.output, get(n.like));
    else sizes.set(n.output, get(n.input));
  }
  return sizes;
}

/**
 * Multiply-accumulates of all convolutions (the plain count: out elements x
 * in-channels-per-group x k x k; bias, BN, activations, resize and adds not
 * counted). The paper prints smaller numbers for the same models (4.52 / 6.67 /
 * 11.2 G at 640x640 for FPN-32/48/64) without stating its convention.
 */
export function countConvMacs(graph: ModelGraph, height: number, width: number): number {
  const sizes = inferSizes(graph, height, width);
  let macs = 0;
  for (const n of graph.nodes) {
    if (n.op !== 'conv') continue;
    const [h, w] = sizes.get(n.output)!;
    macs += h * w * n.outChannels * (n.inChannels / n.groups) * n.kernel * n.kernel;
  }
  return macs;
}
