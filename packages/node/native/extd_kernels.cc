// extd_kernels: extd's own float32 kernels for EXTD's backbone (see
// front.h), as a small N-API addon. The model's structure and weights come
// from TypeScript (src/runtime/native-front.ts builds the description from
// the model graph, with BatchNorm folded); this file only checks and copies
// them, and runs the stage on libuv's thread pool so detect() stays async.
//
//   new Backbone(spec)                spec: { stem: Conv, blocks: Block[], taps: number[] }
//   backbone.outputShape(tap, height, width) -> [C, h, w] of tap's block output
//   backbone.run(input, height, width, outputs, threads, callback)
//     input:   Float32Array 3 x height x width (NCHW, N = 1)
//     outputs: one Float32Array per tap, C x h x w (NCHW)
//     callback(err | null) once the outputs are written. Runs of one
//     Backbone are serialised by a mutex (its scratch memory is reused).
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>

#include "front.h"

namespace {

using extd::Block;
using extd::Conv;

std::vector<float> floats(const Napi::Object& o, const char* key, size_t expected, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw std::invalid_argument(where + "." + key + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != expected)
    throw std::invalid_argument(where + "." + key + " has " + std::to_string(a.ElementLength()) + " values, expected " + std::to_string(expected));
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
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

class FrontWrap : public Napi::ObjectWrap<FrontWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Backbone", {InstanceMethod<&FrontWrap::Run>("run"), InstanceMethod<&FrontWrap::OutputShape>("outputShape")});
  }

  explicit FrontWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FrontWrap>(info) {
    Napi::Env env = info.Env();
    try {
      if (!info[0].IsObject()) throw std::invalid_argument("Backbone: spec must be an object");
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
      Napi::Value tv = spec.Get("taps");
      if (!tv.IsArray()) throw std::invalid_argument("taps must be an array");
      auto tarr = tv.As<Napi::Array>();
      std::vector<int> taps;
      for (uint32_t i = 0; i < tarr.Length(); i++) taps.push_back(tarr.Get(i).As<Napi::Number>().Int32Value());
      front_ = std::make_shared<Shared>(std::move(stem), std::move(blocks), std::move(taps));
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("extd kernels: ") + e.what());
    }
  }

 private:
  struct Shared {
    Shared(Conv stem, std::vector<Block> blocks, std::vector<int> taps) : front(std::move(stem), std::move(blocks), std::move(taps)) {}
    extd::Backbone front;
    std::mutex mutex;
  };

  class RunWorker : public Napi::AsyncWorker {
   public:
    RunWorker(Napi::Function cb, std::shared_ptr<Shared> front, Napi::Float32Array input, std::vector<Napi::Float32Array> outputs, int h, int w, int threads)
        : Napi::AsyncWorker(cb), front_(std::move(front)), in_(input.Data()), h_(h), w_(w), threads_(threads) {
      // Keep the arrays alive until the worker is done with them.
      inRef_ = Napi::Persistent(input);
      for (Napi::Float32Array& o : outputs) out_.push_back(o.Data()), outRefs_.push_back(Napi::Persistent(o));
    }
    void Execute() override {
      try {
        std::lock_guard<std::mutex> lock(front_->mutex);
        front_->front.run(in_, h_, w_, out_, threads_);
      } catch (const std::exception& e) {
        SetError(std::string("extd kernels: ") + e.what());
      }
    }

   private:
    std::shared_ptr<Shared> front_;
    const float* in_;
    std::vector<float*> out_;
    int h_, w_, threads_;
    Napi::Reference<Napi::Float32Array> inRef_;
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

  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 6 || !info[0].IsTypedArray() || !info[3].IsArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[4].IsNumber() ||
        !info[5].IsFunction())
      throw Napi::TypeError::New(env, "extd kernels: run(input, height, width, outputs, threads, callback)");
    auto input = info[0].As<Napi::TypedArray>();
    if (input.TypedArrayType() != napi_float32_array) throw Napi::TypeError::New(env, "extd kernels: input must be a Float32Array");
    const int h = info[1].As<Napi::Number>().Int32Value(), w = info[2].As<Napi::Number>().Int32Value();
    const int threads = info[4].As<Napi::Number>().Int32Value();
    if (h < 1 || w < 1 || threads < 1) throw Napi::RangeError::New(env, "extd kernels: height, width and threads must be positive");
    if (input.ElementLength() != size_t(3) * h * w)
      throw Napi::RangeError::New(env, "extd kernels: input has " + std::to_string(input.ElementLength()) + " values, expected 3 x " + std::to_string(h) + " x " + std::to_string(w));
    auto arr = info[3].As<Napi::Array>();
    const auto& taps = front_->front.taps();
    if (arr.Length() != taps.size()) throw Napi::RangeError::New(env, "extd kernels: expected " + std::to_string(taps.size()) + " outputs");
    std::vector<Napi::Float32Array> outputs;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr.Get(i);
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Napi::TypeError::New(env, "extd kernels: outputs must be Float32Arrays");
      int oh, ow;
      front_->front.outSize(taps[i], h, w, oh, ow);
      const size_t len = size_t(front_->front.outChannels(taps[i])) * oh * ow;
      auto o = v.As<Napi::Float32Array>();
      if (o.ElementLength() != len)
        throw Napi::RangeError::New(env, "extd kernels: output " + std::to_string(i) + " has " + std::to_string(o.ElementLength()) + " values, expected " + std::to_string(len));
      outputs.push_back(o);
    }
    auto* worker = new RunWorker(info[5].As<Napi::Function>(), front_, input.As<Napi::Float32Array>(), outputs, h, w, threads);
    worker->Queue();
    return env.Undefined();
  }

  std::shared_ptr<Shared> front_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Backbone", FrontWrap::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(extd_kernels, Init)
