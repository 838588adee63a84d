// EXTD in float32 (optionally with the blocks' 1x1 convs in int8, see
// useInt8), as extd's own kernels. The backbone (the stem and the
// inverted-residual blocks of E and of F's six applications) runs block by
// block and, within a block, row by row: the 1x1 expand fills a ring of three
// hidden rows, and the 3x3 depthwise conv and the 1x1 projection run on a
// chunk of pixels held in L1, so the expanded maps (up to 4x the block's
// width) are never written to memory. The FPN and the heads follow as a short
// list of ops (1x1, depthwise and dense 3x3 convs, adds, bilinear resizes,
// the max-out), and their maps are concatenated into loc and conf.
//
// Layouts: the input image is NCHW (N = 1); every map after it is NHWC
// (pixels of a row contiguous, channels innermost), which makes the
// depthwise conv a per-lane multiply-add with no shuffles and the heads'
// maps already in the priors' order. BatchNorm is folded into the weights by
// the caller. Activations are "leaky" with one slope (PReLU with one
// parameter, LeakyReLU; ReLU = 0). The backbone's channel counts must be
// multiples of VL (one vector: 16 floats with AVX-512, 4 in WebAssembly); the heads' outputs may be any count.
#pragma once
#include <algorithm>
#include <cmath>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace extd {

// One vector of the target's width: 16 floats with AVX-512 (32 registers), 8 with AVX (16 registers), 4
// otherwise (SSE2, NEON). A vector wider than the target's is split by the compiler into memory operations
// (an AVX2 build of 16-float vectors ran 40x slower). The addon is compiled on the machine that runs it.
#if defined(__AVX512F__)
constexpr int VL = 16;
constexpr bool kManyRegisters = true;
#elif defined(__AVX__)
constexpr int VL = 8;
constexpr bool kManyRegisters = false;
#else
constexpr int VL = 4;
constexpr bool kManyRegisters = false;
#endif
typedef float vf __attribute__((vector_size(VL * sizeof(float))));

// int8 1x1 convolutions (Network::useInt8): on CPUs with AVX512-VNNI (the
// build is -march=native), the blocks' expand and project convs multiply
// uint8 inputs by int8 weights and accumulate in int32 (vpdpbusd: four
// multiply-adds per lane per instruction where an FMA does one). Weights:
// symmetric, one scale per output channel. Inputs: asymmetric, one scale and
// zero point per row (expand) or chunk of pixels (project), from that row's
// or chunk's own range, so no calibration is needed. The stem is int8 too
// for raw RGB input with whole-number means (stemRowInt8: the pixels are exact
// in uint8). Everything else (the depthwise convs, the FPN and the heads)
// stays float32.
#if defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define EXTD_INT8 1
constexpr bool kInt8 = true;
#else
constexpr bool kInt8 = false;
#endif

static inline vf loadv(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline void storev(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static inline vf splat(float s) { return vf{} + s; }

/** Allocator aligning to 64 bytes (one vector): an unaligned weight vector costs two cache-line reads per load. */
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const Aligned64<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const Aligned64<U>&) const {
    return false;
  }
};
using fvec = std::vector<float, Aligned64<float>>;

/** A conv unit with BN folded in: weights [out][in/groups][k][k], bias [out], optional leaky activation. */
struct Conv {
  int cin = 0, cout = 0, k = 1, stride = 1, groups = 1;
  fvec w, b;
  // 1x1 convs in int8 (Network::useInt8): weights as [cin / 4][cout][4] int8, their scale per output
  // channel, and the sum of each output channel's int8 weights (for the inputs' zero point).
  std::vector<int8_t, Aligned64<int8_t>> wq;
  fvec wScale, wSum;
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

/**
 * One node of the graph after the backbone (the FPN and the heads), run on
 * NHWC maps. Values are numbered: 0..taps-1 are the backbone's tapped block
 * outputs, each node adds one. Convs are stride 1 with "same" padding.
 */
struct Op {
  enum Kind { ConvOp, AddOp, UpsampleOp, MaxoutOp } kind = ConvOp;
  int a = -1, b = -1;  // inputs (add: a + b; upsample: a resized to the size of b; conv and maxout: a)
  Conv conv;
};

/** A float buffer aligned to 64 bytes, grown on demand and kept between runs. */
class Buffer {
 public:
  float* get(size_t n) {
    if (n > size_) {
      std::free(p_);
      p_ = nullptr, size_ = 0;  // stays consistent if the allocation below throws
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p_) throw std::bad_alloc();
      size_ = n;
    }
    return p_;
  }
  /** Free the memory (the next get allocates again). */
  void release() {
    std::free(p_);
    p_ = nullptr, size_ = 0;
  }
  ~Buffer() { std::free(p_); }
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

 private:
  float* p_ = nullptr;
  size_t size_ = 0;
};

/**
 * Barrier for the run's threads: spins briefly, then sleeps. Waking a
 * sleeping thread costs an inter-processor interrupt, which on a virtual
 * machine takes tens of microseconds; a run passes about 60 barriers, most
 * of them a few microseconds apart.
 */
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    if (n_ == 1) return;
    const int gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      {
        std::lock_guard<std::mutex> lock(m_);
        gen_.store(gen + 1, std::memory_order_release);
      }
      cv_.notify_all();
      return;
    }
    for (int i = 0; i < 4000; i++) {
      if (gen_.load(std::memory_order_acquire) != gen) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return gen_.load(std::memory_order_acquire) != gen; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<int> gen_{0};
};

/**
 * Threads kept for the runs of one network (natively; a WebAssembly build
 * starts them per run from Emscripten's own pool of workers). A run with n
 * threads runs all n parts on these threads while the caller waits: Linux
 * often placed a thread started per run on the CPU of the thread that
 * started it, and both then shared that CPU for most of the run (in Node on
 * 2 CPUs, EXTD-32 took 25-60 ms per frame instead of 26-30). Threads that
 * persist keep their CPUs. Idle ones sleep on a condition variable.
 */
class Workers {
 public:
  Workers() = default;
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;
  ~Workers() { stop(); }
  /** Stops and joins the helpers (not while a run is in progress); a later reserve starts new ones. */
  void stop() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    std::lock_guard<std::mutex> lock(m_);
    stop_ = false, gen_ = 0;
  }
  /** Starts threads until n can run (none for n = 1: the caller runs it); returns how many can (fewer when the system refuses a thread). */
  int reserve(int n) {
    if (n <= 1) return 1;
    while (int(threads_.size()) < n) {
      try {
        threads_.emplace_back(&Workers::loop, this, int(threads_.size()));
      } catch (const std::system_error&) {
        break;
      }
    }
    return std::max(1, std::min(n, int(threads_.size())));
  }
  /** Runs f(t) for t in 0..n-1 (n at most reserve's answer) on the threads, or f(0) on the caller when n = 1; returns when all are done. */
  void run(int n, const std::function<void(int)>& f) {
    if (n <= 1 || threads_.empty()) return f(0);
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &f, active_ = n, pending_ = n, gen_++;
    }
    wake_.notify_all();
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(int t) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_;
        if (t >= active_) continue;  // this run uses fewer threads
        job = job_;
      }
      (*job)(t);
      std::lock_guard<std::mutex> lock(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* job_ = nullptr;
  int active_ = 0, pending_ = 0;
  uint64_t gen_ = 0;
  bool stop_ = false;
};

