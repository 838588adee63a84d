// extd_kernels: extd's own float32 kernels for the whole EXTD network (see
// network.h), as a small N-API addon. The model's structure and weights come
// from TypeScript (src/runtime/native-network.ts builds the description from
// the model graph, with BatchNorm folded); this file only checks and copies
// them, and runs the network on libuv's thread pool so detect() stays async
// (the TypeScript side queues calls, so at most one waits there).
//
//   new Network(spec)   spec: { stem: Conv, blocks: Block[], taps: number[], ops: Op[], loc: number[], conf: number[], int8?: boolean }
//     int8: the blocks' 1x1 convs in int8 (network.h, Network::useInt8); only where `int8` (below) is true
//     Op: { kind: 'conv' | 'add' | 'upsample' | 'maxout', a, b?, conv? } over value numbers (taps first)
//   network.priors(height, width)           rows of loc / conf for that input size
//   network.confChannels                    columns of conf
//   network.outputShape(tap, height, width) [C, h, w] of tap's block output
//   network.release()                       free the buffers kept between runs and stop the network's threads
//                                           (waits for a run in progress; the next run starts them again)
//   vectorWidth                             floats per vector of this build (16 AVX-512, 8 AVX2, 4 otherwise)
//   int8                                    whether this build has the int8 kernels (AVX512-VNNI)
//   network.run(input, height, width, loc, conf, tapOutputs, threads, callback[, mean])
//     input:      Float32Array 3 x height x width (NCHW, N = 1), or Uint8Array height x width x 3
//                 (RGB, interleaved) with mean (Float32Array of 3, subtracted per channel)
//     loc, conf:  Float32Array priors x 4, priors x confChannels
//     tapOutputs: [] or one Float32Array per tap, C x h x w (NCHW; for tests)
//     callback(err | null) once the outputs are written. Runs of one
//     Network are serialised by a mutex (its scratch memory is reused).
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>

#include "network.h"

namespace {

using extd::Block;
using extd::Conv;

extd::fvec floats(const Napi::Object& o, const char* key, size_t expected, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw std::invalid_argument(where + "." + key + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != expected)
    throw std::invalid_argument(where + "." + key + " has " + std::to_string(a.ElementLength()) + " values, expected " + std::to_string(expected));
  return extd::fvec(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int> ints(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw std::invalid_argument(std::string(key) + " must be an array");
  auto a = v.As<Napi::Array>();
  std::vector<int> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (!x.IsNumber()) throw std::invalid_argument(std::string(key) + " must hold numbers");
    out.push_back(x.As<Napi::Number>().Int32Value());
  }
  return out;
}

int integer(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw std::invalid_argument(where + "." + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

Conv conv(const Napi::Value& v, const std::string& where) {
  if (!v.IsObject()) throw std::invalid_argument(where + " must be an object");
  auto o = v.As<Napi::Object>();
  Conv c;
  c.cin = integer(o, "inChannels", where);
  c.cout = integer(o, "outChannels", where);
  c.k = integer(o, "kernel", where);
  c.stride = integer(o, "stride", where);
  c.groups = integer(o, "groups", where);
  if (c.cin < 1 || c.cout < 1 || c.groups < 1 || c.cin % c.groups || (c.k != 1 && c.k != 3)) throw std::invalid_argument(where + ": bad shape");
  c.w = floats(o, "weight", size_t(c.cout) * (c.cin / c.groups) * c.k * c.k, where);
  c.b = floats(o, "bias", size_t(c.cout), where);
  Napi::Value slope = o.Get("slope");
  c.act = slope.IsNumber();
  c.slope = c.act ? slope.As<Napi::Number>().FloatValue() : 0.f;
  return c;
}

class NetworkWrap : public Napi::ObjectWrap<NetworkWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Network",
                       {InstanceMethod<&NetworkWrap::Run>("run"), InstanceMethod<&NetworkWrap::OutputShape>("outputShape"), InstanceMethod<&NetworkWrap::Priors>("priors"), InstanceMethod<&NetworkWrap::Release>("release"),
                        InstanceAccessor<&NetworkWrap::ConfChannels>("confChannels")});
  }

  explicit NetworkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetworkWrap>(info) {
    Napi::Env env = info.Env();
    try {
      if (!info[0].IsObject()) throw std::invalid_argument("Network: spec must be an object");
      auto spec = info[0].As<Napi::Object>();
      Conv stem = conv(spec.Get("stem"), "stem");
      Napi::Value bv = spec.Get("blocks");
      if (!bv.IsArray()) throw std::invalid_argument("blocks must be an array");
      auto arr = bv.As<Napi::Array>();
      std::vector<Block> blocks;
      for (uint32_t i = 0; i < arr.Length(); i++) {
        std::string where = "blocks[" + std::to_string(i) + "]";
        Napi::Value item = arr.Get(i);
        if (!item.IsObject()) throw std::invalid_argument(where + " must be an object");
        auto o = item.As<Napi::Object>();
        Block b;
        Napi::Value e = o.Get("expand");
        b.hasExpand = !e.IsUndefined() && !e.IsNull();
        if (b.hasExpand) b.expand = conv(e, where + ".expand");
        b.dw = conv(o.Get("dw"), where + ".dw");
        b.project = conv(o.Get("project"), where + ".project");
        b.residual = o.Get("residual").ToBoolean().Value();
        blocks.push_back(std::move(b));
      }
      std::vector<int> taps = ints(spec, "taps"), loc = ints(spec, "loc"), conf = ints(spec, "conf");
      Napi::Value ov = spec.Get("ops");
      if (!ov.IsArray()) throw std::invalid_argument("ops must be an array");
      auto oarr = ov.As<Napi::Array>();
      std::vector<extd::Op> ops;
      for (uint32_t i = 0; i < oarr.Length(); i++) {
        std::string where = "ops[" + std::to_string(i) + "]";
        Napi::Value item = oarr.Get(i);
        if (!item.IsObject()) throw std::invalid_argument(where + " must be an object");
        auto o = item.As<Napi::Object>();
        extd::Op op;
        std::string kind = o.Get("kind").ToString().Utf8Value();
        if (kind == "conv") op.kind = extd::Op::ConvOp, op.conv = conv(o.Get("conv"), where + ".conv");
        else if (kind == "add") op.kind = extd::Op::AddOp;
        else if (kind == "upsample") op.kind = extd::Op::UpsampleOp;
        else if (kind == "maxout") op.kind = extd::Op::MaxoutOp;
        else throw std::invalid_argument(where + ": unknown kind '" + kind + "'");
        op.a = integer(o, "a", where);
        if (op.kind == extd::Op::AddOp || op.kind == extd::Op::UpsampleOp) op.b = integer(o, "b", where);
        ops.push_back(std::move(op));
      }
      front_ = std::make_shared<Shared>(std::move(stem), std::move(blocks), std::move(taps), std::move(ops), std::move(loc), std::move(conf));
      if (spec.Get("int8").ToBoolean().Value()) front_->front.useInt8(true);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("extd kernels: ") + e.what());
    }
  }

