// EXTD's backbone (the stem and the inverted-residual blocks of E and of F's
// six applications) as fused float32 kernels. Each block runs row by row:
// the 1x1 expand fills a ring of three hidden rows, and the 3x3 depthwise
// conv and the 1x1 projection run on a chunk of pixels held in L1, so the
// expanded maps (up to 4x the block's width) are never written to memory.
//
// Layouts: the input image is NCHW (N = 1); every map between blocks is
// NHWC (pixels of one row contiguous, channels innermost), which makes the
// depthwise conv a per-lane multiply-add with no shuffles; the outputs the
// caller asks for are written NCHW (dense), as onnxruntime takes them.
// BatchNorm is folded into the weights by the caller. Activations are
// "leaky" with one slope (PReLU with one parameter, LeakyReLU; ReLU = 0).
// Channel counts must be multiples of 16 (one vector).
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace extd {

typedef float vf __attribute__((vector_size(64)));
constexpr int VL = 16;

static inline vf loadv(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline void storev(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
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
 * Inverted residual block: optional 1x1 expand (absent in the block after
 * the stem, whose hidden map is the stem's output), 3x3 depthwise (stride 1
 * or 2), 1x1 project, optional residual add of the block's input (stride 1).
 */
struct Block {
  bool hasExpand = false;
  Conv expand, dw, project;
  bool residual = false;
};

/** A float buffer aligned to 64 bytes, grown on demand and kept between runs. */
class Buffer {
 public:
  float* get(size_t n) {
    if (n > size_) {
      std::free(p_);
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p_) throw std::bad_alloc();
      size_ = n;
    }
    return p_;
  }
  ~Buffer() { std::free(p_); }
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

 private:
  float* p_ = nullptr;
  size_t size_ = 0;
};

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    if (n_ == 1) return;
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
 * The stem (3x3 stride 2, 3 -> C0 channels, act) and blocks[0..] in order;
 * blocks[0] has no expand conv (its hidden map is the stem's output).
 * run(): input 3 x H x W (mean-subtracted RGB), NCHW; writes the outputs of
 * the blocks listed in `taps`, each NCHW C x h x w.
 */
class Backbone {
 public:
  Backbone(Conv stem, std::vector<Block> blocks, std::vector<int> taps) : stem_(std::move(stem)), blocks_(std::move(blocks)), taps_(std::move(taps)) {
    if (stem_.cin != 3 || stem_.k != 3 || stem_.stride != 2 || stem_.groups != 1) throw std::invalid_argument("stem must be a 3x3 stride-2 conv on 3 channels");
    if (stem_.cout % VL) throw std::invalid_argument("stem channels must be a multiple of 16");
    if (blocks_.empty() || blocks_[0].hasExpand) throw std::invalid_argument("the first block must have no expand conv");
    int c = stem_.cout;
    for (size_t i = 0; i < blocks_.size(); i++) {
      Block& b = blocks_[i];
      const std::string at = "block " + std::to_string(i);
      const int hidden = b.hasExpand ? b.expand.cout : c;
      if (i > 0 && !b.hasExpand) throw std::invalid_argument(at + ": only the first block may omit the expand conv");
      if (b.hasExpand && (b.expand.cin != c || b.expand.k != 1 || b.expand.groups != 1 || b.expand.stride != 1)) throw std::invalid_argument(at + ": bad expand conv");
      if (b.dw.cin != hidden || b.dw.cout != hidden || b.dw.groups != hidden || b.dw.k != 3 || (b.dw.stride != 1 && b.dw.stride != 2))
        throw std::invalid_argument(at + ": bad depthwise conv");
      if (b.project.cin != hidden || b.project.k != 1 || b.project.groups != 1 || b.project.stride != 1) throw std::invalid_argument(at + ": bad project conv");
      if (hidden % VL || b.project.cout % VL) throw std::invalid_argument(at + ": channels must be multiples of 16");
      if (b.residual && (b.project.cout != c || b.dw.stride != 1)) throw std::invalid_argument(at + ": a residual needs equal channels and stride 1");
      // Vector-friendly weights: expand [cin][hidden], depthwise [9][hidden], project [hidden][cout].
      if (b.hasExpand) b.expand.w = transpose(b.expand.w, b.expand.cout, b.expand.cin);
      b.dw.w = transpose(b.dw.w, hidden, 9);
      b.project.w = transpose(b.project.w, b.project.cout, b.project.cin);
      maxHidden_ = std::max(maxHidden_, hidden);
      c = b.project.cout;
    }
    stem_.w = transpose(stem_.w, stem_.cout, 27);  // [27 taps][cout]
    maxHidden_ = std::max(maxHidden_, stem_.cout);
    for (int t : taps_)
      if (t < 0 || t >= int(blocks_.size())) throw std::invalid_argument("tap " + std::to_string(t) + " is not a block");
  }

  int blocks() const { return int(blocks_.size()); }
  int outChannels(int block) const { return blocks_[block].project.cout; }
  const std::vector<int>& taps() const { return taps_; }

  /** Output size of block `block` for an H x W input: every stride halves, rounding up. */
  void outSize(int block, int H, int W, int& h, int& w) const {
    h = half(H), w = half(W);
    for (int i = 0; i <= block; i++)
      if (blocks_[i].dw.stride == 2) h = half(h), w = half(w);
  }
  static int half(int n) { return (n + 1) / 2; }

  /** Runs on `threads` threads (rows of each block split between them). Not reentrant: callers serialise runs. */
  void run(const float* image, int H, int W, const std::vector<float*>& outputs, int threads) {
    if (H < 1 || W < 1) throw std::invalid_argument("empty input");
    if (outputs.size() != taps_.size()) throw std::invalid_argument("one output per tap");
    // Map sizes: the largest block output (NHWC), twice (input and output of a block).
    size_t mapSize = 0;
    for (int i = 0; i < blocks(); i++) {
      int h, w;
      outSize(i, H, W, h, w);
      mapSize = std::max(mapSize, size_t(h) * w * outChannels(i));
    }
    float* maps[2] = {mapA_.get(mapSize + VL), mapB_.get(mapSize + VL)};
    threads = std::max(1, std::min(threads, half(H)));
    while (int(scratch_.size()) < threads) scratch_.push_back(std::make_unique<Scratch>());
    Barrier barrier(threads);
    auto work = [&](int t) {
      Scratch& s = *scratch_[t];
      int h = half(H), w = half(W);  // size of the current block's input (the stem's output for block 0)
      const float* in = nullptr;
      for (int i = 0; i < blocks(); i++) {
        const Block& b = blocks_[i];
        const int oh = b.dw.stride == 2 ? half(h) : h, ow = b.dw.stride == 2 ? half(w) : w;
        float* out = maps[i % 2];
        const int y0 = oh * t / threads, y1 = oh * (t + 1) / threads;
        runBlock(b, in, image, H, W, h, w, oh, ow, y0, y1, out, s);
        for (size_t k = 0; k < taps_.size(); k++)
          if (taps_[k] == i) toNchw(out, oh, ow, b.project.cout, y0, y1, outputs[k]);
        barrier.wait();
        in = out, h = oh, w = ow;
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
    Buffer ring;  // 3 hidden rows, each (w + 2) pixels x hidden (a zero pixel each side)
    Buffer dbuf;  // depthwise output of one chunk of pixels: [CHUNK][hidden]
    Buffer stemIn;  // the image rows the stem reads: [3 ch][3 rows][W + 2]
    Buffer stemTaps;  // the stem's 27 inputs per output pixel: [w][28]
  };
  static constexpr int CHUNK = 24;

  static std::vector<float> transpose(const std::vector<float>& w, int rows, int cols) {
    std::vector<float> t(w.size());
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) t[size_t(c) * rows + r] = w[size_t(r) * cols + c];
    return t;
  }

  // Output rows y0..y1 of one block; its input map `in` is ih x iw NHWC (block 0: the stem computed from the image).
  void runBlock(const Block& b, const float* in, const float* image, int H, int W, int ih, int iw, int oh, int ow, int y0, int y1, float* out, Scratch& s) const {
    const int hidden = b.hasExpand ? b.expand.cout : stem_.cout;
    const int cin = b.hasExpand ? b.expand.cin : stem_.cout;
    const size_t rowFloats = size_t(iw + 2) * hidden;
    float* ring = s.ring.get(3 * size_t(iw + 2) * maxHidden_);
    float* dbuf = s.dbuf.get(size_t(CHUNK) * maxHidden_);
    int rowOf[3] = {-9, -9, -9};
    const int st = b.dw.stride;
    for (int y = y0; y < y1; y++) {
      const float* rows[3];
      for (int d = 0; d < 3; d++) {
        const int r = st * y - 1 + d;
        const int slot = (r + 3) % 3;
        float* dst = ring + slot * rowFloats;
        if (rowOf[slot] != r) {
          if (r < 0 || r >= ih) {
            std::memset(dst, 0, sizeof(float) * rowFloats);
          } else {
            std::memset(dst, 0, sizeof(float) * hidden);  // the zero pixel left
            std::memset(dst + size_t(iw + 1) * hidden, 0, sizeof(float) * hidden);  // and right
            if (b.hasExpand) expandRow(b.expand, in + size_t(r) * iw * cin, iw, dst + hidden);
            else stemRow(image, H, W, r, iw, dst + hidden, s);
          }
          rowOf[slot] = r;
        }
        rows[d] = dst;
      }
      const float* res = b.residual ? (b.hasExpand ? in + size_t(y) * iw * cin : rows[1] + hidden) : nullptr;
      float* o = out + size_t(y) * ow * b.project.cout;
      for (int x = 0; x < ow; x += CHUNK) {
        const int n = std::min(CHUNK, ow - x);
        depthwise(b.dw, rows, hidden, st, x, n, dbuf);
        project(b.project, dbuf, hidden, n, res ? res + size_t(x) * b.project.cout : nullptr, o + size_t(x) * b.project.cout);
      }
    }
  }

  // acc[p][v] over `n` input channels: in[p * ip + c] broadcast x w[c * ws + v * VL].
  template <int P, int V>
  static inline void gemmTile(const float* in, size_t ip, const float* w, size_t ws, int n, const float* bias, bool act, float slope, float* out, size_t op,
                              const float* res, size_t rp) {
    vf acc[P][V];
    for (int v = 0; v < V; v++) {
      vf b = loadv(bias + v * VL);
      for (int p = 0; p < P; p++) acc[p][v] = b;
    }
    for (int c = 0; c < n; c++) {
      vf wv[V];
      for (int v = 0; v < V; v++) wv[v] = loadv(w + size_t(c) * ws + v * VL);
#pragma GCC unroll 12
      for (int p = 0; p < P; p++) {
        const float x = in[p * ip + c];
        for (int v = 0; v < V; v++) acc[p][v] += x * wv[v];
      }
    }
    for (int p = 0; p < P; p++)
      for (int v = 0; v < V; v++) {
        vf a = act ? leaky(acc[p][v], slope) : acc[p][v];
        if (res) a += loadv(res + p * rp + v * VL);
        storev(out + p * op + v * VL, a);
      }
  }

  // out[p][o] = act(sum_c in[p][c] w[c][o] + b[o]) (+ res[p][o]) for `np` pixels (NHWC rows), all `cout` outputs.
  template <int V, int P>
  static void gemmRowV(const float* in, int cin, int np, const float* w, int cout, const float* bias, bool act, float slope, float* out, const float* res, int o) {
    int p = 0;
    for (; p + P <= np; p += P)
      gemmTile<P, V>(in + size_t(p) * cin, cin, w + o, cout, cin, bias + o, act, slope, out + size_t(p) * cout + o, cout, res ? res + size_t(p) * cout + o : nullptr, cout);
    for (; p < np; p++)
      gemmTile<1, V>(in + size_t(p) * cin, cin, w + o, cout, cin, bias + o, act, slope, out + size_t(p) * cout + o, cout, res ? res + size_t(p) * cout + o : nullptr, cout);
  }
  static void gemmRow(const float* in, int cin, int np, const float* w, int cout, const float* bias, bool act, float slope, float* out, const float* res) {
    int o = 0;
    // Output channel groups of 4, 3, 2, 1 vectors with 6, 8, 12, 12 pixels: 24 (or 12) accumulators.
    for (; cout - o >= 4 * VL; o += 4 * VL) gemmRowV<4, 6>(in, cin, np, w, cout, bias, act, slope, out, res, o);
    if (cout - o == 3 * VL) gemmRowV<3, 8>(in, cin, np, w, cout, bias, act, slope, out, res, o), o += 3 * VL;
    if (cout - o >= 2 * VL) gemmRowV<2, 12>(in, cin, np, w, cout, bias, act, slope, out, res, o), o += 2 * VL;
    if (cout - o >= VL) gemmRowV<1, 12>(in, cin, np, w, cout, bias, act, slope, out, res, o), o += VL;
  }

  static void expandRow(const Conv& e, const float* in, int w, float* dst) { gemmRow(in, e.cin, w, e.w.data(), e.cout, e.b.data(), e.act, e.slope, dst, nullptr); }

  static void project(const Conv& p, const float* dbuf, int hidden, int n, const float* res, float* out) {
    gemmRow(dbuf, hidden, n, p.w.data(), p.cout, p.b.data(), p.act, p.slope, out, res);
  }

  // Depthwise 3x3 (stride st) of output pixels x..x+n-1 from three padded hidden rows into dbuf [n][hidden].
  static void depthwise(const Conv& dw, const float* const rows[3], int hidden, int st, int x, int n, float* dbuf) {
    const float* k = dw.w.data();
    for (int v = 0; v < hidden; v += VL) {
      vf kk[9];
      for (int t = 0; t < 9; t++) kk[t] = loadv(k + size_t(t) * hidden + v);
      const vf bias = loadv(dw.b.data() + v);
      for (int p = 0; p < n; p++) {
        // Output pixel x+p reads input columns st*(x+p)-1 .. +1, i.e. padded columns st*(x+p) .. +2.
        const size_t c0 = size_t(st) * (x + p);
        vf a0 = bias, a1 = vf{}, a2 = vf{};
        for (int d = 0; d < 3; d++) {
          const float* r = rows[d] + c0 * hidden + v;
          a0 += kk[d * 3] * loadv(r);
          a1 += kk[d * 3 + 1] * loadv(r + hidden);
          a2 += kk[d * 3 + 2] * loadv(r + 2 * hidden);
        }
        vf a = a0 + a1 + a2;
        storev(dbuf + size_t(p) * hidden + v, dw.act ? leaky(a, dw.slope) : a);
      }
    }
  }

  // Stem output row r (3x3, stride 2, pad 1), NHWC [w][cout], from the NCHW image.
  void stemRow(const float* image, int H, int W, int r, int w, float* dst, Scratch& s) const {
    const size_t pw = size_t(W) + 2 + 2 * VL;
    float* rowsIn = s.stemIn.get(9 * pw);
    for (int c = 0; c < 3; c++)
      for (int d = 0; d < 3; d++) {
        float* p = rowsIn + size_t(c * 3 + d) * pw;
        const int iy = 2 * r - 1 + d;
        std::memset(p, 0, sizeof(float) * pw);
        if (iy >= 0 && iy < H) std::memcpy(p + 1, image + (size_t(c) * H + iy) * W, sizeof(float) * W);
      }
    // 27 taps as the "input channels" of a tiny GEMM per pixel: gather them into a [w][27 (+pad)] row.
    const int K = 28;
    float* taps = s.stemTaps.get(size_t(w) * K);
    for (int x = 0; x < w; x++) {
      float* t = taps + size_t(x) * K;
      for (int c = 0; c < 3; c++)
        for (int d = 0; d < 3; d++) {
          const float* p = rowsIn + size_t(c * 3 + d) * pw + 2 * x;  // padded column 2x = input column 2x-1
          t[(c * 3 + d) * 3] = p[0], t[(c * 3 + d) * 3 + 1] = p[1], t[(c * 3 + d) * 3 + 2] = p[2];
        }
      t[27] = 0;
    }
    gemmRowK(taps, K, 27, w, stem_.w.data(), stem_.cout, stem_.b.data(), stem_.act, stem_.slope, dst);
  }

  // gemmRow with an input row stride (K) different from the number of input channels (n).
  static void gemmRowK(const float* in, int K, int n, int np, const float* w, int cout, const float* bias, bool act, float slope, float* out) {
    int o = 0;
    for (; cout - o >= 4 * VL; o += 4 * VL) {
      int p = 0;
      for (; p + 6 <= np; p += 6) gemmTile<6, 4>(in + size_t(p) * K, K, w + o, cout, n, bias + o, act, slope, out + size_t(p) * cout + o, cout, nullptr, 0);
      for (; p < np; p++) gemmTile<1, 4>(in + size_t(p) * K, K, w + o, cout, n, bias + o, act, slope, out + size_t(p) * cout + o, cout, nullptr, 0);
    }
    for (; o < cout; o += VL) {
      int p = 0;
      for (; p + 12 <= np; p += 12) gemmTile<12, 1>(in + size_t(p) * K, K, w + o, cout, n, bias + o, act, slope, out + size_t(p) * cout + o, cout, nullptr, 0);
      for (; p < np; p++) gemmTile<1, 1>(in + size_t(p) * K, K, w + o, cout, n, bias + o, act, slope, out + size_t(p) * cout + o, cout, nullptr, 0);
    }
  }

  // Rows y0..y1 of an NHWC map (h x w x c) into NCHW.
  static void toNchw(const float* map, int h, int w, int c, int y0, int y1, float* out) {
    for (int y = y0; y < y1; y++) {
      const float* row = map + size_t(y) * w * c;
      for (int ch = 0; ch < c; ch++) {
        float* o = out + (size_t(ch) * h + y) * w;
        for (int x = 0; x < w; x++) o[x] = row[size_t(x) * c + ch];
      }
    }
  }

  Conv stem_;
  std::vector<Block> blocks_;
  std::vector<int> taps_;
  int maxHidden_ = 0;
  Buffer mapA_, mapB_;
  std::vector<std::unique_ptr<Scratch>> scratch_;
};

}  // namespace extd