/**
 * The whole network: the stem (3x3 stride 2, 3 -> C0 channels, act), the
 * blocks in order (blocks[0] has no expand conv: its hidden map is the
 * stem's output), then `ops` (FPN and heads) on values numbered from the
 * tapped block outputs (0..taps-1) on.
 * run(): input 3 x H x W (mean-subtracted RGB), NCHW. Writes `loc` (P x 4)
 * and `conf` (P x C) by concatenating, level by level, the NHWC maps of the
 * values `locValues` / `confValues` (the priors' order: level, row, column),
 * and optionally the tapped block outputs NCHW (for tests).
 */
class Network {
 public:
  Network(Conv stem, std::vector<Block> blocks, std::vector<int> taps, std::vector<Op> ops, std::vector<int> locValues, std::vector<int> confValues)
      : stem_(std::move(stem)), blocks_(std::move(blocks)), taps_(std::move(taps)), ops_(std::move(ops)), loc_(std::move(locValues)), conf_(std::move(confValues)) {
    if (stem_.cin != 3 || stem_.k != 3 || stem_.stride != 2 || stem_.groups != 1) throw std::invalid_argument("stem must be a 3x3 stride-2 conv on 3 channels");
    if (stem_.cout % VL) throw std::invalid_argument("stem channels must be a multiple of " + std::to_string(VL) + " (one vector)");
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
      maxCout_ = std::max({maxCout_, hidden, b.project.cout});
      c = b.project.cout;
    }
    stem_.w = transpose(stem_.w, stem_.cout, 27);  // [27 taps][cout]
    maxHidden_ = std::max(maxHidden_, stem_.cout);
    tapOf_.assign(blocks_.size(), -1);
    for (size_t k = 0; k < taps_.size(); k++) {
      const int t = taps_[k];
      if (t < 0 || t >= int(blocks_.size())) throw std::invalid_argument("tap " + std::to_string(t) + " is not a block");
      tapOf_[t] = int(k);
    }
    // Channels of every value, checking each op's inputs.
    for (int t : taps_) channels_.push_back(blocks_[t].project.cout);
    for (size_t k = 0; k < ops_.size(); k++) {
      Op& op = ops_[k];
      const std::string at = "op " + std::to_string(k);
      const int n = int(channels_.size());
      if (op.a < 0 || op.a >= n || ((op.kind == Op::AddOp || op.kind == Op::UpsampleOp) && (op.b < 0 || op.b >= n))) throw std::invalid_argument(at + ": bad input");
      const int ca = channels_[op.a];
      int co = ca;
      if (op.kind == Op::AddOp && channels_[op.b] != ca) throw std::invalid_argument(at + ": add of unequal channels");
      if (op.kind == Op::MaxoutOp) {
        if (ca != 4) throw std::invalid_argument(at + ": max-out takes 4 channels");
        co = 2;
      }
      if (op.kind == Op::ConvOp) {
        Conv& cv = op.conv;
        if (cv.cin != ca || cv.stride != 1) throw std::invalid_argument(at + ": bad conv input");
        if (cv.k == 1 && cv.groups == 1) {
          if (ca % VL || cv.cout % VL) throw std::invalid_argument(at + ": 1x1 conv channels must be multiples of 16");
          cv.w = transpose(cv.w, cv.cout, cv.cin);
        } else if (cv.k == 3 && cv.groups == ca && cv.cout == ca) {
          if (ca % VL) throw std::invalid_argument(at + ": depthwise channels must be a multiple of " + std::to_string(VL) + " (one vector)");
          cv.w = transpose(cv.w, ca, 9);
        } else if (cv.k == 3 && cv.groups == 1) {
          if (ca % VL) throw std::invalid_argument(at + ": 3x3 conv input channels must be a multiple of " + std::to_string(VL) + " (one vector)");
          // [out][cin][3][3] -> [out][9][cin]
          fvec t(cv.w.size());
          for (int o = 0; o < cv.cout; o++)
            for (int i = 0; i < ca; i++)
              for (int tap = 0; tap < 9; tap++) t[(size_t(o) * 9 + tap) * ca + i] = cv.w[(size_t(o) * ca + i) * 9 + tap];
          cv.w = std::move(t);
        } else {
          throw std::invalid_argument(at + ": unsupported conv");
        }
        co = cv.cout;
      }
      channels_.push_back(co);
    }
    if (loc_.size() != conf_.size()) throw std::invalid_argument("one loc and one conf value per level");
    for (size_t l = 0; l < loc_.size(); l++) {
      if (loc_[l] < 0 || loc_[l] >= int(channels_.size()) || conf_[l] < 0 || conf_[l] >= int(channels_.size())) throw std::invalid_argument("bad head value");
      if (channels_[loc_[l]] != 4 || channels_[conf_[l]] != channels_[conf_[0]]) throw std::invalid_argument("head values: 4 loc channels, equal conf channels");
    }
    for (size_t v = 0; v < channels_.size(); v++) values_.push_back(std::make_unique<Buffer>());
  }

  /**
   * Run the blocks' 1x1 convs (expand, project) in int8 (on) or float32
   * (off, the default). Throws where the build has no AVX512-VNNI (kInt8).
   * Not while a run is in progress.
   */
  void useInt8(bool on) {
    if (on && !kInt8) throw std::invalid_argument("int8 kernels need a CPU with AVX512-VNNI (this build has none)");
    if (on) {
      for (Block& b : blocks_) {
        if (b.hasExpand) packInt8(b.expand);
        packInt8(b.project);
      }
      // The stem as a 28-input 1x1 conv over its 27 taps (and a zero one), for raw RGB input (stemRowInt8).
      stemQ_ = stem_;
      stemQ_.cin = 28;
      stemQ_.w.resize(size_t(28) * stem_.cout, 0.f);
      packInt8(stemQ_);
      stemMulAdd_.assign(2 * size_t(stem_.cout), 0.f);
    }
    int8_ = on;
  }

  int blocks() const { return int(blocks_.size()); }
  int outChannels(int block) const { return blocks_[block].project.cout; }
  const std::vector<int>& taps() const { return taps_; }
  int confChannels() const { return conf_.empty() ? 0 : channels_[conf_[0]]; }
  /** Threads the last run used (the caller's and the helpers the system gave it); 0 before the first run. */
  int lastThreads() const { return lastThreads_; }

  /** Sizes (h, w) of every value for an H x W input. */
  void valueSizes(int H, int W, std::vector<int>& hs, std::vector<int>& ws) const {
    hs.assign(channels_.size(), 0), ws.assign(channels_.size(), 0);
    for (size_t t = 0; t < taps_.size(); t++) outSize(taps_[t], H, W, hs[t], ws[t]);
    for (size_t k = 0; k < ops_.size(); k++) {
      const Op& op = ops_[k];
      const size_t v = taps_.size() + k;
      const int src = op.kind == Op::UpsampleOp ? op.b : op.a;
      hs[v] = hs[src], ws[v] = ws[src];
    }
  }

  /** Priors (rows of loc / conf) for an H x W input. */
  size_t priors(int H, int W) const {
    std::vector<int> hs, ws;
    valueSizes(H, W, hs, ws);
    size_t n = 0;
    for (int v : loc_) n += size_t(hs[v]) * ws[v];
    return n;
  }

  /** Output size of block `block` for an H x W input: every stride halves, rounding up. */
  void outSize(int block, int H, int W, int& h, int& w) const {
    h = half(H), w = half(W);
    for (int i = 0; i <= block; i++)
      if (blocks_[i].dw.stride == 2) h = half(h), w = half(w);
  }
  static int half(int n) { return (n + 1) / 2; }

  /** Thread t's share [y0, y1) of n rows. */
  static std::pair<int, int> rowsOf(int n, int t, int threads) { return {n * t / threads, n * (t + 1) / threads}; }

  /**
   * Runs on `threads` threads (the rows of each block and op split between
   * them, a barrier after each). loc: priors(H, W) x 4; conf: priors x
   * confChannels(); tapOutputs: empty, or one NCHW buffer per tap. Not
   * reentrant: callers serialise runs.
   */
  /**
   * run() on an RGB image, H x W x 3 uint8 (interleaved), minus `mean` (3
   * values): the stem reads the pixels directly, so no float image is made.
   */
  void runRgb(const uint8_t* rgb, const float* mean, int H, int W, const std::vector<float*>& tapOutputs, float* loc, float* conf, int threads) {
    rgb_ = rgb;
    for (int c = 0; c < 3; c++) mean_[c] = mean[c];
    // int8 with whole-number means: the stem multiplies the pixels themselves (exact in uint8), the padding
    // holds the mean (so it adds 0, as the zero padding of mean-subtracted input does), and each output
    // channel's offset takes off sum_k w_k mean_c(k).
    bool wholeMeans = true;
    for (int c = 0; c < 3; c++) wholeMeans = wholeMeans && mean[c] >= 0.f && mean[c] <= 255.f && mean[c] == std::floor(mean[c]);
    stem8_ = int8_ && wholeMeans;
    if (stem8_) {
      const int co = stem_.cout;
      for (int o = 0; o < co; o++) {
        float sum = 0;
        for (int k = 0; k < 27; k++) sum += float(stemQ_.wq[(size_t(k / 4) * co + o) * 4 + k % 4]) * mean_[k / 9];
        stemMulAdd_[o] = stemQ_.wScale[o];
        stemMulAdd_[co + o] = stem_.b[o] - stemQ_.wScale[o] * sum;
      }
    }
    try {
      run(nullptr, H, W, tapOutputs, loc, conf, threads);
    } catch (...) {
      rgb_ = nullptr, stem8_ = false;
      throw;
    }
    rgb_ = nullptr, stem8_ = false;
  }

  void run(const float* image, int H, int W, const std::vector<float*>& tapOutputs, float* loc, float* conf, int threads) {
    if (H < 1 || W < 1) throw std::invalid_argument("empty input");
    if (!tapOutputs.empty() && tapOutputs.size() != taps_.size()) throw std::invalid_argument("one output per tap");
    // Map sizes: the largest block output (NHWC), twice (input and output of a block). int8: each block
    // output row's smallest and largest value, [oh][2] per block from rangeAt[block].
    size_t mapSize = 0;
    std::vector<size_t> rangeAt(blocks() + 1, 0);
    for (int i = 0; i < blocks(); i++) {
      int h, w;
      outSize(i, H, W, h, w);
      mapSize = std::max(mapSize, size_t(h) * w * outChannels(i));
      rangeAt[i + 1] = rangeAt[i] + 2 * size_t(h);
    }
    float* maps[2] = {mapA_.get(mapSize + VL), mapB_.get(mapSize + VL)};
    float* ranges = int8_ ? rowRanges_.get(rangeAt.back() + VL) : nullptr;
    std::vector<int> hs, ws;
    valueSizes(H, W, hs, ws);
    std::vector<float*> vals(channels_.size());
    for (size_t v = 0; v < vals.size(); v++) vals[v] = values_[v]->get(size_t(hs[v]) * ws[v] * channels_[v] + VL);
    // Shapes the ops rely on: equal sizes for an add, one size per level for loc and conf.
    for (size_t k = 0; k < ops_.size(); k++)
      if (ops_[k].kind == Op::AddOp && (hs[ops_[k].a] != hs[ops_[k].b] || ws[ops_[k].a] != ws[ops_[k].b]))
        throw std::invalid_argument("op " + std::to_string(k) + ": add of maps of different sizes");
    for (size_t l = 0; l < loc_.size(); l++)
      if (hs[loc_[l]] != hs[conf_[l]] || ws[loc_[l]] != ws[conf_[l]]) throw std::invalid_argument("level " + std::to_string(l) + ": loc and conf of different sizes");
    const unsigned cores = std::thread::hardware_concurrency();
    threads = std::max(1, std::min(threads, int(cores > 0 ? cores : 1)));
    // Every allocation happens here, before any thread starts: an exception inside a thread would end the process.
    while (int(scratch_.size()) < threads) scratch_.push_back(std::make_unique<Scratch>());
    const int hw = half(W);
    for (int t = 0; t < threads; t++) {
      Scratch& s = *scratch_[t];
      s.ring.get(3 * size_t(hw + 2) * maxHidden_);
      s.dbuf.get(size_t(CHUNK) * maxHidden_);
      s.stemIn.get(9 * (size_t(W) + 2 + 2 * VL));
      s.stemTaps.get(size_t(hw) * 28);
      if (int8_) {
        s.rowQ.get(size_t(hw) * std::max(maxHidden_, maxCout_) / 4 + VL);  // an expand's input: a project's output
        s.chunkQ.get(size_t(CHUNK) * maxHidden_ / 4 + VL);
        s.mulAdd.get(2 * size_t(maxCout_) + VL);
      }
    }
#ifdef __EMSCRIPTEN__
    // Start the helper threads first; if the system refuses one, run with those it gave.
    std::vector<std::thread> pool;
    std::atomic<int> started{0};
    std::mutex startMutex;
    std::condition_variable startCv;
    int n = threads;
#else
    const int n = workers_.reserve(threads);
#endif
    std::unique_ptr<Barrier> barrierPtr;
    std::function<void(int)> work = [&](int t) {
#ifdef __EMSCRIPTEN__
      if (t > 0) {
        std::unique_lock<std::mutex> lock(startMutex);
        startCv.wait(lock, [&] { return started.load() != 0; });
      }
#endif
      const int threads = n;
      Barrier& barrier = *barrierPtr;
      Scratch& s = *scratch_[t];
      int h = half(H), w = half(W);  // size of the current block's input (the stem's output for block 0)
      const float* in = nullptr;
      for (int i = 0; i < blocks(); i++) {
        const Block& b = blocks_[i];
        const int oh = b.dw.stride == 2 ? half(h) : h, ow = b.dw.stride == 2 ? half(w) : w;
        // A tapped block writes straight into its value's map (the ops read it later); the others into the
        // two maps that alternate between blocks.
        const int tap = tapOf_[i];
        float* out = tap >= 0 ? vals[tap] : maps[i % 2];
        const auto [y0, y1] = rowsOf(oh, t, threads);
        runBlock(b, in, image, H, W, h, w, oh, ow, y0, y1, out, s, ranges && i > 0 ? ranges + rangeAt[i - 1] : nullptr, ranges ? ranges + rangeAt[i] : nullptr);
        if (tap >= 0 && !tapOutputs.empty()) toNchw(out, oh, ow, b.project.cout, y0, y1, tapOutputs[tap]);
        barrier.wait();
        in = out, h = oh, w = ow;
      }
      for (size_t k = 0; k < ops_.size(); k++) {
        const size_t v = taps_.size() + k;
        const auto [y0, y1] = rowsOf(hs[v], t, threads);
        runOp(ops_[k], vals, hs, ws, v, y0, y1);
        barrier.wait();
      }
      // Heads -> loc / conf, level by level (NHWC is the priors' order within a level).
      const int cc = confChannels();
      size_t offset = 0;
      for (size_t l = 0; l < loc_.size(); l++) {
        const int hv = hs[loc_[l]], wv = ws[loc_[l]];
        const auto [y0, y1] = rowsOf(hv, t, threads);
        std::memcpy(loc + (offset + size_t(y0) * wv) * 4, vals[loc_[l]] + size_t(y0) * wv * 4, sizeof(float) * (y1 - y0) * wv * 4);
        std::memcpy(conf + (offset + size_t(y0) * wv) * cc, vals[conf_[l]] + size_t(y0) * wv * cc, sizeof(float) * (y1 - y0) * wv * cc);
        offset += size_t(hv) * wv;
      }
    };
#ifdef __EMSCRIPTEN__
    for (int t = 1; t < threads; t++) {
      try {
        pool.emplace_back(work, t);
      } catch (const std::system_error&) {
        break;
      }
    }
    n = int(pool.size()) + 1;
    lastThreads_ = n;
    barrierPtr = std::make_unique<Barrier>(n);
    {
      std::lock_guard<std::mutex> lock(startMutex);
      started.store(1);
    }
    startCv.notify_all();
    work(0);
    for (auto& th : pool) th.join();
#else
    lastThreads_ = n;
    barrierPtr = std::make_unique<Barrier>(n);
    workers_.run(n, work);
#endif
  }

  /** Free the buffers kept between runs (maps, values, per-thread scratch) and stop the helper threads; a later run starts and allocates them again. */
  void releaseMemory() {
    mapA_.release(), mapB_.release(), rowRanges_.release();
    for (auto& v : values_) v->release();
    scratch_.clear();
#ifndef __EMSCRIPTEN__
    workers_.stop();
#endif
  }

  // Rows y0..y1 of value v, computed by `op` (NHWC maps; sizes hs x ws, channels channels_).
  void runOp(const Op& op, const std::vector<float*>& vals, const std::vector<int>& hs, const std::vector<int>& ws, size_t v, int y0, int y1) const {
    const int h = hs[v], w = ws[v], c = channels_[v];
    float* out = vals[v];
    const float* a = vals[op.a];
    const int ca = channels_[op.a];
    switch (op.kind) {
      case Op::AddOp: {
        const float* b = vals[op.b];
        for (size_t i = size_t(y0) * w * c; i < size_t(y1) * w * c; i++) out[i] = a[i] + b[i];
        break;
      }
      case Op::MaxoutOp:
        for (size_t p = size_t(y0) * w; p < size_t(y1) * w; p++) {
          const float* q = a + p * 4;
          out[p * 2] = std::max(std::max(q[0], q[1]), q[2]);
          out[p * 2 + 1] = q[3];
        }
        break;
      case Op::UpsampleOp: {
        // Bilinear, align_corners = false (PyTorch's and ONNX's pytorch_half_pixel): source = (dst + 0.5) * in / out - 0.5,
        // clamped at 0; a 1-pixel output reads source 0.
        const int ih = hs[op.a], iw = ws[op.a];
        auto src = [](int d, int in, int outN, int& i0, int& i1, float& f) {
          float x = outN > 1 ? (d + 0.5f) * float(in) / float(outN) - 0.5f : 0.f;
          x = std::max(x, 0.f);
          i0 = std::min(int(x), in - 1);
          i1 = std::min(i0 + 1, in - 1);
          f = x - float(i0);
          if (i0 == in - 1) f = 0.f;
        };
        for (int y = y0; y < y1; y++) {
          int r0, r1;
          float fy;
          src(y, ih, h, r0, r1, fy);
          for (int x = 0; x < w; x++) {
            int c0, c1;
            float fx;
            src(x, iw, w, c0, c1, fx);
            const float* p00 = a + (size_t(r0) * iw + c0) * c;
            const float* p01 = a + (size_t(r0) * iw + c1) * c;
            const float* p10 = a + (size_t(r1) * iw + c0) * c;
            const float* p11 = a + (size_t(r1) * iw + c1) * c;
            float* o = out + (size_t(y) * w + x) * c;
            const float w00 = (1 - fy) * (1 - fx), w01 = (1 - fy) * fx, w10 = fy * (1 - fx), w11 = fy * fx;
            for (int k = 0; k < c; k++) o[k] = w00 * p00[k] + w01 * p01[k] + w10 * p10[k] + w11 * p11[k];
          }
        }
        break;
      }
      case Op::ConvOp: {
        const Conv& cv = op.conv;
        if (cv.k == 1) {
          for (int y = y0; y < y1; y++)
            gemmRow(a + size_t(y) * w * ca, ca, w, cv.w.data(), cv.cout, cv.b.data(), cv.act, cv.slope, out + size_t(y) * w * c, nullptr);
        } else if (cv.groups == ca) {
          depthwiseMap(cv, a, h, w, c, y0, y1, out);
        } else {
          conv3x3Map(cv, a, h, w, ca, y0, y1, out);
        }
        break;
      }
    }
  }

  // Calls f(tap, pixel) for the 3x3 taps (dy * 3 + dx) of output pixel (y, x) that fall inside an h x w map,
  // pixel being the input's index iy * w + ix: stride 1, zero padding.
  template <class F>
  static inline void forTaps3x3(int y, int x, int h, int w, F f) {
    for (int dy = 0; dy < 3; dy++) {
      const int iy = y + dy - 1;
      if (iy < 0 || iy >= h) continue;
      for (int dx = 0; dx < 3; dx++) {
        const int ix = x + dx - 1;
        if (ix >= 0 && ix < w) f(dy * 3 + dx, size_t(iy) * w + ix);
      }
    }
  }

  // 3x3 depthwise, stride 1, zero padding, on an NHWC map (weights [9][c]).
  static void depthwiseMap(const Conv& cv, const float* in, int h, int w, int c, int y0, int y1, float* out) {
    withAct(actMode(cv), [&](auto act) {
      const vf slope = splat(cv.slope);
      for (int y = y0; y < y1; y++)
        for (int x = 0; x < w; x++)
          for (int v = 0; v < c; v += VL) {
            vf acc = loadv(cv.b.data() + v);
            forTaps3x3(y, x, h, w, [&](int tap, size_t pixel) { acc += loadv(cv.w.data() + size_t(tap) * c + v) * loadv(in + pixel * c + v); });
            storev(out + (size_t(y) * w + x) * c + v, activate<decltype(act)::value>(acc, slope));
          }
    });
  }

  // 3x3 dense conv, stride 1, zero padding, few outputs (the heads): per pixel and output, a dot product over
  // the 9 taps x cin inputs (weights [out][9][cin]).