 private:
  struct Shared {
    Shared(Conv stem, std::vector<Block> blocks, std::vector<int> taps, std::vector<extd::Op> ops, std::vector<int> loc, std::vector<int> conf)
        : front(std::move(stem), std::move(blocks), std::move(taps), std::move(ops), std::move(loc), std::move(conf)) {}
    extd::Network front;
    std::mutex mutex;
  };

  class RunWorker : public Napi::AsyncWorker {
   public:
    // input: a Float32Array (3 x h x w) or, with `mean`, a Uint8Array (h x w x 3 RGB).
    RunWorker(Napi::Function cb, std::shared_ptr<Shared> front, Napi::TypedArray input, const float* mean, Napi::Float32Array loc, Napi::Float32Array conf,
              std::vector<Napi::Float32Array> outputs, int h, int w, int threads)
        : Napi::AsyncWorker(cb), front_(std::move(front)), loc_(loc.Data()), conf_(conf.Data()), h_(h), w_(w), threads_(threads) {
      if (mean) {
        rgb_ = input.As<Napi::Uint8Array>().Data();
        for (int c = 0; c < 3; c++) mean_[c] = mean[c];
      } else {
        in_ = input.As<Napi::Float32Array>().Data();
      }
      // Keep the arrays alive until the worker is done with them.
      inRef_ = Napi::Persistent(input.As<Napi::Object>());
      outRefs_.push_back(Napi::Persistent(loc));
      outRefs_.push_back(Napi::Persistent(conf));
      for (Napi::Float32Array& o : outputs) out_.push_back(o.Data()), outRefs_.push_back(Napi::Persistent(o));
    }
    void Execute() override {
      try {
        std::lock_guard<std::mutex> lock(front_->mutex);
        if (rgb_) front_->front.runRgb(rgb_, mean_, h_, w_, out_, loc_, conf_, threads_);
        else front_->front.run(in_, h_, w_, out_, loc_, conf_, threads_);
      } catch (const std::exception& e) {
        SetError(std::string("extd kernels: ") + e.what());
      }
    }

   private:
    std::shared_ptr<Shared> front_;
    const float* in_ = nullptr;
    const uint8_t* rgb_ = nullptr;
    float mean_[3] = {0, 0, 0};
    float* loc_;
    float* conf_;
    std::vector<float*> out_;
    int h_, w_, threads_;
    Napi::Reference<Napi::Object> inRef_;
    std::vector<Napi::Reference<Napi::Float32Array>> outRefs_;
  };

