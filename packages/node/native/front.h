// EXTD's first stage (1/2 resolution) as fused float32 kernels: the stem
// conv and the stride-1 inverted-residual blocks that follow it, computed
// row by row so that the expanded (hidden) maps never leave the cache.
//
// Layout: every map is NCHW float32 with N = 1 (C x H x W, rows contiguous).
// BatchNorm is folded into the weights by the caller. Activations are
// "leaky" with one slope (PReLU with one parameter, LeakyReLU, ReLU = 0).
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace extd {

typedef float vf __attribute__((vector_size(64)));
constexpr int VL = 16;

static inline vf loadu(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline vf loadn(const float* p, int n) {
  vf v = {};
  std::memcpy(&v, p, sizeof(float) * n);
  return v;
}
static inline void storeu(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static inline void storen(float* p, vf v, int n) { std::memcpy(p, &v, sizeof(float) * n); }
static inline vf splat(float s) { return vf{} + s; }
static inline vf leaky(vf v, float a) {
  vf av = v * a;
  return v >= 0 ? v : av;
}

/** A conv unit with BN folded in: weights [out][in/groups][k][k], bias [out], optional leaky activation. */
struct Conv {
  int cin = 0, cout = 0, k = 1, stride = 1, groups = 1;
  std::vector<float> w, b;
  bool act = false;
  float slope = 0;
};

/**
 * Inverted residual block at stride 1: optional 1x1 expand (absent in the
 * block after the stem, whose hidden map is the stem's output), 3x3
 * depthwise, 1x1 project, optional residual add of the block's input.
 */
struct Block {
  bool hasExpand = false;
  Conv expand, dw, project;
  bool residual = false;
};

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    int gen = gen_;
    if (++count_ == n_) {
      count_ = 0, gen_++;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0, gen_ = 0;
};

/**
 * The stage: stem (3x3 stride 2, 3 -> C0, act) followed by blocks[0] (no
 * expand; its hidden map is the stem output) and blocks[1..] (with expand).
 * run(): input 3 x H x W (mean-subtracted RGB), output Cout x ceil(H/2) x ceil(W/2).
 */
class Front {
 public:
  Front(Conv stem, std::vector<Block> blocks) : stem_(std::move(stem)), blocks_(std::move(blocks)) {
    if (stem_.cin != 3 || stem_.k != 3 || stem_.stride != 2 || stem_.groups != 1) throw std::invalid_argument("stem must be a 3x3 stride-2 conv on 3 channels");
    if (stem_.cout % 8) throw std::invalid_argument("stem channels must be a multiple of 8");
    if (blocks_.empty() || blocks_[0].hasExpand) throw std::invalid_argument("the first block must have no expand conv");
    int c = stem_.cout;
    for (size_t i = 0; i < blocks_.size(); i++) {
      Block& b = blocks_[i];
      int hidden = b.hasExpand ? b.expand.cout : c;
      if (b.hasExpand && (b.expand.cin != c || b.expand.k != 1 || b.expand.groups != 1)) throw std::invalid_argument("block " + std::to_string(i) + ": bad expand conv");
      if (i > 0 && !b.hasExpand) throw std::invalid_argument("block " + std::to_string(i) + ": only the first block may omit the expand conv");
      if (b.dw.cin != hidden || b.dw.cout != hidden || b.dw.groups != hidden || b.dw.k != 3 || b.dw.stride != 1) throw std::invalid_argument("block " + std::to_string(i) + ": bad depthwise conv");
      if (b.project.cin != hidden || b.project.k != 1 || b.project.groups != 1 || b.project.cout % 8) throw std::invalid_argument("block " + std::to_string(i) + ": bad project conv");
      if (hidden % 8) throw std::invalid_argument("block " + std::to_string(i) + ": hidden channels must be a multiple of 8");
      if (b.residual && b.project.cout != c) throw std::invalid_argument("block " + std::to_string(i) + ": residual needs equal channels");
      // Transposed weights: expand [cin][hidden], project [hidden][cout] (8 consecutive outputs per input channel).
      if (b.hasExpand) b.expand.w = transpose(b.expand.w, b.expand.cout, b.expand.cin);
      b.project.w = transpose(b.project.w, b.project.cout, b.project.cin);
      maxHidden_ = std::max(maxHidden_, hidden);
      maxC_ = std::max(maxC_, b.project.cout);
      c = b.project.cout;
    }
    // Stem weights [out][3][3][3] -> [27][out].
    stem_.w = transpose(stem_.w, stem_.cout, 27);
  }

  int outChannels() const { return blocks_.back().project.cout; }

  /** Output size for an H x W input. */
  static int half(int n) { return (n + 1) / 2; }

  /** Runs on `threads` threads (rows split between them). Not reentrant: callers serialise runs of one Front. */
  void run(const float* input, int H, int W, float* output, int threads) {
    if (H < 1 || W < 1) throw std::invalid_argument("empty input");
    const int h = half(H), w = half(W);
    threads = std::max(1, std::min(threads, h));
    const size_t cs = oddLines(size_t(h) * w);
    const size_t mapSize = size_t(maxC_) * cs + 2 * VL;
    if (mapA_.size() < mapSize) mapA_.assign(mapSize, 0), mapB_.assign(mapSize, 0);
    if ((int)scratch_.size() < threads) scratch_.resize(threads);
    Barrier barrier(threads);
    auto work = [&](int t) {
      const int y0 = h * t / threads, y1 = h * (t + 1) / threads;
      Scratch& s = scratch_[t];
      const float* in = nullptr;
      for (size_t i = 0; i < blocks_.size(); i++) {
        const bool last = i + 1 == blocks_.size();
        float* out = last ? output : (i % 2 == 0 ? mapA_.data() : mapB_.data());
        runBlock(blocks_[i], i == 0 ? nullptr : in, cs, input, H, W, h, w, y0, y1, out, last ? size_t(h) * w : cs, s);
        barrier.wait();
        in = out;
      }
    };
    if (threads == 1) {
      work(0);
    } else {
      std::vector<std::thread> pool;
      for (int t = 1; t < threads; t++) pool.emplace_back(work, t);
      work(0);
      for (auto& th : pool) th.join();
    }
  }

 private:
  struct Scratch {
    std::vector<float> ring;  // 3 hidden rows, each [hidden][RS]
    std::vector<float> dwbuf;  // [hidden][32]
    std::vector<float> stemIn;  // deinterleaved image rows: [3 ch][3 rows][2 (even, odd)][RS]
    std::vector<float> staging;  // one output row [cout][oddLines(w)] of the final block
    int rs = 0;
    int rowOf[3] = {-2, -2, -2};
  };

  static std::vector<float> transpose(const std::vector<float>& w, int rows, int cols) {
    std::vector<float> t(w.size());
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) t[size_t(c) * rows + r] = w[size_t(r) * cols + c];
    return t;
  }

  // Row stride of ring rows: 16 zero floats left, W rounded up to 16 (plus one zero vector) right.
  // An odd number of 64-byte lines, so that the rows of successive channels fall in different L1 sets
  // (with a power-of-two multiple, e.g. 240 x 320 floats per channel, every channel maps to one set).
  static size_t oddLines(size_t floats) {
    size_t n = (floats + VL - 1) / VL * VL;
    return (n / VL) % 2 == 0 ? n + VL : n;
  }
  static int rowStride(int w) { return int(oddLines(size_t(VL) + size_t(w) + VL)); }

  // Rows y0..y1 of one block. in: the previous block's output (channel stride ics); out: channel stride ocs
  // (the final, dense output: its rows go through a staging row, as a dense stride can alias in L1).
  void runBlock(const Block& b, const float* in, size_t ics, const float* image, int H, int W, int h, int w, int y0, int y1, float* out, size_t ocs, Scratch& s) {
    const int hidden = b.hasExpand ? b.expand.cout : stem_.cout;
    const int rs = rowStride(w);
    if (s.rs != rs || s.ring.size() < size_t(3) * maxHidden_ * rs) {
      s.rs = rs;
      s.ring.assign(size_t(3) * maxHidden_ * rs, 0);
      s.stemIn.assign(size_t(18) * rs, 0);
    }
    if (s.dwbuf.size() < size_t(maxHidden_) * 2 * VL) s.dwbuf.assign(size_t(maxHidden_) * 2 * VL, 0);
    const bool staged = ocs != oddLines(size_t(h) * w);
    const size_t sts = oddLines(size_t(w));
    if (staged && s.staging.size() < size_t(maxC_) * sts) s.staging.assign(size_t(maxC_) * sts, 0);
    for (int i = 0; i < 3; i++) s.rowOf[i] = -2;
    for (int y = y0; y < y1; y++) {
      for (int r = y - 1; r <= y + 1; r++) {
        int slot = (r + 3) % 3;
        if (s.rowOf[slot] == r) continue;
        float* dst = s.ring.data() + size_t(slot) * maxHidden_ * rs;
        if (r < 0 || r >= h) {
          std::fill(dst, dst + size_t(hidden) * rs, 0.f);
        } else if (b.hasExpand) {
          expandRow(b.expand, in + size_t(r) * w, ics, w, dst, rs);
        } else {
          stemRow(image, H, W, r, w, dst, rs, s);
        }
        s.rowOf[slot] = r;
      }
      const float* rows[3];
      for (int d = 0; d < 3; d++) rows[d] = s.ring.data() + size_t((y - 1 + d + 3) % 3) * maxHidden_ * rs;
      // The residual is the block's input: the previous block's output, or (first block) the stem's row y in the ring.
      const float* res = !b.residual ? nullptr : b.hasExpand ? in + size_t(y) * w : rows[1] + VL;
      const size_t resStride = b.hasExpand ? ics : size_t(rs);
      float* o = staged ? s.staging.data() : out + size_t(y) * w;
      const size_t os = staged ? sts : ocs;
      int x = 0;
      for (; x + 2 * VL <= w; x += 2 * VL) dwProject<2>(b, hidden, rows, rs, x, 2 * VL, res, resStride, os, o, s.dwbuf.data());
      for (; x < w; x += VL) dwProject<1>(b, hidden, rows, rs, x, std::min(VL, w - x), res, resStride, os, o, s.dwbuf.data());
      if (staged)
        for (int c = 0; c < b.project.cout; c++) std::memcpy(out + c * ocs + size_t(y) * w, o + c * sts, sizeof(float) * w);
    }
  }

  // One row of the 1x1 expand: in[c][x] (channel stride cs) -> dst[hid][VL + x], act, zero tail columns.
  static void expandRow(const Conv& e, const float* in, size_t cs, int w, float* dst, int rs) {
    const int cin = e.cin, hid = e.cout;
    const float* wt = e.w.data();
    for (int x = 0; x < w; x += 2 * VL) {
      const int n0 = std::min(VL, w - x), n1 = std::max(0, std::min(VL, w - x - VL));
      for (int o = 0; o < hid; o += 8) {
        vf acc[8][2];
        for (int j = 0; j < 8; j++) acc[j][0] = acc[j][1] = splat(e.b[o + j]);
        if (n1 == VL) {
          for (int c = 0; c < cin; c++) {
            const float* p = in + c * cs + x;
            vf x0 = loadu(p), x1 = loadu(p + VL);
            const float* wc = wt + size_t(c) * hid + o;
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) acc[j][0] += wc[j] * x0, acc[j][1] += wc[j] * x1;
          }
        } else {
          for (int c = 0; c < cin; c++) {
            const float* p = in + c * cs + x;
            vf x0 = loadn(p, n0), x1 = n1 ? loadn(p + VL, n1) : vf{};
            const float* wc = wt + size_t(c) * hid + o;
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) acc[j][0] += wc[j] * x0, acc[j][1] += wc[j] * x1;
          }
        }
        for (int j = 0; j < 8; j++) {
          float* d = dst + size_t(o + j) * rs + VL + x;
          vf a0 = acc[j][0], a1 = acc[j][1];
          if (e.act) a0 = leaky(a0, e.slope), a1 = leaky(a1, e.slope);
          storeu(d, a0);
          storeu(d + VL, a1);
        }
      }
    }
    // The depthwise conv reads column w (zero padding): clear everything right of the data.
    for (int o = 0; o < hid; o++) std::fill(dst + size_t(o) * rs + VL + w, dst + size_t(o + 1) * rs, 0.f);
  }

  // One output row r of the stem (3x3, stride 2, pad 1) into dst[c][VL + x].
  void stemRow(const float* image, int H, int W, int r, int w, float* dst, int rs, Scratch& s) const {
    // Deinterleave the three input rows 2r-1..2r+1 of each channel: even[x] = in[2x], odd[x] = in[2x+1].
    for (int c = 0; c < 3; c++)
      for (int d = 0; d < 3; d++) {
        float* even = s.stemIn.data() + size_t((c * 3 + d) * 2) * rs;
        float* odd = even + rs;
        const int iy = 2 * r - 1 + d;
        if (iy < 0 || iy >= H) {
          std::fill(even, even + rs, 0.f), std::fill(odd, odd + rs, 0.f);
          continue;
        }
        const float* row = image + (size_t(c) * H + iy) * W;
        for (int x = 0; x < w; x++) {
          even[VL + x] = row[2 * x];
          odd[VL + x] = 2 * x + 1 < W ? row[2 * x + 1] : 0.f;
        }
        // odd[-1] (column -1 of the input) is zero padding; so is everything right of the data.
        odd[VL - 1] = 0.f;
        std::fill(even + VL + w, even + rs, 0.f), std::fill(odd + VL + w, odd + rs, 0.f);
      }
    const int co = stem_.cout;
    const float* wt = stem_.w.data();
    for (int x = 0; x < w; x += VL) {
      const int n = std::min(VL, w - x);
      vf taps[27];
      for (int c = 0; c < 3; c++)
        for (int d = 0; d < 3; d++) {
          const float* even = s.stemIn.data() + size_t((c * 3 + d) * 2) * rs + VL + x;
          const float* odd = even + rs;
          taps[(c * 3 + d) * 3 + 0] = loadu(odd - 1);
          taps[(c * 3 + d) * 3 + 1] = loadu(even);
          taps[(c * 3 + d) * 3 + 2] = loadu(odd);
        }
      for (int o = 0; o < co; o += 8) {
        vf acc[8];
        for (int j = 0; j < 8; j++) acc[j] = splat(stem_.b[o + j]);
        for (int t = 0; t < 27; t++) {
          const float* wc = wt + size_t(t) * co + o;
#pragma GCC unroll 8
          for (int j = 0; j < 8; j++) acc[j] += wc[j] * taps[t];
        }
        for (int j = 0; j < 8; j++) {
          vf a = stem_.act ? leaky(acc[j], stem_.slope) : acc[j];
          if (n == VL) storeu(dst + size_t(o + j) * rs + VL + x, a);
          else storen(dst + size_t(o + j) * rs + VL + x, a, n);
        }
      }
    }
    for (int o = 0; o < co; o++) std::fill(dst + size_t(o) * rs + VL + w, dst + size_t(o + 1) * rs, 0.f), dst[size_t(o) * rs + VL - 1] = 0.f;
  }

  // Depthwise 3x3 + act over NV vectors of row y (hidden rows in `rows`), then the 1x1 project (+ act, + residual) into out.
  template <int NV>
  static void dwProject(const Block& b, int hidden, const float* const rows[3], int rs, int x, int n, const float* res, size_t rcs, size_t cs, float* out, float* dbuf) {
    const Conv& dw = b.dw;
    // Four channels at a time: 4 x NV independent accumulation chains (one chain of 9 taps is latency-bound).
    for (int c = 0; c < hidden; c += 4) {
      vf acc[4][NV];
      for (int i = 0; i < 4; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = splat(dw.b[c + i]);
      for (int d = 0; d < 3; d++) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
          const float* p = rows[d] + size_t(c + i) * rs + VL + x;
          const float* k = dw.w.data() + size_t(c + i) * 9 + d * 3;
          for (int v = 0; v < NV; v++) {
            acc[i][v] += k[0] * loadu(p + v * VL - 1);
            acc[i][v] += k[1] * loadu(p + v * VL);
            acc[i][v] += k[2] * loadu(p + v * VL + 1);
          }
        }
      }
      for (int i = 0; i < 4; i++)
        for (int v = 0; v < NV; v++) storeu(dbuf + size_t(c + i) * NV * VL + v * VL, dw.act ? leaky(acc[i][v], dw.slope) : acc[i][v]);
    }
    const Conv& pr = b.project;
    const int co = pr.cout;
    const float* wt = pr.w.data();
    for (int o = 0; o < co; o += 8) {
      vf acc[8][NV];
      for (int j = 0; j < 8; j++)
        for (int v = 0; v < NV; v++) acc[j][v] = splat(pr.b[o + j]);
      for (int c = 0; c < hidden; c++) {
        vf d[NV];
        for (int v = 0; v < NV; v++) d[v] = loadu(dbuf + size_t(c) * NV * VL + v * VL);
        const float* wc = wt + size_t(c) * co + o;
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
          for (int v = 0; v < NV; v++) acc[j][v] += wc[j] * d[v];
      }
      for (int j = 0; j < 8; j++) {
        float* dst = out + (o + j) * cs + x;
        for (int v = 0; v < NV; v++) {
          vf a = pr.act ? leaky(acc[j][v], pr.slope) : acc[j][v];
          const int m = std::min(VL, n - v * VL);
          if (res) a += m == VL ? loadu(res + (o + j) * rcs + x + v * VL) : loadn(res + (o + j) * rcs + x + v * VL, m);
          if (m == VL) storeu(dst + v * VL, a);
          else storen(dst + v * VL, a, m);
        }
      }
    }
  }

  Conv stem_;
  std::vector<Block> blocks_;
  int maxHidden_ = 0, maxC_ = 0;
  std::vector<float> mapA_, mapB_;
  std::vector<Scratch> scratch_;
};

}  // namespace extd