#ifdef __AVX512F__
  // sums[j * 4 + q] = the sum of acc[q][j]'s 16 lanes, for a 4 x 4 block of accumulators.
  static inline void reduce16(const vf (&acc)[4][4], float* sums) {
    __m512 a[16], b[8], c[4], d[2];
    for (int q = 0; q < 4; q++)
      for (int j = 0; j < 4; j++) a[q * 4 + j] = (__m512)acc[q][j];
    // b[i]: lanes 0-7 partial sums of a[2i], lanes 8-15 of a[2i+1].
    for (int i = 0; i < 8; i++) b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44), _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
    // c[i]: 128-bit lane m holds 4 partial sums of a[4i+m].
    for (int i = 0; i < 4; i++) c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88), _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
    // d[i]: in 128-bit lane m, 2 partial sums of a[8i+m] then 2 of a[8i+4+m].
    for (int i = 0; i < 2; i++) d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0x44), _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0xEE));
    // e: lane 4m + k holds the sum of a[4k + m], i.e. of acc[k][m].
    const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
    _mm512_storeu_ps(sums, e);
  }
#endif
  static void conv3x3Map(const Conv& cv, const float* in, int h, int w, int cin, int y0, int y1, float* out) {
    const int co = cv.cout;
    auto write = [&](int y, int x, int o, float sum) { out[(size_t(y) * w + x) * co + o] = cv.act && sum < 0 ? sum * cv.slope : sum; };
    auto store = [&](int y, int x, int o, const vf& acc) {
      float sum = cv.b[o];
      for (int k = 0; k < VL; k++) sum += acc[k];
      write(y, x, o, sum);
    };
    for (int y = y0; y < y1; y++) {
      int x = 0;
      while (x < w) {
        // Four pixels whose taps are all inside the row (x - 1 ... x + 4): each weight vector loaded once for
        // the four, in groups of up to 4 outputs (16 accumulators).
        if (x >= 1 && x + 4 < w) {
          for (int o0 = 0; o0 < co; o0 += 4) {
            const int n = std::min(4, co - o0);
            vf acc[4][4] = {};
            for (int dy = 0; dy < 3; dy++) {
              const int iy = y + dy - 1;
              if (iy < 0 || iy >= h) continue;
              for (int dx = 0; dx < 3; dx++) {
                const float* p = in + (size_t(iy) * w + x - 1 + dx) * cin;
                const float* wt = cv.w.data() + (size_t(o0) * 9 + dy * 3 + dx) * cin;
                for (int v = 0; v < cin; v += VL) {
                  vf wv[4];
                  for (int j = 0; j < n; j++) wv[j] = loadv(wt + size_t(j) * 9 * cin + v);
                  for (int q = 0; q < 4; q++) {
                    const vf xv = loadv(p + size_t(q) * cin + v);
                    for (int j = 0; j < n; j++) acc[q][j] += wv[j] * xv;
                  }
                }
              }
            }
#ifdef __AVX512F__
            // The 16 horizontal sums at once (a shuffle tree: 15 adds, not 16 x 15 scalar ones).
            float sums[16];
            reduce16(acc, sums);
            for (int q = 0; q < 4; q++)
              for (int j = 0; j < n; j++) write(y, x + q, o0 + j, sums[j * 4 + q] + cv.b[o0 + j]);
#else
            for (int q = 0; q < 4; q++)
              for (int j = 0; j < n; j++) store(y, x + q, o0 + j, acc[q][j]);
#endif
          }
          x += 4;
          continue;
        }
        for (int o0 = 0; o0 < co; o0 += 8) {
          const int n = std::min(8, co - o0);
          vf acc[8] = {};
          forTaps3x3(y, x, h, w, [&](int tap, size_t pixel) {
            const float* p = in + pixel * cin;
            for (int v = 0; v < cin; v += VL) {
              const vf xv = loadv(p + v);
              for (int j = 0; j < n; j++) acc[j] += loadv(cv.w.data() + (size_t(o0 + j) * 9 + tap) * cin + v) * xv;
            }
          });
          for (int j = 0; j < n; j++) store(y, x, o0 + j, acc[j]);
        }
        x++;
      }
    }
  }


 private:
  struct Scratch {
    Buffer ring;  // 3 hidden rows, each (w + 2) pixels x hidden (a zero pixel each side)
    Buffer dbuf;  // depthwise output of one chunk of pixels: [CHUNK][hidden]
    Buffer stemIn;  // the image rows the stem reads: [3 ch][3 rows][W + 2]
    Buffer stemTaps;  // the stem's 27 inputs per output pixel: [w][28]
    Buffer rowQ;  // int8: the expand conv's input row quantised, [w][cin] uint8
    Buffer chunkQ;  // int8: dbuf quantised, [CHUNK][hidden] uint8
    Buffer mulAdd;  // int8: per output channel, the accumulator's scale and offset, [2][cout]
  };
  static constexpr int CHUNK = 24;

  static fvec transpose(const fvec& w, int rows, int cols) {
    fvec t(w.size());
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) t[size_t(c) * rows + r] = w[size_t(r) * cols + c];
    return t;
  }

  // Output rows y0..y1 of one block; its input map `in` is ih x iw NHWC (block 0: the stem computed from the image).
  // int8: inRanges holds the smallest and largest value of each input row ([ih][2], from the block before; null
  // for block 0), and the block writes those of its output rows to outRanges ([oh][2]) while they are in cache,
  // so the next expand conv does not read its input rows a second time to find their range.
  void runBlock(const Block& b, const float* in, const float* image, int H, int W, int ih, int iw, int oh, int ow, int y0, int y1, float* out, Scratch& s,
                const float* inRanges, float* outRanges) const {
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
            if (b.hasExpand) {
              if (int8_) expandRowInt8(b.expand, in + size_t(r) * iw * cin, iw, dst + hidden, s, inRanges ? inRanges + 2 * size_t(r) : nullptr);
              else expandRow(b.expand, in + size_t(r) * iw * cin, iw, dst + hidden);
            } else {
              if (stem8_) stemRowInt8(H, W, r, iw, dst + hidden, s);
              else stemRow(image, H, W, r, iw, dst + hidden, s);
            }
          }
          rowOf[slot] = r;
        }
        rows[d] = dst;
      }
      const float* res = b.residual ? (b.hasExpand ? in + size_t(y) * iw * cin : rows[1] + hidden) : nullptr;
      float* o = out + size_t(y) * ow * b.project.cout;
      float rowMin = 0, rowMax = 0;
      for (int x = 0; x < ow; x += CHUNK) {
        const int n = std::min(CHUNK, ow - x);
        const float* r = res ? res + size_t(x) * b.project.cout : nullptr;
        if (int8_) {
          float range[2];
          depthwise(b.dw, rows, hidden, st, x, n, dbuf, range);
          float* chunk = o + size_t(x) * b.project.cout;
          projectInt8(b.project, dbuf, hidden, n, r, chunk, s, range);
          if (outRanges) {
            float mn, mx;
            minMax(chunk, size_t(n) * b.project.cout, mn, mx);
            rowMin = std::min(rowMin, mn), rowMax = std::max(rowMax, mx);
          }
        } else {
          depthwise(b.dw, rows, hidden, st, x, n, dbuf);
          project(b.project, dbuf, hidden, n, r, o + size_t(x) * b.project.cout);
        }
      }
      if (outRanges) outRanges[2 * size_t(y)] = rowMin, outRanges[2 * size_t(y) + 1] = rowMax;
    }
  }

  // acc[p][v] over `n` input channels: in[p * ip + c] broadcast x w[c * ws + v * VL]; ACT as in actMode.
  template <int P, int V, int ACT>
  static inline void gemmTile(const float* in, size_t ip, const float* w, size_t ws, int n, const float* bias, vf slope, float* out, size_t op, const float* res,
                              size_t rp) {
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
        vf a = activate<ACT>(acc[p][v], slope);
        if (res) a += loadv(res + p * rp + v * VL);
        storev(out + p * op + v * VL, a);
      }
  }

  // out[p][o] = act(sum_c in[p * ip + c] w[c][o] + b[o]) (+ res[p][o]) over c < n, for `np` pixels, all
  // `cout` outputs (out and res rows have cout values per pixel).
  template <int V, int P, int ACT>
  static void gemmRowV(const float* in, int ip, int n, int np, const float* w, int cout, const float* bias, vf slope, float* out, const float* res, int o) {
    int p = 0;
    for (; p + P <= np; p += P)
      gemmTile<P, V, ACT>(in + size_t(p) * ip, ip, w + o, cout, n, bias + o, slope, out + size_t(p) * cout + o, cout, res ? res + size_t(p) * cout + o : nullptr,
                          cout);
    for (; p < np; p++)
      gemmTile<1, V, ACT>(in + size_t(p) * ip, ip, w + o, cout, n, bias + o, slope, out + size_t(p) * cout + o, cout, res ? res + size_t(p) * cout + o : nullptr,
                          cout);
  }
  template <int ACT>
  static void gemmRowA(const float* in, int ip, int n, int np, const float* w, int cout, const float* bias, vf slope, float* out, const float* res) {
    int o = 0;
    if (kManyRegisters) {
      // Output channel groups of 4, 3, 2, 1 vectors with 6, 8, 12, 12 pixels: 24 (or 12) accumulators of 32 registers.
      for (; cout - o >= 4 * VL; o += 4 * VL) gemmRowV<4, 6, ACT>(in, ip, n, np, w, cout, bias, slope, out, res, o);
      if (cout - o == 3 * VL) gemmRowV<3, 8, ACT>(in, ip, n, np, w, cout, bias, slope, out, res, o), o += 3 * VL;
      if (cout - o >= 2 * VL) gemmRowV<2, 12, ACT>(in, ip, n, np, w, cout, bias, slope, out, res, o), o += 2 * VL;
      if (cout - o >= VL) gemmRowV<1, 12, ACT>(in, ip, n, np, w, cout, bias, slope, out, res, o), o += VL;
    } else {
      // 16 registers: groups of 2 vectors x 6 pixels, then 1 x 8.
      for (; cout - o >= 2 * VL; o += 2 * VL) gemmRowV<2, 6, ACT>(in, ip, n, np, w, cout, bias, slope, out, res, o);
      if (cout - o >= VL) gemmRowV<1, 8, ACT>(in, ip, n, np, w, cout, bias, slope, out, res, o), o += VL;
    }
  }
  static void gemmRowG(const float* in, int ip, int n, int np, const float* w, int cout, const float* bias, bool act, float slope, float* out, const float* res) {
    withAct(actMode(act, slope), [&](auto a) { gemmRowA<decltype(a)::value>(in, ip, n, np, w, cout, bias, splat(slope), out, res); });
  }
  static void gemmRow(const float* in, int cin, int np, const float* w, int cout, const float* bias, bool act, float slope, float* out, const float* res) {
    gemmRowG(in, cin, cin, np, w, cout, bias, act, slope, out, res);
  }

  static void expandRow(const Conv& e, const float* in, int w, float* dst) { gemmRow(in, e.cin, w, e.w.data(), e.cout, e.b.data(), e.act, e.slope, dst, nullptr); }

  static void project(const Conv& p, const float* dbuf, int hidden, int n, const float* res, float* out) {
    gemmRow(dbuf, hidden, n, p.w.data(), p.cout, p.b.data(), p.act, p.slope, out, res);
  }

  // [cin][cout] float weights (transposed at construction) -> wq [cin / 4][cout][4] int8, wScale, wSum.
  static void packInt8(Conv& c) {
    if (c.cin % 4) throw std::invalid_argument("int8 1x1 convs need a multiple of 4 input channels");
    c.wq.assign(size_t(c.cin) * c.cout, 0);
    c.wScale.assign(size_t(c.cout), 0.f);
    c.wSum.assign(size_t(c.cout), 0.f);
    for (int o = 0; o < c.cout; o++) {
      float m = 0;
      for (int k = 0; k < c.cin; k++) m = std::max(m, std::fabs(c.w[size_t(k) * c.cout + o]));
      const float sc = m > 0 ? m / 127.f : 1.f;
      c.wScale[o] = sc;
      int sum = 0;
      for (int k = 0; k < c.cin; k++) {
        const int q = int(std::lround(c.w[size_t(k) * c.cout + o] / sc));
        c.wq[(size_t(k / 4) * c.cout + o) * 4 + k % 4] = int8_t(q);
        sum += q;
      }
      c.wSum[o] = float(sum);
    }
  }

