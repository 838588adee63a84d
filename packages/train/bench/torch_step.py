#!/usr/bin/env python3
"""The PyTorch side of `npm run bench:train`: times the same EXTD training step
in plain PyTorch (Debian's python3-torch 1.13), for comparison with extd.

Not part of the package and not a dependency: bench/train.ts runs it only when
`python3 -c 'import torch'` works. It reads a folder written by bench/train.ts:

  graph.json   the model graph of src/model/graph.ts (nodes, params, loc/conf
               outputs) and the batch's shape
  weights.f32  every tensor of graph.params in order, float32 little-endian
  input.f32    B x 3 x S x S mean-subtracted input
  conf_t.u8    B*P targets (0 background, 1 face)
  loc_t.f32    B*P x 4 encoded box offsets

and builds the model the way a PyTorch user would: nn.Conv2d, nn.BatchNorm2d
(training mode, momentum 0.1), nn.PReLU / ReLU modules, one module per tensor
name, so the reused block F shares its modules across its six applications.
The step is the SSD/S3FD one: forward, hard negative mining on the tensors
(sort by background loss, 3 negatives per positive), smooth-L1 + cross-entropy
divided by the positives, backward, torch.optim.SGD (lr 1e-3, momentum 0.9,
weight decay 5e-4).

  python3 bench/torch_step.py DIR --threads 2 --steps 3

Prints one JSON line: {"times": [wall seconds per step, warm-up excluded],
"cpu": [CPU seconds per step, all threads], "peak_rss_mb": ..., "torch": version}.
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Graph(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g
        self.mods = nn.ModuleDict()
        key = lambda name: name.replace('.', '_')
        self.key = key
        for n in g['nodes']:
            if n['op'] != 'conv':
                continue
            k = key(n['conv'])
            if k in self.mods:
                continue  # block F: the same modules at every application
            self.mods[k] = nn.Conv2d(n['inChannels'], n['outChannels'], n['kernel'], n['stride'],
                                     (n['kernel'] - 1) // 2, groups=n['groups'], bias=n['bias'])
            if n.get('bn'):
                self.mods[key(n['bn'])] = nn.BatchNorm2d(n['outChannels'], eps=1e-5, momentum=0.1)
            act = n.get('act')
            if act and act['kind'] == 'prelu':
                self.mods[key(act['param'][:-len('.weight')])] = nn.PReLU(1)

    def load_flat(self, flat):
        """Copies graph.params (in order, float32) into the modules."""
        off = 0
        with torch.no_grad():
            for p in self.g['params']:
                n = int(np.prod(p['shape']))
                mod, attr = p['name'].rsplit('.', 1)
                t = getattr(self.mods[self.key(mod)], attr)
                t.copy_(torch.from_numpy(flat[off:off + n].reshape(p['shape'])))
                off += n

    def forward(self, x):
        v = {self.g['input']: x}
        for n in self.g['nodes']:
            op = n['op']
            if op == 'conv':
                y = self.mods[self.key(n['conv'])](v[n['input']])
                if n.get('bn'):
                    y = self.mods[self.key(n['bn'])](y)
                act = n.get('act')
                if act:
                    if act['kind'] == 'prelu':
                        y = self.mods[self.key(act['param'][:-len('.weight')])](y)
                    elif act['kind'] == 'leaky':
                        y = F.leaky_relu(y, act['slope'])
                    else:
                        y = F.relu(y)
                v[n['output']] = y
            elif op == 'add':
                v[n['output']] = v[n['a']] + v[n['b']]
            elif op == 'upsample':
                like = v[n['like']]
                v[n['output']] = F.interpolate(v[n['input']], size=like.shape[2:], mode='bilinear', align_corners=False)
            elif op == 'maxout':
                x4 = v[n['input']]
                bg = x4[:, 0:3].max(dim=1, keepdim=True)[0]
                v[n['output']] = torch.cat([bg, x4[:, 3:4]], 1)
        flat = lambda names, c: torch.cat([v[m].permute(0, 2, 3, 1).reshape(x.shape[0], -1, c) for m in names], 1)
        return flat(self.g['loc'], 4), flat(self.g['conf'], 2)


def multibox_loss(loc, conf, loc_t, conf_t, neg_pos=3):
    """SSD's loss with hard negative mining, on tensors (B x P x 4, B x P x 2, B x P x 4, B x P)."""
    B, P = conf_t.shape
    pos = conf_t > 0
    num_pos = pos.sum(1, keepdim=True)
    with torch.no_grad():
        bg = torch.logsumexp(conf, 2) - conf[:, :, 0]
        bg[pos] = 0
        _, idx = bg.sort(1, descending=True)
        _, rank = idx.sort(1)
        neg = rank < torch.clamp(neg_pos * num_pos, max=P - 1)
    n = num_pos.sum().clamp(min=1).float()
    loss_l = F.smooth_l1_loss(loc[pos], loc_t[pos], reduction='sum') / n
    sel = pos | neg
    loss_c = F.cross_entropy(conf[sel], conf_t[sel].long(), reduction='sum') / n
    return loss_l, loss_c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dir')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = json.load(open(os.path.join(a.dir, 'graph.json')))
    B, S, P = g['batch'], g['size'], g['priors']
    model = Graph(g)
    model.load_flat(np.fromfile(os.path.join(a.dir, 'weights.f32'), dtype='<f4'))
    model.train()
    x = torch.from_numpy(np.fromfile(os.path.join(a.dir, 'input.f32'), dtype='<f4').reshape(B, 3, S, S))
    conf_t = torch.from_numpy(np.fromfile(os.path.join(a.dir, 'conf_t.u8'), dtype=np.uint8).reshape(B, P))
    loc_t = torch.from_numpy(np.fromfile(os.path.join(a.dir, 'loc_t.f32'), dtype='<f4').reshape(B, P, 4))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    times, cpu = [], []
    for i in range(a.steps + 1):
        t0 = time.perf_counter()
        c0 = time.process_time()
        loc, conf = model(x)
        loss_l, loss_c = multibox_loss(loc, conf, loc_t, conf_t)
        opt.zero_grad(set_to_none=True)
        (loss_l + loss_c).backward()
        opt.step()
        del loc, conf, loss_l, loss_c
        if i > 0:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({'times': times, 'cpu': cpu, 'peak_rss_mb': peak, 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
