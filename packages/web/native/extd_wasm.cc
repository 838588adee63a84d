// extd's kernels (../../node/native/network.h) as a WebAssembly module for
// the browser, built with Emscripten (scripts/build-wasm.mjs): SIMD128
// vectors of 4 floats, threads as Web Workers (pthreads). The network is
// described by one Float32Array (src/runtime/wasm-kernels.ts encodes it):
//
//   network: 1 (format), stem conv, block count, per block [has expand,
//            residual] (expand) dw project, tap count, taps, op count, per op
//            [kind (0 conv, 1 add, 2 upsample, 3 maxout), a, b] (conv),
//            level count, loc values, conf values
//   conv:    in, out, kernel, stride, groups, has activation, slope,
//            weights (out x in/groups x k x k), bias (out)
//
// Integers are stored as floats (all are far below 2^24). Errors are
// reported by extd_error() after a call returns 0 / -1.
#include <emscripten/emscripten.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "../../node/native/network.h"

namespace {

std::string lastError;

class Reader {
 public:
  Reader(const float* p, int n) : p_(p), n_(n) {}
  float next() {
    if (i_ >= n_) throw std::invalid_argument("network description ends early");
    return p_[i_++];
  }
  int integer() {
    const float v = next();
    if (v != float(int(v))) throw std::invalid_argument("network description: expected an integer");
    return int(v);
  }
  extd::fvec floats(size_t count) {
    if (size_t(n_ - i_) < count) throw std::invalid_argument("network description ends early");
    extd::fvec v(p_ + i_, p_ + i_ + count);
    i_ += int(count);
    return v;
  }
  bool done() const { return i_ == n_; }

 private:
  const float* p_;
  int n_, i_ = 0;
};

extd::Conv readConv(Reader& r) {
  extd::Conv c;
  c.cin = r.integer(), c.cout = r.integer(), c.k = r.integer(), c.stride = r.integer(), c.groups = r.integer();
  c.act = r.integer() != 0;
  c.slope = r.next();
  if (c.cin < 1 || c.cout < 1 || c.groups < 1 || c.cin % c.groups || (c.k != 1 && c.k != 3)) throw std::invalid_argument("conv: bad shape");
  c.w = r.floats(size_t(c.cout) * (c.cin / c.groups) * c.k * c.k);
  c.b = r.floats(size_t(c.cout));
  return c;
}

std::vector<int> readInts(Reader& r) {
  const int n = r.integer();
  std::vector<int> v;
  for (int i = 0; i < n; i++) v.push_back(r.integer());
  return v;
}

}  // namespace

extern "C" {

EMSCRIPTEN_KEEPALIVE const char* extd_error() { return lastError.c_str(); }

/** A network from its description (`n` floats at `desc`), or 0 (extd_error says why). */
EMSCRIPTEN_KEEPALIVE extd::Network* extd_create(const float* desc, int n) {
  try {
    Reader r(desc, n);
    if (r.integer() != 1) throw std::invalid_argument("network description: unknown format");
    extd::Conv stem = readConv(r);
    const int blockCount = r.integer();
    std::vector<extd::Block> blocks;
    for (int i = 0; i < blockCount; i++) {
      extd::Block b;
      b.hasExpand = r.integer() != 0;
      b.residual = r.integer() != 0;
      if (b.hasExpand) b.expand = readConv(r);
      b.dw = readConv(r);
      b.project = readConv(r);
      blocks.push_back(std::move(b));
    }
    std::vector<int> taps = readInts(r);
    const int opCount = r.integer();
    std::vector<extd::Op> ops;
    for (int i = 0; i < opCount; i++) {
      extd::Op op;
      const int kind = r.integer();
      if (kind < 0 || kind > 3) throw std::invalid_argument("op " + std::to_string(i) + ": unknown kind");
      op.kind = extd::Op::Kind(kind);
      op.a = r.integer(), op.b = r.integer();
      if (op.kind == extd::Op::ConvOp) op.conv = readConv(r);
      ops.push_back(std::move(op));
    }
    std::vector<int> loc = readInts(r), conf = readInts(r);
    if (!r.done()) throw std::invalid_argument("network description: values after the end");
    return new extd::Network(std::move(stem), std::move(blocks), std::move(taps), std::move(ops), std::move(loc), std::move(conf));
  } catch (const std::exception& e) {
    lastError = e.what();
    return nullptr;
  }
}

EMSCRIPTEN_KEEPALIVE int extd_priors(extd::Network* net, int h, int w) { return int(net->priors(h, w)); }
EMSCRIPTEN_KEEPALIVE int extd_conf_channels(extd::Network* net) { return net->confChannels(); }

/**
 * Run on an RGB image (h x w x 3 uint8) minus the mean: loc (priors x 4) and
 * conf (priors x conf channels). 0, or -1 (extd_error says why).
 */
EMSCRIPTEN_KEEPALIVE int extd_run_rgb(extd::Network* net, const uint8_t* rgb, int h, int w, float m0, float m1, float m2, float* loc, float* conf, int threads) {
  try {
    const float mean[3] = {m0, m1, m2};
    net->runRgb(rgb, mean, h, w, {}, loc, conf, threads);
    return 0;
  } catch (const std::exception& e) {
    lastError = e.what();
    return -1;
  }
}

/** Run on a network input (1 x 3 x h x w float32, mean subtracted): as extd_run_rgb. */
EMSCRIPTEN_KEEPALIVE int extd_run(extd::Network* net, const float* input, int h, int w, float* loc, float* conf, int threads) {
  try {
    net->run(input, h, w, {}, loc, conf, threads);
    return 0;
  } catch (const std::exception& e) {
    lastError = e.what();
    return -1;
  }
}

/** Threads the last run used (1 in the single-threaded build, or where no worker was free). */
EMSCRIPTEN_KEEPALIVE int extd_last_threads(extd::Network* net) { return net->lastThreads(); }

EMSCRIPTEN_KEEPALIVE void extd_destroy(extd::Network* net) { delete net; }
}