#ifdef EXTD_INT8
  // n floats (a multiple of 16) -> uint8 q = round(x / scale) + zero, over the range [min(x, 0), max(x, 0)];
  // writes mul[o] = scale * wScale[o] and add[o] = bias[o] - zero * scale * wScale[o] * wSum[o] for conv c.
  // `range`: x's smallest and largest values when the caller knows them (else found here).
  static void quantize(const float* x, size_t n, uint8_t* q, const Conv& c, float* mul, float* add, const float* range) {
    float mn, mx;
    if (range) {
      mn = std::min(range[0], 0.f), mx = std::max(range[1], 0.f);
    } else {
      minMax(x, n, mn, mx);
    }
    const float scale = mx > mn ? (mx - mn) / 255.f : 1.f;
    const int zero = std::min(255, std::max(0, int(std::lround(-mn / scale))));
    const __m512 inv = _mm512_set1_ps(1.f / scale), z = _mm512_set1_ps(float(zero));
    const __m512i bottom = _mm512_setzero_si512();
    // round(x / scale + zero), then clamped to [0, 255]: max with 0 here, the top by vpmovusdb's saturation.
    for (size_t i = 0; i < n; i += 16) {
      const __m512i v = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_fmadd_ps(_mm512_loadu_ps(x + i), inv, z)), bottom);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtusepi32_epi8(v));
    }
    for (int o = 0; o < c.cout; o++) {
      const float m = scale * c.wScale[o];
      mul[o] = m;
      add[o] = c.b[o] - float(zero) * m * c.wSum[o];
    }
  }

  // The smallest and largest of n floats (a multiple of 16), each widened to include 0.
  static void minMax(const float* x, size_t n, float& mn, float& mx) {
    // Four running minima and maxima: one pair would make every step wait for the previous one.
    __m512 lo[4], hi[4];
    for (int j = 0; j < 4; j++) lo[j] = hi[j] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
      for (int j = 0; j < 4; j++) {
        const __m512 v = _mm512_loadu_ps(x + i + 16 * j);
        lo[j] = _mm512_min_ps(lo[j], v), hi[j] = _mm512_max_ps(hi[j], v);
      }
    for (; i < n; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      lo[0] = _mm512_min_ps(lo[0], v), hi[0] = _mm512_max_ps(hi[0], v);
    }
    mn = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3])));
    mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3])));
  }

  // acc[p][v] over `n4` groups of 4 input channels: group in[p * ip + k] broadcast, dot w[(k * ws + v * 16) * 4 ...].
  template <int P, int V, int ACT>
  static inline void gemmTileInt8(const uint32_t* in, size_t ip, const int8_t* w, size_t ws, int n4, const float* mul, const float* add, vf slope,
                                  float* out, size_t op, const float* res, size_t rp) {
    // GCC vector types, every loop over p and v fully unrolled: with __m512i arrays and partly unrolled
    // loops GCC 12 kept the accumulators on the stack.
    typedef int vi __attribute__((vector_size(64)));
    vi acc[P][V];
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
#pragma GCC unroll 16
      for (int v = 0; v < V; v++) acc[p][v] = vi{};
    for (int k = 0; k < n4; k++) {
      vi wv[V];
#pragma GCC unroll 16
      for (int v = 0; v < V; v++) std::memcpy(&wv[v], w + (size_t(k) * ws + v * 16) * 4, sizeof(vi));
#pragma GCC unroll 16
      for (int p = 0; p < P; p++) {
        const vi x = vi{} + int(in[p * ip + k]);
#pragma GCC unroll 16
        for (int v = 0; v < V; v++) acc[p][v] = (vi)_mm512_dpbusd_epi32((__m512i)acc[p][v], (__m512i)x, (__m512i)wv[v]);
      }
    }
#pragma GCC unroll 16
    for (int v = 0; v < V; v++) {
      const vf m = loadv(mul + v * VL), a0 = loadv(add + v * VL);
#pragma GCC unroll 16
      for (int p = 0; p < P; p++) {
        vf a = __builtin_convertvector(acc[p][v], vf) * m + a0;
        a = activate<ACT>(a, slope);
        if (res) a += loadv(res + p * rp + v * VL);
        storev(out + p * op + v * VL, a);
      }
    }
  }
  template <int V, int P, int ACT>
  static void gemmRowInt8V(const uint32_t* in, int ip, int np, const int8_t* w, int cout, const float* mul, const float* add, vf slope, float* out,
                           const float* res, int o) {
    int p = 0;
    for (; p + P <= np; p += P)
      gemmTileInt8<P, V, ACT>(in + size_t(p) * ip, ip, w + size_t(o) * 4, cout, ip, mul + o, add + o, slope, out + size_t(p) * cout + o, cout,
                         res ? res + size_t(p) * cout + o : nullptr, cout);
    for (; p < np; p++)
      gemmTileInt8<1, V, ACT>(in + size_t(p) * ip, ip, w + size_t(o) * 4, cout, ip, mul + o, add + o, slope, out + size_t(p) * cout + o, cout,
                         res ? res + size_t(p) * cout + o : nullptr, cout);
  }
  // gemmRow in int8: x holds np pixels of c.cin floats, quantised here; weights c.wq.
  static void gemmRowInt8(const Conv& c, const float* x, int np, uint8_t* q, float* mulAdd, float* out, const float* res, const float* range) {
    float* mul = mulAdd;
    float* add = mulAdd + c.cout;
    quantize(x, size_t(np) * c.cin, q, c, mul, add, range);
    gemmRowInt8Q(c, reinterpret_cast<const uint32_t*>(q), np, mul, add, out, res);
  }
  // gemmRowInt8 of input already quantised: in holds np pixels of c.cin uint8 (as groups of 4).
  static void gemmRowInt8Q(const Conv& c, const uint32_t* in, int np, const float* mul, const float* add, float* out, const float* res) {
    withAct(actMode(c), [&](auto act) { gemmRowInt8A<decltype(act)::value>(c, in, np, mul, add, out, res); });
  }
  template <int ACT>
  static void gemmRowInt8A(const Conv& c, const uint32_t* in, int np, const float* mul, const float* add, float* out, const float* res) {
    const int ip = c.cin / 4, cout = c.cout;
    const int8_t* w = c.wq.data();
    const vf slope = splat(c.slope);
    int o = 0;
    for (; cout - o >= 64; o += 64) gemmRowInt8V<4, 6, ACT>(in, ip, np, w, cout, mul, add, slope, out, res, o);
    if (cout - o == 48) gemmRowInt8V<3, 8, ACT>(in, ip, np, w, cout, mul, add, slope, out, res, o), o += 48;
    if (cout - o >= 32) gemmRowInt8V<2, 12, ACT>(in, ip, np, w, cout, mul, add, slope, out, res, o), o += 32;
    if (cout - o >= 16) gemmRowInt8V<1, 12, ACT>(in, ip, np, w, cout, mul, add, slope, out, res, o), o += 16;
  }
  // The stem's output row r from the raw RGB pixels in int8 (runRgb with whole-number means; see there).
  void stemRowInt8(int H, int W, int r, int w, float* dst, Scratch& s) const {
    const size_t pw = size_t(W) + 2 + 64;
    uint8_t* rowsIn = reinterpret_cast<uint8_t*>(s.stemIn.get(9 * pw / 4 + VL));
    for (int c = 0; c < 3; c++)
      for (int d = 0; d < 3; d++) {
        uint8_t* p = rowsIn + size_t(c * 3 + d) * pw;
        const int iy = 2 * r - 1 + d;
        std::memset(p, int(mean_[c]), pw);
        if (iy < 0 || iy >= H) continue;
        const uint8_t* px = rgb_ + size_t(iy) * W * 3 + c;
        for (int x = 0; x < W; x++) p[1 + x] = px[3 * size_t(x)];
      }
    // 27 taps (and a zero) per output pixel, as the 28 uint8 inputs of a 1x1 conv.
    uint8_t* taps = reinterpret_cast<uint8_t*>(s.stemTaps.get(size_t(w) * 28 / 4 + VL));
    for (int x = 0; x < w; x++) {
      uint8_t* t = taps + size_t(x) * 28;
      for (int k = 0; k < 9; k++) {
        const uint8_t* p = rowsIn + size_t(k) * pw + 2 * x;  // padded column 2x = input column 2x-1
        t[k * 3] = p[0], t[k * 3 + 1] = p[1], t[k * 3 + 2] = p[2];
      }
      t[27] = 0;
    }
    gemmRowInt8Q(stemQ_, reinterpret_cast<const uint32_t*>(taps), w, stemMulAdd_.data(), stemMulAdd_.data() + stem_.cout, dst, nullptr);
  }
  static void expandRowInt8(const Conv& e, const float* in, int w, float* dst, Scratch& s, const float* range) {
    uint8_t* q = reinterpret_cast<uint8_t*>(s.rowQ.get(size_t(w) * e.cin / 4 + VL));
    gemmRowInt8(e, in, w, q, s.mulAdd.get(2 * size_t(e.cout) + VL), dst, nullptr, range);
  }
  static void projectInt8(const Conv& p, const float* dbuf, int hidden, int n, const float* res, float* out, Scratch& s, const float* range) {
    uint8_t* q = reinterpret_cast<uint8_t*>(s.chunkQ.get(size_t(CHUNK) * hidden / 4 + VL));
    gemmRowInt8(p, dbuf, n, q, s.mulAdd.get(2 * size_t(p.cout) + VL), out, res, range);
  }