  Napi::Value OutputShape(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
      throw Napi::TypeError::New(env, "extd kernels: outputShape(tap, height, width)");
    const int tap = info[0].As<Napi::Number>().Int32Value();
    const auto& taps = front_->front.taps();
    if (tap < 0 || tap >= int(taps.size())) throw Napi::RangeError::New(env, "extd kernels: no tap " + std::to_string(tap));
    int h, w;
    front_->front.outSize(taps[tap], info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(), h, w);
    auto a = Napi::Array::New(env, 3);
    a.Set(0u, front_->front.outChannels(taps[tap])), a.Set(1u, h), a.Set(2u, w);
    return a;
  }

  Napi::Value Priors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "extd kernels: priors(height, width)");
    return Napi::Number::New(env, double(front_->front.priors(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value())));
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(front_->mutex);
    front_->front.releaseMemory();
    return info.Env().Undefined();
  }

  Napi::Value ConfChannels(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), front_->front.confChannels()); }

  static Napi::Float32Array floatArray(Napi::Env env, Napi::Value v, size_t len, const std::string& what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, "extd kernels: " + what + " must be a Float32Array");
    auto a = v.As<Napi::Float32Array>();
    if (a.ElementLength() != len)
      throw Napi::RangeError::New(env, "extd kernels: " + what + " has " + std::to_string(a.ElementLength()) + " values, expected " + std::to_string(len));
    return a;
  }

  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 8 || !info[1].IsNumber() || !info[2].IsNumber() || !info[5].IsArray() || !info[6].IsNumber() || !info[7].IsFunction())
      throw Napi::TypeError::New(env, "extd kernels: run(input, height, width, loc, conf, tapOutputs, threads, callback)");
    const int h = info[1].As<Napi::Number>().Int32Value(), w = info[2].As<Napi::Number>().Int32Value();
    const int threads = info[6].As<Napi::Number>().Int32Value();
    if (h < 1 || w < 1 || threads < 1) throw Napi::RangeError::New(env, "extd kernels: height, width and threads must be positive");
    auto& net = front_->front;
    // An RGB image (Uint8Array, h x w x 3) takes the mean as a 9th argument; a Float32Array is the network input.
    const bool rgb = info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array;
    float mean[3] = {0, 0, 0};
    Napi::TypedArray input;
    if (rgb) {
      auto u8 = info[0].As<Napi::Uint8Array>();
      if (u8.ElementLength() != size_t(3) * h * w) throw Napi::RangeError::New(env, "extd kernels: input has " + std::to_string(u8.ElementLength()) + " bytes, expected " + std::to_string(size_t(3) * h * w));
      if (info.Length() < 9 || !info[8].IsTypedArray()) throw Napi::TypeError::New(env, "extd kernels: an RGB input needs the mean (Float32Array of 3) as the 9th argument");
      auto m = floatArray(env, info[8], 3, "mean");
      for (int c = 0; c < 3; c++) mean[c] = m.Data()[c];
      input = u8;
    } else {
      input = floatArray(env, info[0], size_t(3) * h * w, "input");
    }
    const size_t priors = net.priors(h, w);
    auto loc = floatArray(env, info[3], priors * 4, "loc");
    auto conf = floatArray(env, info[4], priors * net.confChannels(), "conf");
    auto arr = info[5].As<Napi::Array>();
    const auto& taps = net.taps();
    if (arr.Length() != 0 && arr.Length() != taps.size()) throw Napi::RangeError::New(env, "extd kernels: expected no tap outputs or " + std::to_string(taps.size()));
    std::vector<Napi::Float32Array> outputs;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      int oh, ow;
      net.outSize(taps[i], h, w, oh, ow);
      outputs.push_back(floatArray(env, arr.Get(i), size_t(net.outChannels(taps[i])) * oh * ow, "tap output " + std::to_string(i)));
    }
    auto* worker = new RunWorker(info[7].As<Napi::Function>(), front_, input, rgb ? mean : nullptr, loc, conf, outputs, h, w, threads);
    worker->Queue();
    return env.Undefined();
  }

  std::shared_ptr<Shared> front_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Network", NetworkWrap::Define(env));
  // Floats per vector this build uses (16: AVX-512, 8: AVX2, 4: SSE2 / NEON).
  exports.Set("vectorWidth", Napi::Number::New(env, extd::VL));
  // Whether this build runs the blocks' 1x1 convs in int8 (spec.int8; AVX512-VNNI).
  exports.Set("int8", Napi::Boolean::New(env, extd::kInt8));
  return exports;
}

}  // namespace

NODE_API_MODULE(extd_kernels, Init)