#else
  static void expandRowInt8(const Conv&, const float*, int, float*, Scratch&, const float*) { std::abort(); }  // unreachable: useInt8 throws
  void stemRowInt8(int, int, int, int, float*, Scratch&) const { std::abort(); }
  static void minMax(const float*, size_t, float&, float&) { std::abort(); }
  static void projectInt8(const Conv&, const float*, int, int, const float*, float*, Scratch&, const float*) { std::abort(); }
#endif

  // Depthwise 3x3 (stride st) of output pixels x..x+n-1 from three padded hidden rows into dbuf [n][hidden].
  // With `range`, also the smallest and largest value written (range[0], range[1]; the int8 project's input).
  static void depthwise(const Conv& dw, const float* const rows[3], int hidden, int st, int x, int n, float* dbuf, float* range = nullptr) {
    // One instantiation per activation form and range tracking, so the pixel loop has no branches.
    withAct(actMode(dw), [&](auto act) {
      if (range) depthwiseT<decltype(act)::value, true>(dw, rows, hidden, st, x, n, dbuf, range);
      else depthwiseT<decltype(act)::value, false>(dw, rows, hidden, st, x, n, dbuf, range);
    });
  }
  // How a conv's activation is computed, as the template argument ACT of the kernels: 0 none, 1 leaky as
  // max(v, slope v) (a slope in [0, 1]), 2 leaky as a select. Fixing it per instantiation keeps branches out of
  // the pixel loops.
  static int actMode(bool act, float slope) { return !act ? 0 : slope >= 0.f && slope <= 1.f ? 1 : 2; }
  static int actMode(const Conv& c) { return actMode(c.act, c.slope); }
  // Calls f(std::integral_constant<int, ACT>{}) for activation form `mode`: one instantiation of f per form.
  template <class F>
  static void withAct(int mode, F&& f) {
    if (mode == 0) f(std::integral_constant<int, 0>{});
    else if (mode == 1) f(std::integral_constant<int, 1>{});
    else f(std::integral_constant<int, 2>{});
  }
  template <int ACT>
  static inline vf activate(vf v, vf slope) {
    if (ACT == 0) return v;
    const vf av = v * slope;
#ifdef __AVX512F__
    if (ACT == 1) return (vf)_mm512_max_ps((__m512)v, (__m512)av);
    // slope v where v < 0: a compare into a mask and a masked multiply (no blend).
    return (vf)_mm512_mask_mul_ps((__m512)v, _mm512_cmp_ps_mask((__m512)v, _mm512_setzero_ps(), _CMP_LT_OQ), (__m512)v, (__m512)slope);
#else
    return v >= 0 ? v : av;  // both forms (a select keeps +inf where slope x inf is NaN)
#endif
  }
  template <int ACT, bool TRACK>
  static void depthwiseT(const Conv& dw, const float* const rows[3], int hidden, int st, int x, int n, float* dbuf, float* range) {
    vf lo = vf{}, hi = vf{};
    const vf slope = splat(dw.slope);
    const float* k = dw.w.data();
    const float* bias = dw.b.data();
    int p = 0;
    // Four output pixels at a time at stride 1: neighbouring pixels share input columns, so each column vector
    // is loaded once for up to three of them (6 loads per row for 12 multiply-adds, not 12). The sums are
    // written as one multiply-add per tap.
    if (st == 1) {
      for (; p + 4 <= n; p += 4) {
        const size_t c0 = size_t(x + p);
        for (int v = 0; v < hidden; v += VL) {
          const vf b = loadv(bias + v);
          vf a[4] = {b, b, b, b};
          for (int d = 0; d < 3; d++) {
            const float* r = rows[d] + c0 * hidden + v;
            vf col[6];
            for (int j = 0; j < 6; j++) col[j] = loadv(r + size_t(j) * hidden);
            for (int t = 0; t < 3; t++) {
              const vf kt = loadv(k + size_t(d * 3 + t) * hidden + v);
              for (int q = 0; q < 4; q++) a[q] += kt * col[q + t];
            }
          }
          for (int q = 0; q < 4; q++) {
            const vf o = activate<ACT>(a[q], slope);
            if (TRACK) lo = o < lo ? o : lo, hi = o > hi ? o : hi;
            storev(dbuf + size_t(p + q) * hidden + v, o);
          }
        }
      }
    }
    for (; p < n; p++) {
      // Output pixel x+p reads input columns st*(x+p)-1 .. +1, i.e. padded columns st*(x+p) .. +2.
      const size_t c0 = size_t(st) * (x + p);
      for (int v = 0; v < hidden; v += VL) {
        vf a0 = loadv(bias + v), a1 = vf{}, a2 = vf{};
        for (int d = 0; d < 3; d++) {
          const float* r = rows[d] + c0 * hidden + v;
          a0 += loadv(k + size_t(d * 3) * hidden + v) * loadv(r);
          a1 += loadv(k + size_t(d * 3 + 1) * hidden + v) * loadv(r + hidden);
          a2 += loadv(k + size_t(d * 3 + 2) * hidden + v) * loadv(r + 2 * hidden);
        }
        const vf o = activate<ACT>(a0 + a1 + a2, slope);
        if (TRACK) lo = o < lo ? o : lo, hi = o > hi ? o : hi;
        storev(dbuf + size_t(p) * hidden + v, o);
      }
    }
    if (TRACK) {
      float mn = 0, mx = 0;
      for (int j = 0; j < VL; j++) mn = std::min(mn, lo[j]), mx = std::max(mx, hi[j]);
      range[0] = mn, range[1] = mx;
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
        if (iy < 0 || iy >= H) continue;
        if (rgb_) {
          const uint8_t* px = rgb_ + size_t(iy) * W * 3 + c;
          const float m = mean_[c];
          for (int x = 0; x < W; x++) p[1 + x] = float(px[3 * size_t(x)]) - m;
        } else {
          std::memcpy(p + 1, image + (size_t(c) * H + iy) * W, sizeof(float) * W);
        }
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
    gemmRowG(taps, K, 27, w, stem_.w.data(), stem_.cout, stem_.b.data(), stem_.act, stem_.slope, dst, nullptr);
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
  std::vector<int> tapOf_;  // per block: its index in taps_, or -1
  std::vector<Op> ops_;
  std::vector<int> loc_, conf_;
  std::vector<int> channels_;  // per value
  std::vector<std::unique_ptr<Buffer>> values_;  // per value: its NHWC map, kept between runs
  int maxHidden_ = 0;
  const uint8_t* rgb_ = nullptr;  // runRgb's image while it runs
  float mean_[3] = {0, 0, 0};
  bool stem8_ = false;  // this run's stem is stemRowInt8
  Conv stemQ_;  // int8: the stem's weights as a 28-input 1x1 conv
  fvec stemMulAdd_;  // int8: per stem output channel, the accumulator's scale and offset for this run's mean, [2][cout]
  int maxCout_ = 0;  // the most output channels of an expand or project conv
  bool int8_ = false;
  int lastThreads_ = 0;
  Buffer mapA_, mapB_;
  Buffer rowRanges_;  // int8: per block output row, its smallest and largest value
  std::vector<std::unique_ptr<Scratch>> scratch_;
#ifndef __EMSCRIPTEN__
  Workers workers_;  // declared last: its helper threads stop before the buffers they use are freed
#endif
};

}  // namespace extd
