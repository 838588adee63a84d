// extd_torch: a thin N-API binding of libtorch (ATen + autograd) for training.
//
// What lives here: tensor handles, the differentiable operations the EXTD
// model and its loss need, SGD, threads, RNG and grad mode. What does not:
// model structure, matching, mining and the training loop, which are written
// in TypeScript (src/train/) on top of this API. The typed surface is
// declared in src/train/torch.ts; keep the two in step.
//
// Conventions:
// - Every entry point catches libtorch's c10::Error and rethrows it as a JS
//   Error whose message is one line: "<op>: <libtorch's message>".
// - Data crosses the boundary by copy into libtorch (the JS buffer may be
//   moved or detached by its owner at any time, and libtorch may free storage
//   on another thread, where releasing a JS reference is not allowed). Data
//   out is a copy too, except Tensor.dataView(), which aliases the storage.
// - Each handle tells V8 how many bytes it holds (AdjustExternalMemory) so
//   garbage collection keeps up with large activations; dispose() and scopes
//   free them deterministically. A scope holds the handles' tensors itself,
//   not weak references to the JS objects: Node runs an object's finalizer
//   only at a later turn of the event loop, so a handle the GC collected
//   inside a scope would otherwise keep its tensor until then (in a
//   synchronous training loop: forever).

#include <napi.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/GradMode.h>
#include <torch/version.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/profiler.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace {

// Threads used by default: libtorch picks 1 on this kind of machine, the
// training machines have 2 cores.
constexpr int kDefaultThreads = 2;

struct TensorSlot;

struct AddonData {
  Napi::FunctionReference tensorCtor;
  Napi::FunctionReference sgdCtor;
  // tidy-style scopes: each holds the slots of the handles created
  // while it was the innermost one.
  std::vector<std::vector<std::shared_ptr<TensorSlot>>> scopes;
};

std::string oneLine(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\n' || c == '\r') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string shapeString(at::IntArrayRef shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); i++) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

[[noreturn]] void typeError(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

// Runs fn and turns libtorch / std exceptions into JS errors named after op.
template <typename F>
auto guarded(Napi::Env env, const char* op, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string(op) + ": " + oneLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(op) + ": " + oneLine(e.what()));
  }
}


// ---------------------------------------------------------------- CPU allocator

// libtorch's CPU allocator, replaced at load time by one that counts live
// bytes (allocatorStats) and keeps freed blocks for reuse.
//
// Why: a training step allocates and frees the same few hundred activation
// and gradient buffers, with the same sizes, every step. Handed back to
// malloc, glibc returns large blocks to the kernel (each step then
// page-faults them in again; about 6 us per 4 KB page on a VM) and fragments
// the rest (libtorch asks for 64-byte-aligned blocks, and a freed block just
// too small for the next aligned request of its own size stays unused).
// Kept here by exact size (rounded up to 4 KB), a step reuses the previous
// step's blocks: no page faults and no growth, whatever malloc is preloaded.
//
// The cache is bounded by the largest number of live bytes seen so far (plus
// an eighth), so that live + cached stays near the peak a step needs anyway.
// When a freed block does not fit, the blocks that have waited longest are released
// first (sizes that stopped being used, e.g. after a change of input size).
//
// Every block carries a 64-byte header (its rounded size) in front of the
// data, which keeps the data 64-byte aligned (c10's gAlignment) and lets the
// raw deleter find the size: oneDNN's (ideep's) engine allocator goes through
// raw_allocate / raw_deallocate of this allocator.
class CachingCpuAllocator final : public at::Allocator {
 public:
  static constexpr size_t kHeader = 64;
  static constexpr size_t kPage = 4096;
  // Smaller blocks go straight to malloc (cheap, and not worth a cache slot).
  static constexpr size_t kCacheMin = 64 * 1024;

  static CachingCpuAllocator& instance() {
    static CachingCpuAllocator* a = new CachingCpuAllocator();  // never destroyed: blocks may outlive statics
    return *a;
  }

  at::DataPtr allocate(size_t n) const override {
    if (n == 0) return {nullptr, nullptr, &Free, at::Device(at::DeviceType::CPU)};
    void* data = const_cast<CachingCpuAllocator*>(this)->Take(n);
    return {data, data, &Free, at::Device(at::DeviceType::CPU)};
  }
  at::DeleterFnPtr raw_deleter() const override { return &Free; }

  static void Free(void* data) {
    if (data) instance().Give(data);
  }

  struct Stats {
    int64_t live, peak, cached, cacheLimit, allocations, reused;
  };
  Stats stats() {
    std::lock_guard<std::mutex> lock(m_);
    return {live_, peak_, cached_, LimitLocked(), allocations_, reused_};
  }
  void resetPeak() {
    std::lock_guard<std::mutex> lock(m_);
    peak_ = live_;
  }

 private:
  struct Cached {
    void* base;
    uint64_t seq;  // when it was freed: the oldest go first
  };

  static size_t Rounded(size_t n) { return (n + kHeader + kPage - 1) / kPage * kPage; }
  // An eighth above the largest live total, so that a step whose blocks are a
  // little more than its peak (sizes used at different times) does not
  // release and fault in the difference every step.
  int64_t LimitLocked() const { return peakEver_ + peakEver_ / 8; }

  void* Take(size_t n) {
    size_t total = n + kHeader >= kCacheMin ? Rounded(n) : n + kHeader;
    void* base = nullptr;
    {
      std::lock_guard<std::mutex> lock(m_);
      allocations_++;
      auto it = total >= kCacheMin ? free_.find(total) : free_.end();
      if (it != free_.end() && !it->second.empty()) {
        base = it->second.back().base;  // the most recently freed: still warm in cache
        it->second.pop_back();
        cached_ -= int64_t(total);
        reused_++;
      }
      live_ += int64_t(total);
      peak_ = std::max(peak_, live_);
      peakEver_ = std::max(peakEver_, live_);
    }
    if (!base && posix_memalign(&base, kHeader, total) != 0) {
      std::lock_guard<std::mutex> lock(m_);
      live_ -= int64_t(total);
      TORCH_CHECK(false, "CPU allocator: out of memory allocating ", n, " bytes");
    }
    *static_cast<size_t*>(base) = total;
    return static_cast<char*>(base) + kHeader;
  }

  void Give(void* data) {
    void* base = static_cast<char*>(data) - kHeader;
    size_t total = *static_cast<size_t*>(base);
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(m_);
      live_ -= int64_t(total);
      int64_t limit = LimitLocked();
      if (total >= kCacheMin && int64_t(total) <= limit) {
        EvictLocked(limit - int64_t(total), release);
        free_[total].push_back({base, seq_++});
        cached_ += int64_t(total);
      } else {
        release.push_back(base);
      }
    }
    for (void* b : release) std::free(b);
  }

  // Releases the longest-waiting blocks until at most `keep` bytes stay cached.
  void EvictLocked(int64_t keep, std::vector<void*>& out) {
    while (cached_ > keep) {
      auto oldest = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (!it->second.empty() && (oldest == free_.end() || it->second.front().seq < oldest->second.front().seq)) oldest = it;
      }
      if (oldest == free_.end()) break;
      out.push_back(oldest->second.front().base);
      oldest->second.erase(oldest->second.begin());
      cached_ -= int64_t(oldest->first);
      if (oldest->second.empty()) free_.erase(oldest);
    }
  }

  std::mutex m_;
  std::unordered_map<size_t, std::vector<Cached>> free_;
  int64_t live_ = 0, peak_ = 0, peakEver_ = 0, cached_ = 0, allocations_ = 0, reused_ = 0;
  uint64_t seq_ = 0;
};

// ---------------------------------------------------------------- dtypes

at::ScalarType parseDtype(Napi::Env env, const std::string& s, const char* op) {
  if (s == "float32") return at::kFloat;
  if (s == "float64") return at::kDouble;
  if (s == "int64") return at::kLong;
  if (s == "int32") return at::kInt;
  if (s == "int16") return at::kShort;
  if (s == "int8") return at::kChar;
  if (s == "uint8") return at::kByte;
  if (s == "bool") return at::kBool;
  typeError(env, std::string(op) + ": dtype '" + s +
                     "' is not supported (float32, float64, int64, int32, int16, int8, uint8, bool)");
}

const char* dtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: return "unknown";
  }
}

// ---------------------------------------------------------------- Tensor

// What a handle owns: its tensor reference and the bytes reported to V8.
// Shared by the handle and the scope it was created in, so that the scope can
// release the tensor whether or not the JS object is still alive.
struct TensorSlot {
  at::Tensor t;
  int64_t accounted = 0;
  bool disposed = false;

  void Release(Napi::Env env) {
    if (disposed) return;
    disposed = true;
    t.reset();
    if (accounted != 0) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -accounted);
      accounted = 0;
    }
  }
};

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object Make(Napi::Env env, at::Tensor t);
  static bool Is(Napi::Env env, const Napi::Value& v);

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override { Release(); }

  at::Tensor& Get(Napi::Env env, const char* op) {
    if (slot_->disposed) typeError(env, std::string(op) + ": tensor was disposed");
    return slot_->t;
  }
  // Env() stays valid while the wrapper exists, finalizers included.
  void Release() { slot_->Release(Env()); }
  TensorSlot* slot() const { return slot_.get(); }

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Numel(const Napi::CallbackInfo& info);
  Napi::Value RequiresGrad(const Napi::CallbackInfo& info);
  void SetRequiresGrad(const Napi::CallbackInfo& info, const Napi::Value& v);
  Napi::Value Grad(const Napi::CallbackInfo& info);
  Napi::Value IsLeaf(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value ClearGrad(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value DataView(const Napi::CallbackInfo& info);
  template <typename T, napi_typedarray_type JT>
  Napi::Value CopyOut(const Napi::CallbackInfo& info, at::ScalarType st, const char* op);
  Napi::Value ToFloat32Array(const Napi::CallbackInfo& info) {
    return CopyOut<float, napi_float32_array>(info, at::kFloat, "toFloat32Array");
  }
  Napi::Value ToFloat64Array(const Napi::CallbackInfo& info) {
    return CopyOut<double, napi_float64_array>(info, at::kDouble, "toFloat64Array");
  }
  Napi::Value ToInt32Array(const Napi::CallbackInfo& info) {
    return CopyOut<int32_t, napi_int32_array>(info, at::kInt, "toInt32Array");
  }
  Napi::Value ToBigInt64Array(const Napi::CallbackInfo& info) {
    return CopyOut<int64_t, napi_bigint64_array>(info, at::kLong, "toBigInt64Array");
  }
  Napi::Value ToUint8Array(const Napi::CallbackInfo& info) {
    return CopyOut<uint8_t, napi_uint8_array>(info, at::kByte, "toUint8Array");
  }

  std::shared_ptr<TensorSlot> slot_ = std::make_shared<TensorSlot>();
};

Napi::Function TensorWrap::Define(Napi::Env env) {
  return DefineClass(
      env, "Tensor",
      {
          InstanceAccessor<&TensorWrap::Shape>("shape"),
          InstanceAccessor<&TensorWrap::Dtype>("dtype"),
          InstanceAccessor<&TensorWrap::Numel>("numel"),
          InstanceAccessor<&TensorWrap::RequiresGrad, &TensorWrap::SetRequiresGrad>("requiresGrad"),
          InstanceAccessor<&TensorWrap::Grad>("grad"),
          InstanceAccessor<&TensorWrap::IsLeaf>("isLeaf"),
          InstanceAccessor<&TensorWrap::Disposed>("disposed"),
          InstanceMethod<&TensorWrap::Dispose>("dispose"),
          InstanceMethod<&TensorWrap::Backward>("backward"),
          InstanceMethod<&TensorWrap::ClearGrad>("clearGrad"),
          InstanceMethod<&TensorWrap::Item>("item"),
          InstanceMethod<&TensorWrap::CopyFrom>("copyFrom"),
          InstanceMethod<&TensorWrap::DataView>("dataView"),
          InstanceMethod<&TensorWrap::ToFloat32Array>("toFloat32Array"),
          InstanceMethod<&TensorWrap::ToFloat64Array>("toFloat64Array"),
          InstanceMethod<&TensorWrap::ToInt32Array>("toInt32Array"),
          InstanceMethod<&TensorWrap::ToBigInt64Array>("toBigInt64Array"),
          InstanceMethod<&TensorWrap::ToUint8Array>("toUint8Array"),
      });
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    typeError(env, "Tensor: not constructible from JS; use fromFloat32Array, zeros, randn, ...");
  }
  at::Tensor& t = slot_->t;
  t = std::move(*info[0].As<Napi::External<at::Tensor>>().Data());
  if (t.defined()) {
    slot_->accounted = static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
    if (slot_->accounted != 0) Napi::MemoryManagement::AdjustExternalMemory(env, slot_->accounted);
  }
  auto* data = env.GetInstanceData<AddonData>();
  if (!data->scopes.empty()) data->scopes.back().push_back(slot_);
}

Napi::Object TensorWrap::Make(Napi::Env env, at::Tensor t) {
  auto* data = env.GetInstanceData<AddonData>();
  return data->tensorCtor.New({Napi::External<at::Tensor>::New(env, &t)});
}

bool TensorWrap::Is(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) return false;
  auto* data = env.GetInstanceData<AddonData>();
  return v.As<Napi::Object>().InstanceOf(data->tensorCtor.Value());
}

Napi::Value TensorWrap::Shape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto sizes = Get(env, "shape").sizes();
  auto arr = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, double(sizes[i])));
  return arr;
}

Napi::Value TensorWrap::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtypeName(Get(info.Env(), "dtype").scalar_type()));
}

Napi::Value TensorWrap::Numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(Get(info.Env(), "numel").numel()));
}

Napi::Value TensorWrap::RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Get(info.Env(), "requiresGrad").requires_grad());
}

void TensorWrap::SetRequiresGrad(const Napi::CallbackInfo& info, const Napi::Value& v) {
  Napi::Env env = info.Env();
  guarded(env, "requiresGrad", [&] {
    at::Tensor& t = Get(env, "requiresGrad");
    // libtorch's C++ API accepts this on results of operations and ignores
    // it; PyTorch refuses, and so do we.
    if (!t.is_leaf()) {
      typeError(env, "requiresGrad: only leaf tensors (parameters, inputs) can change it, this one is the result of an "
                     "operation; use detach() for a copy without history");
    }
    t.set_requires_grad(v.ToBoolean().Value());
    return 0;
  });
}

Napi::Value TensorWrap::Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& g = Get(env, "grad").grad();
  if (!g.defined()) return env.Null();
  return Make(env, g);
}

Napi::Value TensorWrap::IsLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Get(info.Env(), "isLeaf").is_leaf());
}

Napi::Value TensorWrap::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), slot_->disposed);
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value TensorWrap::Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "backward", [&]() -> Napi::Value {
    at::Tensor& t = Get(env, "backward");
    at::Tensor gradient;
    if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined()) {
      if (!Is(env, info[0])) typeError(env, "backward: argument 1 (gradient) must be a Tensor or null");
      gradient = Unwrap(info[0].As<Napi::Object>())->Get(env, "backward");
    }
    bool retain = info.Length() > 1 && info[1].ToBoolean().Value();
    t.backward(gradient, retain);
    return env.Undefined();
  });
}

Napi::Value TensorWrap::ClearGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env, "clearGrad").mutable_grad().reset();
  return env.Undefined();
}

Napi::Value TensorWrap::Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "item", [&]() -> Napi::Value {
    at::Tensor& t = Get(env, "item");
    if (t.numel() != 1) {
      typeError(env, "item: tensor has shape " + shapeString(t.sizes()) + ", item() needs exactly one element");
    }
    if (t.scalar_type() == at::kBool) return Napi::Boolean::New(env, t.item<bool>());
    return Napi::Number::New(env, t.item<double>());
  });
}

Napi::Value TensorWrap::CopyFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "copyFrom", [&]() -> Napi::Value {
    at::Tensor& t = Get(env, "copyFrom");
    if (info.Length() < 1 || !Is(env, info[0])) typeError(env, "copyFrom: argument 1 must be a Tensor");
    at::Tensor& src = Unwrap(info[0].As<Napi::Object>())->Get(env, "copyFrom");
    if (!t.sizes().equals(src.sizes())) {
      typeError(env, "copyFrom: source has shape " + shapeString(src.sizes()) + ", target has shape " +
                         shapeString(t.sizes()));
    }
    // Loading weights into a parameter is not part of any graph.
    c10::NoGradGuard noGrad;
    t.copy_(src);
    return info.This();
  });
}

Napi::Value TensorWrap::DataView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "dataView", [&]() -> Napi::Value {
    at::Tensor& t = Get(env, "dataView");
    if (t.scalar_type() != at::kFloat || !t.is_contiguous()) {
      typeError(env, std::string("dataView: needs a contiguous float32 tensor, got ") + dtypeName(t.scalar_type()) +
                         (t.is_contiguous() ? "" : " (non-contiguous)"));
    }
    // The ArrayBuffer keeps its own reference to the tensor, so the storage
    // lives as long as either the view or any tensor sharing it.
    auto* keep = new at::Tensor(t);
    size_t bytes = size_t(t.numel()) * sizeof(float);
    auto buf = Napi::ArrayBuffer::New(env, t.data_ptr<float>(), bytes,
                                      [](Napi::Env, void*, at::Tensor* k) { delete k; }, keep);
    return Napi::Float32Array::New(env, size_t(t.numel()), buf, 0);
  });
}

template <typename T, napi_typedarray_type JT>
Napi::Value TensorWrap::CopyOut(const Napi::CallbackInfo& info, at::ScalarType st, const char* op) {
  Napi::Env env = info.Env();
  return guarded(env, op, [&]() -> Napi::Value {
    at::Tensor src = Get(env, op).detach().to(st).contiguous();
    size_t n = size_t(src.numel());
    auto out = Napi::TypedArrayOf<T>::New(env, n, JT);
    if (n) std::memcpy(out.Data(), src.data_ptr<T>(), n * sizeof(T));
    return out;
  });
}

// ---------------------------------------------------------------- argument helpers

struct Args {
  const Napi::CallbackInfo& info;
  Napi::Env env;
  const char* op;

  Args(const Napi::CallbackInfo& i, const char* o) : info(i), env(i.Env()), op(o) {}

  bool has(size_t i) const { return i < info.Length() && !info[i].IsUndefined() && !info[i].IsNull(); }

  [[noreturn]] void bad(size_t i, const char* name, const char* want) const {
    typeError(env, std::string(op) + ": argument " + std::to_string(i + 1) + " (" + name + ") must be " + want);
  }

  at::Tensor& tensor(size_t i, const char* name) const {
    if (i >= info.Length() || !TensorWrap::Is(env, info[i])) bad(i, name, "a Tensor");
    return TensorWrap::Unwrap(info[i].As<Napi::Object>())->Get(env, op);
  }
  c10::optional<at::Tensor> optTensor(size_t i, const char* name) const {
    if (!has(i)) return c10::nullopt;
    return tensor(i, name);
  }
  bool isTensor(size_t i) const { return i < info.Length() && TensorWrap::Is(env, info[i]); }
  // The second operand of arithmetic and comparisons when it is not a Tensor.
  at::Scalar scalarOperand(size_t i) const {
    if (i >= info.Length() || !info[i].IsNumber()) bad(i, "b", "a Tensor or a number");
    return toScalar(info[i].As<Napi::Number>().DoubleValue());
  }
  // An integral number stays integral so index tensors keep their dtype
  // (a double Scalar would promote int64 + 1 to float32).
  static at::Scalar toScalar(double d) {
    if (d == double(int64_t(d)) && std::abs(d) < 9007199254740992.0) return at::Scalar(int64_t(d));
    return at::Scalar(d);
  }

  double number(size_t i, const char* name) const {
    if (i >= info.Length() || !info[i].IsNumber()) bad(i, name, "a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }
  double number(size_t i, const char* name, double dflt) const { return has(i) ? number(i, name) : dflt; }
  c10::optional<double> optNumber(size_t i, const char* name) const {
    if (!has(i)) return c10::nullopt;
    return number(i, name);
  }
  int64_t integer(size_t i, const char* name) const {
    double d = number(i, name);
    if (d != double(int64_t(d))) bad(i, name, "an integer");
    return int64_t(d);
  }
  int64_t integer(size_t i, const char* name, int64_t dflt) const { return has(i) ? integer(i, name) : dflt; }
  bool boolean(size_t i, bool dflt) const { return has(i) ? info[i].ToBoolean().Value() : dflt; }
  std::string string(size_t i, const char* name, const char* dflt) const {
    if (!has(i)) return dflt;
    if (!info[i].IsString()) bad(i, name, "a string");
    return info[i].As<Napi::String>().Utf8Value();
  }

  // A number (repeated `repeat` times when repeat > 0) or an array of integers.
  std::vector<int64_t> ints(size_t i, const char* name, size_t repeat = 0) const {
    if (i < info.Length() && info[i].IsNumber() && repeat > 0) {
      return std::vector<int64_t>(repeat, integer(i, name));
    }
    if (i >= info.Length() || !info[i].IsArray()) bad(i, name, repeat ? "an integer or an array of integers" : "an array of integers");
    auto arr = info[i].As<Napi::Array>();
    std::vector<int64_t> out(arr.Length());
    for (uint32_t k = 0; k < arr.Length(); k++) {
      Napi::Value v = arr.Get(k);
      if (!v.IsNumber()) bad(i, name, "an array of integers");
      double d = v.As<Napi::Number>().DoubleValue();
      if (d != double(int64_t(d))) bad(i, name, "an array of integers");
      out[k] = int64_t(d);
    }
    return out;
  }
  std::vector<int64_t> ints(size_t i, const char* name, std::vector<int64_t> dflt, size_t repeat) const {
    return has(i) ? ints(i, name, repeat) : dflt;
  }

  std::vector<at::Tensor> tensors(size_t i, const char* name) const {
    if (i >= info.Length() || !info[i].IsArray()) bad(i, name, "an array of Tensors");
    auto arr = info[i].As<Napi::Array>();
    std::vector<at::Tensor> out;
    out.reserve(arr.Length());
    for (uint32_t k = 0; k < arr.Length(); k++) {
      Napi::Value v = arr.Get(k);
      if (!TensorWrap::Is(env, v)) bad(i, name, "an array of Tensors");
      out.push_back(TensorWrap::Unwrap(v.As<Napi::Object>())->Get(env, op));
    }
    return out;
  }

  at::ScalarType dtype(size_t i, const char* dflt) const { return parseDtype(env, string(i, "dtype", dflt), op); }

  int64_t reduction(size_t i) const {
    std::string r = string(i, "reduction", "sum");
    if (r == "sum") return at::Reduction::Sum;
    if (r == "mean") return at::Reduction::Mean;
    if (r == "none") return at::Reduction::None;
    typeError(env, std::string(op) + ": reduction '" + r + "' is not one of sum, mean, none");
  }
};

Napi::Value wrap(Napi::Env env, at::Tensor t) { return TensorWrap::Make(env, std::move(t)); }

Napi::Value wrapPair(Napi::Env env, std::tuple<at::Tensor, at::Tensor> p) {
  auto arr = Napi::Array::New(env, 2);
  arr.Set(0u, wrap(env, std::get<0>(p)));
  arr.Set(1u, wrap(env, std::get<1>(p)));
  return arr;
}

using OpFn = Napi::Value (*)(const Args&);

// ---------------------------------------------------------------- creation

Napi::Value fromTypedArray(const Args& a) {
  if (a.info.Length() < 1 || !a.info[0].IsTypedArray()) {
    a.bad(0, "data", "a Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array");
  }
  auto ta = a.info[0].As<Napi::TypedArray>();
  at::ScalarType st;
  switch (ta.TypedArrayType()) {
    case napi_float32_array: st = at::kFloat; break;
    case napi_float64_array: st = at::kDouble; break;
    case napi_int32_array: st = at::kInt; break;
    case napi_bigint64_array: st = at::kLong; break;
    case napi_uint8_array: st = at::kByte; break;
    case napi_int8_array: st = at::kChar; break;
    case napi_int16_array: st = at::kShort; break;
    default: a.bad(0, "data", "a Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array");
  }
  std::vector<int64_t> shape = a.ints(1, "shape");
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) typeError(a.env, std::string(a.op) + ": shape " + shapeString(shape) + " has a negative dimension");
    n *= d;
  }
  if (size_t(n) != ta.ElementLength()) {
    typeError(a.env, std::string(a.op) + ": data has " + std::to_string(ta.ElementLength()) + " elements, shape " +
                         shapeString(shape) + " needs " + std::to_string(n));
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  if (n) {
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    std::memcpy(t.data_ptr(), src, size_t(n) * t.element_size());
  }
  if (a.boolean(2, false)) t.set_requires_grad(true);
  return wrap(a.env, t);
}

at::TensorOptions creationOptions(const Args& a, size_t dtypeArg) {
  return at::TensorOptions().dtype(a.dtype(dtypeArg, "float32"));
}

Napi::Value zeros(const Args& a) { return wrap(a.env, at::zeros(a.ints(0, "shape"), creationOptions(a, 1))); }
Napi::Value ones(const Args& a) { return wrap(a.env, at::ones(a.ints(0, "shape"), creationOptions(a, 1))); }
Napi::Value full(const Args& a) {
  return wrap(a.env, at::full(a.ints(0, "shape"), a.number(1, "value"), creationOptions(a, 2)));
}
Napi::Value randn(const Args& a) { return wrap(a.env, at::randn(a.ints(0, "shape"), creationOptions(a, 1))); }
Napi::Value rand(const Args& a) { return wrap(a.env, at::rand(a.ints(0, "shape"), creationOptions(a, 1))); }

// ---------------------------------------------------------------- global state

Napi::Value manualSeed(const Args& a) {
  uint64_t seed;
  if (a.info.Length() > 0 && a.info[0].IsBigInt()) {
    bool lossless;
    seed = a.info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  } else {
    double d = a.number(0, "seed");
    if (d < 0 || d != double(uint64_t(d))) a.bad(0, "seed", "a non-negative integer");
    seed = uint64_t(d);
  }
  at::manual_seed(seed);
  return a.env.Undefined();
}

// Operator-level profile of everything libtorch runs between profileStart and
// profileStop, written as a Chrome trace (chrome://tracing) on stop. A
// development tool: bench/profile-train.ts sums it per operator.
std::unique_ptr<torch::autograd::profiler::RecordProfile> gProfile;

Napi::Value profileStart(const Args& a) {
  std::string path = a.string(0, "path", "");
  if (path.empty()) typeError(a.env, "profileStart: path is empty");
  if (gProfile) typeError(a.env, "profileStart: a profile is already running");
  // RecordProfile opens the file without checking; fail here, naming it, instead of writing nothing.
  if (!std::ofstream(path)) typeError(a.env, "profileStart: cannot write " + path);
  gProfile = std::make_unique<torch::autograd::profiler::RecordProfile>(path);
  return a.env.Undefined();
}

Napi::Value profileStop(const Args& a) {
  if (!gProfile) typeError(a.env, "profileStop: no profile is running");
  gProfile.reset();
  return a.env.Undefined();
}

Napi::Value setNumThreads(const Args& a) {
  int64_t n = a.integer(0, "threads");
  if (n < 1) typeError(a.env, "setNumThreads: threads is " + std::to_string(n) + ", must be >= 1");
  at::set_num_threads(int(n));
  return a.env.Undefined();
}

Napi::Value allocatorStats(const Args& a) {
  auto st = CachingCpuAllocator::instance().stats();
  auto o = Napi::Object::New(a.env);
  o.Set("live", double(st.live));
  o.Set("peak", double(st.peak));
  o.Set("cached", double(st.cached));
  o.Set("cacheLimit", double(st.cacheLimit));
  o.Set("allocations", double(st.allocations));
  o.Set("reused", double(st.reused));
  return o;
}

Napi::Value resetAllocatorPeak(const Args& a) {
  CachingCpuAllocator::instance().resetPeak();
  return a.env.Undefined();
}

Napi::Value getNumThreads(const Args& a) { return Napi::Number::New(a.env, at::get_num_threads()); }

// intraOpWorkers(): how many threads an at::parallel_for of this addon runs
// its range on (a range of 64 items, grain 1); at::get_num_threads() when the
// addon is built with OpenMP (binding.gyp), 1 when it is not, whatever the
// thread setting says.
Napi::Value intraOpWorkers(const Args& a) {
  std::vector<std::atomic<int>> seen(size_t(std::max(at::get_num_threads(), 1)));
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num();
    if (t >= 0 && size_t(t) < seen.size()) seen[size_t(t)] = 1;
    // Hold each worker's chunk long enough for the others to take theirs.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  });
  int n = 0;
  for (auto& v : seen) n += v.load();
  return Napi::Number::New(a.env, n);
}

Napi::Value setGradEnabled(const Args& a) {
  c10::GradMode::set_enabled(a.boolean(0, true));
  return a.env.Undefined();
}

Napi::Value isGradEnabled(const Args& a) { return Napi::Boolean::New(a.env, c10::GradMode::is_enabled()); }

Napi::Value version(const Args& a) {
  auto o = Napi::Object::New(a.env);
  o.Set("torch", TORCH_VERSION);
  o.Set("parallel", at::get_parallel_info());
  return o;
}

// Scopes: handles created inside startScope() ... endScope(keep) are disposed
// at endScope unless listed in keep (those move to the enclosing scope).
Napi::Value startScope(const Args& a) {
  a.env.GetInstanceData<AddonData>()->scopes.emplace_back();
  return a.env.Undefined();
}

Napi::Value endScope(const Args& a) {
  auto* data = a.env.GetInstanceData<AddonData>();
  if (data->scopes.empty()) typeError(a.env, "endScope: no scope is open");
  std::unordered_set<TensorSlot*> keep;
  if (a.has(0)) {
    if (!a.info[0].IsArray()) a.bad(0, "keep", "an array of Tensors");
    auto arr = a.info[0].As<Napi::Array>();
    for (uint32_t k = 0; k < arr.Length(); k++) {
      Napi::Value v = arr.Get(k);
      if (TensorWrap::Is(a.env, v)) keep.insert(TensorWrap::Unwrap(v.As<Napi::Object>())->slot());
    }
  }
  std::vector<std::shared_ptr<TensorSlot>> slots = std::move(data->scopes.back());
  data->scopes.pop_back();
  for (auto& slot : slots) {
    if (slot->disposed) continue;
    if (keep.count(slot.get())) {
      if (!data->scopes.empty()) data->scopes.back().push_back(std::move(slot));
    } else {
      slot->Release(a.env);
    }
  }
  return a.env.Undefined();
}

// ---------------------------------------------------------------- operations

// conv2d: below, after the depthwise 3x3 kernels it routes to.

Napi::Value batchNorm(const Args& a) {
  return wrap(a.env, at::batch_norm(a.tensor(0, "input"), a.optTensor(1, "weight"), a.optTensor(2, "bias"),
                                    a.optTensor(3, "runningMean"), a.optTensor(4, "runningVar"),
                                    a.boolean(5, false), a.number(6, "momentum", 0.1), a.number(7, "eps", 1e-5),
                                    false));
}

// PReLU with one slope for the whole tensor (the only kind EXTD has), as a
// custom autograd function built from libtorch's vectorised leaky-ReLU
// kernels: libtorch 1.13's general prelu / prelu_backward took 29% of an
// EXTD-32 training step (bench/profile-train.ts). Hand-written loops were no
// better here: compiled for the baseline x86-64 target, a select on the
// sign ran 8x slower on mixed-sign data than libtorch's AVX-512 kernels.
struct ScalarPrelu : public torch::autograd::Function<ScalarPrelu> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight) {
    at::Tensor x = input.contiguous();
    ctx->save_for_backward({x, weight});
    return at::leaky_relu(x, weight.item());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    at::Tensor g = grads[0].contiguous();
    at::Tensor gx = at::leaky_relu_backward(g, x, weight.item(), false);
    // d/dw = sum over the negative inputs of g * x = <g, min(x, 0)>.
    at::Tensor gw = at::dot(g.reshape({-1}), at::clamp_max(x, 0).reshape({-1})).reshape(weight.sizes());
    return {gx, gw};
  }
};

Napi::Value prelu(const Args& a) {
  at::Tensor input = a.tensor(0, "input");
  at::Tensor weight = a.tensor(1, "weight");
  if (weight.numel() == 1 && input.scalar_type() == weight.scalar_type() && at::isFloatingType(input.scalar_type()) &&
      input.device().is_cpu()) {
    return wrap(a.env, ScalarPrelu::apply(input, weight));
  }
  return wrap(a.env, at::prelu(input, weight));
}
// The backward pass of BatchNorm + single-slope PReLU in two sweeps per
// channel, without materialising the PReLU's input gradient. libtorch's
// composition makes five full passes over the maps (leaky-ReLU backward,
// clamp and dot for the slope, then the two of the BN backward) and writes
// two temporaries; here sweep 1 accumulates, per channel, sum(g),
// sum(g * (x - mean)) and the slope's sum(gz * min(z, 0)), where
// g = gz (z > 0) or a * gz is recomputed on the fly, and sweep 2 writes the
// input gradient, while the channel's maps are still in cache. Sums over
// blocks of 2048 in the vector lanes, added up in double.
//
// Compiled for AVX-512, AVX2 and baseline x86-64 (target_clones: the loader
// picks the best the CPU has); `#pragma omp simd` vectorises the reductions
// (-fopenmp-simd, no OpenMP runtime involved), and -fno-trapping-math lets
// the compiler turn the PReLU's select into a blend (no FP traps are used).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define EXTD_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EXTD_TARGET_CLONES
#endif

template <typename T>
inline __attribute__((always_inline)) void bnPreluSums(const T* z, const T* gz, const T* x, int64_t n, T a, T mean,
                                                      double* sums) {
  // Vector lanes accumulate blocks of 2048 in T, each block's sums added in double.
  constexpr int64_t kBlock = 2048;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    T s = 0, d = 0, neg = 0;
#pragma omp simd reduction(+ : s, d, neg)
    for (int64_t i = b; i < e; i++) {
      const T zi = z[i], gi = gz[i];
      const T g = gi * (zi > T(0) ? T(1) : a);
      s += g;
      d += g * (x[i] - mean);
      neg += gi * (zi < T(0) ? zi : T(0));
    }
    sums[0] += double(s);
    sums[1] += double(d);
    sums[2] += double(neg);
  }
}

template <typename T>
inline __attribute__((always_inline)) void bnPreluApply(const T* z, const T* gz, const T* x, T* gx, int64_t n, T a,
                                                       T mean, T gradMean, T k, T scale) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const T g = gz[i] * (z[i] > T(0) ? T(1) : a);
    gx[i] = (g - gradMean - (x[i] - mean) * k) * scale;
  }
}

EXTD_TARGET_CLONES void bnPreluSumsF(const float* z, const float* gz, const float* x, int64_t n, float a, float mean,
                                     double* sums) {
  bnPreluSums(z, gz, x, n, a, mean, sums);
}
EXTD_TARGET_CLONES void bnPreluSumsD(const double* z, const double* gz, const double* x, int64_t n, double a,
                                     double mean, double* sums) {
  bnPreluSums(z, gz, x, n, a, mean, sums);
}
EXTD_TARGET_CLONES void bnPreluApplyF(const float* z, const float* gz, const float* x, float* gx, int64_t n, float a,
                                      float mean, float gradMean, float k, float scale) {
  bnPreluApply(z, gz, x, gx, n, a, mean, gradMean, k, scale);
}
EXTD_TARGET_CLONES void bnPreluApplyD(const double* z, const double* gz, const double* x, double* gx, int64_t n,
                                      double a, double mean, double gradMean, double k, double scale) {
  bnPreluApply(z, gz, x, gx, n, a, mean, gradMean, k, scale);
}

inline void bnPreluSumsT(const float* z, const float* gz, const float* x, int64_t n, float a, float mean, double* s) {
  bnPreluSumsF(z, gz, x, n, a, mean, s);
}
inline void bnPreluSumsT(const double* z, const double* gz, const double* x, int64_t n, double a, double mean, double* s) {
  bnPreluSumsD(z, gz, x, n, a, mean, s);
}
inline void bnPreluApplyT(const float* z, const float* gz, const float* x, float* gx, int64_t n, float a, float mean,
                          float gm, float k, float scale) {
  bnPreluApplyF(z, gz, x, gx, n, a, mean, gm, k, scale);
}
inline void bnPreluApplyT(const double* z, const double* gz, const double* x, double* gx, int64_t n, double a,
                          double mean, double gm, double k, double scale) {
  bnPreluApplyD(z, gz, x, gx, n, a, mean, gm, k, scale);
}

// Forward of BatchNorm + single-slope PReLU, per channel while its maps are
// in cache: in training, the batch mean (sweep 1, shifted by the channel's
// first value) and the biased variance around it (sweep 2), the running statistics updated in place (momentum,
// unbiased variance, as torch.nn.BatchNorm2d); then one sweep writes
// z = prelu(x * alpha + beta) with alpha = gamma * invstd and
// beta = bias - mean * alpha. libtorch's batch norm makes the same two
// statistics passes and normalisation pass over the whole tensor, and the
// PReLU one more.
// Sum of x - shift, or of its square, accumulated in double lanes (the
// statistics decide every normalised value: float lanes cost 1e-5 relative
// in the running statistics of the golden trajectory, double lanes match
// libtorch's batch norm to rounding).
typedef float Vec8f __attribute__((vector_size(32)));
typedef double Vec8d __attribute__((vector_size(64)));

inline __attribute__((always_inline)) double shiftedSum(const float* x, int64_t n, float shift, bool square) {
  Vec8d acc = {0, 0, 0, 0, 0, 0, 0, 0};
  const Vec8f sh = {shift, shift, shift, shift, shift, shift, shift, shift};
  int64_t i = 0;
  if (square) {
    for (; i + 8 <= n; i += 8) {
      Vec8f v;
      std::memcpy(&v, x + i, sizeof v);
      const Vec8d d = __builtin_convertvector(v - sh, Vec8d);
      acc += d * d;
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      Vec8f v;
      std::memcpy(&v, x + i, sizeof v);
      acc += __builtin_convertvector(v - sh, Vec8d);
    }
  }
  double total = 0;
  for (int k = 0; k < 8; k++) total += acc[k];
  for (; i < n; i++) {
    const double d = double(x[i] - shift);
    total += square ? d * d : d;
  }
  return total;
}

inline __attribute__((always_inline)) double shiftedSum(const double* x, int64_t n, double shift, bool square) {
  double total = 0;
  if (square) {
#pragma omp simd reduction(+ : total)
    for (int64_t i = 0; i < n; i++) total += (x[i] - shift) * (x[i] - shift);
  } else {
#pragma omp simd reduction(+ : total)
    for (int64_t i = 0; i < n; i++) total += x[i] - shift;
  }
  return total;
}

template <typename T>
inline __attribute__((always_inline)) void affinePrelu(const T* x, T* z, int64_t n, T alpha, T beta, T a) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const T y = x[i] * alpha + beta;
    z[i] = y > T(0) ? y : y * a;
  }
}

EXTD_TARGET_CLONES double blockSumF(const float* x, int64_t n, float shift, bool square) {
  return shiftedSum(x, n, shift, square);
}
EXTD_TARGET_CLONES double blockSumD(const double* x, int64_t n, double shift, bool square) {
  return shiftedSum(x, n, shift, square);
}
EXTD_TARGET_CLONES void affinePreluF(const float* x, float* z, int64_t n, float alpha, float beta, float a) {
  affinePrelu(x, z, n, alpha, beta, a);
}
EXTD_TARGET_CLONES void affinePreluD(const double* x, double* z, int64_t n, double alpha, double beta, double a) {
  affinePrelu(x, z, n, alpha, beta, a);
}
inline double blockSumT(const float* x, int64_t n, float shift, bool sq) { return blockSumF(x, n, shift, sq); }
inline double blockSumT(const double* x, int64_t n, double shift, bool sq) { return blockSumD(x, n, shift, sq); }
inline void affinePreluT(const float* x, float* z, int64_t n, float al, float be, float a) {
  affinePreluF(x, z, n, al, be, a);
}
inline void affinePreluT(const double* x, double* z, int64_t n, double al, double be, double a) {
  affinePreluD(x, z, n, al, be, a);
}

// x: contiguous N x C x (spatial). Returns z and the statistics it was
// normalised with ([C] mean and invstd: the batch's in training, the running
// ones in eval).
template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> bnPreluForward(const at::Tensor& x, const at::Tensor& gamma,
                                                              const at::Tensor& beta, const at::Tensor& runningMean,
                                                              const at::Tensor& runningVar, double a, bool training,
                                                              double momentum, double eps) {
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t HW = C ? x.numel() / (N * C) : 0;
  const int64_t count = N * HW;
  at::Tensor z = at::empty_like(x);
  at::Tensor mean = at::empty({C}, x.options());
  at::Tensor invstd = at::empty({C}, x.options());
  at::Tensor g = gamma.contiguous(), b = beta.contiguous();
  TORCH_CHECK(runningMean.is_contiguous() && runningVar.is_contiguous() && runningMean.scalar_type() == x.scalar_type() &&
                  runningVar.scalar_type() == x.scalar_type(),
              "batchNormPrelu: running statistics must be contiguous and of the input's dtype");
  TORCH_CHECK(!training || count > 1, "batchNormPrelu: training mode needs more than one value per channel, got input of shape ",
              x.sizes());
  const T* xp = x.data_ptr<T>();
  T* zp = z.data_ptr<T>();
  const T* gp = g.data_ptr<T>();
  const T* bp = b.data_ptr<T>();
  T* rmp = runningMean.data_ptr<T>();
  T* rvp = runningVar.data_ptr<T>();
  T* mp = mean.data_ptr<T>();
  T* ip = invstd.data_ptr<T>();
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; c++) {
      double m, is;
      if (training) {
        // Sums of x - x0 (x0: the channel's first value), so that a mean far from zero compared with the
        // spread loses nothing to float lanes: mean = x0 + mean(x - x0).
        const T x0 = xp[c * HW];
        double sum = 0;
        for (int64_t n = 0; n < N; n++) sum += blockSumT(xp + (n * C + c) * HW, HW, x0, false);
        m = double(x0) + sum / double(count);
        double varSum = 0;
        for (int64_t n = 0; n < N; n++) varSum += blockSumT(xp + (n * C + c) * HW, HW, T(m), true);
        is = 1.0 / std::sqrt(varSum / double(count) + eps);
        rmp[c] = T(momentum * m + (1 - momentum) * double(rmp[c]));
        rvp[c] = T(momentum * varSum / double(count - 1) + (1 - momentum) * double(rvp[c]));
      } else {
        m = double(rmp[c]);
        is = 1.0 / std::sqrt(double(rvp[c]) + eps);
      }
      mp[c] = T(m);
      ip[c] = T(is);
      const T alpha = T(is * double(gp[c]));
      const T shift = T(double(bp[c]) - m * is * double(gp[c]));
      for (int64_t n = 0; n < N; n++) {
        const int64_t off = (n * C + c) * HW;
        affinePreluT(xp + off, zp + off, HW, alpha, shift, T(a));
      }
    }
  });
  return {z, mean, invstd};
}

// x, z, gz: contiguous N x C x (spatial); mean / invstd: the statistics the
// forward pass normalised with (batch ones in training, running ones in eval).
// Returns grad input, grad gamma, grad beta, grad slope.
template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bnPreluBackward(const at::Tensor& x, const at::Tensor& z,
                                                                           const at::Tensor& gz, const at::Tensor& gamma,
                                                                           const at::Tensor& mean,
                                                                           const at::Tensor& invstd, double a,
                                                                           bool training) {
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t HW = C ? x.numel() / (N * C) : 0;
  at::Tensor gx = at::empty_like(x);
  at::Tensor gGamma = at::empty({C}, x.options());
  at::Tensor gBeta = at::empty({C}, x.options());
  at::Tensor meanD = mean.to(at::kDouble).contiguous();
  at::Tensor invstdD = invstd.to(at::kDouble).contiguous();
  at::Tensor gammaD = gamma.to(at::kDouble).contiguous();
  std::vector<double> neg(size_t(C), 0.0);
  const T* zp = z.data_ptr<T>();
  const T* gzp = gz.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  T* gxp = gx.data_ptr<T>();
  const double* mp = meanD.data_ptr<double>();
  const double* ip = invstdD.data_ptr<double>();
  const double* wp = gammaD.data_ptr<double>();
  T* ggp = gGamma.data_ptr<T>();
  T* gbp = gBeta.data_ptr<T>();
  const T slope = T(a);
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; c++) {
      double sums[3] = {0, 0, 0};
      const T m = T(mp[c]);
      for (int64_t n = 0; n < N; n++) {
        int64_t off = (n * C + c) * HW;
        bnPreluSumsT(zp + off, gzp + off, xp + off, HW, slope, m, sums);
      }
      const double count = double(N * HW);
      const double is = ip[c];
      // Training: dx = (g - mean(g) - (x - mean) * is^2 * mean(g * (x - mean))) * is * gamma;
      // eval: the statistics are constants, dx = g * is * gamma.
      const T gradMean = training ? T(sums[0] / count) : T(0);
      const T k = training ? T(sums[1] * is * is / count) : T(0);
      const T scale = T(is * wp[c]);
      for (int64_t n = 0; n < N; n++) {
        int64_t off = (n * C + c) * HW;
        bnPreluApplyT(zp + off, gzp + off, xp + off, gxp + off, HW, slope, m, gradMean, k, scale);
      }
      ggp[c] = T(sums[1] * is);
      gbp[c] = T(sums[0]);
      neg[size_t(c)] = sums[2];
    }
  });
  double negSum = 0;
  for (double v : neg) negSum += v;
  at::Tensor gSlope = at::full({1}, negSum / a, x.options());
  return {gx, gGamma, gBeta, gSlope};
}

// BatchNorm followed by a single-slope PReLU, as one autograd node that
// keeps only the BN input and the PReLU output for backward (the BN output
// is overwritten in place by the PReLU). Unfused, three maps per conv unit
// stay alive until backward (conv output, BN output, PReLU output); fused,
// two: the PReLU output is what the next convolution saves anyway, and for
// a slope a > 0 it gives back everything the PReLU backward needs:
// z > 0 exactly where y > 0, and y = z / a where it is not. A third less
// activation memory per step. Forward: bnPreluForward, backward:
// bnPreluBackward (above), each working channel by channel while the
// channel's maps are in cache. The same numbers as libtorch's batch_norm
// followed by prelu, up to rounding (sums in another order).
struct BatchNormPrelu : public torch::autograd::Function<BatchNormPrelu> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& runningMean, const at::Tensor& runningVar,
                            const at::Tensor& slope, bool training, double momentum, double eps) {
    at::Tensor x = input.contiguous();
    double a = slope.item<double>();
    std::tuple<at::Tensor, at::Tensor, at::Tensor> r;
    if (x.scalar_type() == at::kFloat) {
      r = bnPreluForward<float>(x, weight, bias, runningMean, runningVar, a, training, momentum, eps);
    } else {
      r = bnPreluForward<double>(x, weight, bias, runningMean, runningVar, a, training, momentum, eps);
    }
    at::Tensor z = std::get<0>(r);
    ctx->save_for_backward({x, weight, z, slope});
    ctx->saved_data["mean"] = std::get<1>(r);
    ctx->saved_data["invstd"] = std::get<2>(r);
    ctx->saved_data["a"] = a;
    ctx->saved_data["training"] = training;
    return z;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& z = saved[2];
    const at::Tensor& slope = saved[3];
    double a = ctx->saved_data["a"].toDouble();
    bool training = ctx->saved_data["training"].toBool();
    at::Tensor gz = grads[0].contiguous();
    at::Tensor mean = ctx->saved_data["mean"].toTensor();
    at::Tensor invstd = ctx->saved_data["invstd"].toTensor();
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> g;
    if (x.scalar_type() == at::kFloat) {
      g = bnPreluBackward<float>(x, z, gz, weight, mean, invstd, a, training);
    } else {
      g = bnPreluBackward<double>(x, z, gz, weight, mean, invstd, a, training);
    }
    return {std::get<0>(g), std::get<1>(g), std::get<2>(g), at::Tensor(), at::Tensor(),
            std::get<3>(g).reshape(slope.sizes()), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// batchNormPrelu(input, weight, bias, runningMean, runningVar, slope, training, momentum, eps):
// prelu(batchNorm(...), slope), fused as above when the slope is one positive
// number (float input, CPU); otherwise the two operations one after the other.
Napi::Value batchNormPrelu(const Args& a) {
  at::Tensor input = a.tensor(0, "input");
  at::Tensor weight = a.tensor(1, "weight");
  at::Tensor bias = a.tensor(2, "bias");
  at::Tensor runningMean = a.tensor(3, "runningMean");
  at::Tensor runningVar = a.tensor(4, "runningVar");
  at::Tensor slope = a.tensor(5, "slope");
  bool training = a.boolean(6, false);
  double momentum = a.number(7, "momentum", 0.1);
  double eps = a.number(8, "eps", 1e-5);
  const auto st = input.scalar_type();
  bool fusable = slope.numel() == 1 && (st == at::kFloat || st == at::kDouble) && weight.scalar_type() == st &&
                 bias.scalar_type() == st && runningMean.scalar_type() == st && runningVar.scalar_type() == st &&
                 runningMean.is_contiguous() && runningVar.is_contiguous() &&
                 slope.scalar_type() == input.scalar_type() && input.device().is_cpu() && input.dim() >= 2 &&
                 slope.item<double>() > 0;
  if (fusable) {
    return wrap(a.env, BatchNormPrelu::apply(input, weight, bias, runningMean, runningVar, slope, training, momentum, eps));
  }
  at::Tensor y = at::batch_norm(input, weight, bias, runningMean, runningVar, training, momentum, eps, false);
  if (slope.numel() == 1 && input.scalar_type() == slope.scalar_type() && at::isFloatingType(input.scalar_type())) {
    return wrap(a.env, ScalarPrelu::apply(y, slope));
  }
  return wrap(a.env, at::prelu(y, slope));
}

// ---------------------------------------------------------------- depthwise 3x3 convolution

// Depthwise 3x3 convolution (groups == in channels == out channels, padding
// 1, dilation 1, stride 1 or 2), float32 on CPU, forward and backward: EXTD's
// inverted-residual blocks and FPN upsampling branch. libtorch 1.13 sends
// these to oneDNN (mkldnn_convolution), slow on NCHW float32 maps: at 1 thread
// a 4x128x160x160 map took 39 ms forward and 67 ms backward there
// (bench/conv-configs.ts), about 3 GMAC/s; the 42 depthwise convolutions were
// about a quarter of an EXTD-32 step (320x320, batch 4). (The step's
// _slow_conv2d calls, at 1 thread, are its 78 1x1 convolutions, not these.)
//
// Here every output row is one loop of nine multiply-adds over contiguous
// rows, vectorised along the row (`#pragma omp simd`, target_clones as
// above): stride 1 reads the input rows in place (a zero row above and below,
// the two border columns computed apart); stride 2 first copies each
// (image, channel) plane, zero-bordered, split into its even and odd columns.
// Gradients: the input's is, for stride 1, the same correlation of the output
// gradient with the kernel flipped, for stride 2 gathered per input row and
// column parity; the weight's (and bias's) are per-channel dot products,
// accumulated per row in float lanes and across rows in double.
// Planes run in parallel (at::parallel_for): forward over (image, channel),
// backward over channels (each owns its weight gradient, no reduction
// across threads).

// p ((H + 2) x (W + 2)): plane x (H x W) with a zero border.
inline void dwPad(const float* x, int64_t H, int64_t W, float* p) {
  const int64_t PW = W + 2;
  std::fill(p, p + PW, 0.f);
  for (int64_t y = 0; y < H; y++) {
    float* row = p + (y + 1) * PW;
    row[0] = 0.f;
    std::memcpy(row + 1, x + y * W, size_t(W) * sizeof(float));
    row[W + 1] = 0.f;
  }
  std::fill(p + (H + 1) * PW, p + (H + 2) * PW, 0.f);
}

// The zero-bordered plane P of x, split by column parity for stride 2 with Wo
// output columns: e ((H + 2) x (Wo + 1)) holds P's even columns, o ((H + 2) x
// Wo) its odd ones, so that output column j reads e[j], o[j], e[j + 1].
inline void dwPadSplit(const float* x, int64_t H, int64_t W, int64_t Wo, float* e, float* o) {
  const int64_t EW = Wo + 1, OW = Wo;
  std::fill(e, e + EW, 0.f);
  std::fill(o, o + OW, 0.f);
  for (int64_t y = 0; y < H; y++) {
    const float* xr = x + y * W;
    float* er = e + (y + 1) * EW;
    float* orow = o + (y + 1) * OW;
    er[0] = 0.f;  // P column 0: the left border
    for (int64_t j = 1; j < EW; j++) er[j] = 2 * j <= W ? xr[2 * j - 1] : 0.f;  // P column 2j = x column 2j - 1
    for (int64_t j = 0; j < OW; j++) orow[j] = xr[2 * j];                       // P column 2j + 1 = x column 2j
  }
  std::fill(e + (H + 1) * EW, e + (H + 2) * EW, 0.f);
  std::fill(o + (H + 1) * OW, o + (H + 2) * OW, 0.f);
}

// Stride 2: out (Ho x Wo) from the split padded plane (dwPadSplit).
EXTD_TARGET_CLONES void dwRowsS2(const float* e, const float* o, int64_t Ho, int64_t Wo, const float* w, float bias,
                                 float* out) {
  const int64_t EW = Wo + 1, OW = Wo;
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
  for (int64_t y = 0; y < Ho; y++) {
    const float *e0 = e + 2 * y * EW, *e1 = e0 + EW, *e2 = e1 + EW;
    const float *o0 = o + 2 * y * OW, *o1 = o0 + OW, *o2 = o1 + OW;
    float* r = out + y * Wo;
#pragma omp simd
    for (int64_t x = 0; x < Wo; x++) {
      r[x] = bias + w0 * e0[x] + w1 * o0[x] + w2 * e0[x + 1] + w3 * e1[x] + w4 * o1[x] + w5 * e1[x + 1] + w6 * e2[x] +
             w7 * o2[x] + w8 * e2[x + 1];
    }
  }
}

// Tap sum of output column x (0 <= x < W) of a stride-1 row: the scalar path for the two border columns.
inline float dwEdgeS1(const float* r0, const float* r1, const float* r2, int64_t W, const float* w, int64_t x) {
  float s = 0.f;
  for (int kx = 0; kx < 3; kx++) {
    const int64_t c = x + kx - 1;
    if (c < 0 || c >= W) continue;
    s += w[kx] * r0[c] + w[3 + kx] * r1[c] + w[6 + kx] * r2[c];
  }
  return s;
}

// Stride 1: out (H x W) = bias + the zero-padded correlation of plane x (H x W)
// with w (3x3); zeros: W zeros (the rows above and below the plane).
EXTD_TARGET_CLONES void dwPlaneS1(const float* x, int64_t H, int64_t W, const float* w, float bias, const float* zeros,
                                  float* out) {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
  for (int64_t y = 0; y < H; y++) {
    const float* r0 = y > 0 ? x + (y - 1) * W : zeros;
    const float* r1 = x + y * W;
    const float* r2 = y + 1 < H ? x + (y + 1) * W : zeros;
    float* o = out + y * W;
    o[0] = bias + dwEdgeS1(r0, r1, r2, W, w, 0);
#pragma omp simd
    for (int64_t i = 1; i < W - 1; i++) {
      o[i] = bias + w0 * r0[i - 1] + w1 * r0[i] + w2 * r0[i + 1] + w3 * r1[i - 1] + w4 * r1[i] + w5 * r1[i + 1] +
             w6 * r2[i - 1] + w7 * r2[i] + w8 * r2[i + 1];
    }
    if (W > 1) o[W - 1] = bias + dwEdgeS1(r0, r1, r2, W, w, W - 1);
  }
}

// acc[3 ky + kx] += <g, tap (ky, kx) of the zero-padded plane x>, acc[9] += sum(g); g and x are H x W.
EXTD_TARGET_CLONES void dwWeightSumsS1(const float* x, const float* g, int64_t H, int64_t W, const float* zeros,
                                       double* acc) {
  for (int64_t y = 0; y < H; y++) {
    const float* r0 = y > 0 ? x + (y - 1) * W : zeros;
    const float* r1 = x + y * W;
    const float* r2 = y + 1 < H ? x + (y + 1) * W : zeros;
    const float* gr = g + y * W;
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, a8 = 0, s = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7, a8, s)
    for (int64_t i = 1; i < W - 1; i++) {
      const float gv = gr[i];
      a0 += gv * r0[i - 1], a1 += gv * r0[i], a2 += gv * r0[i + 1];
      a3 += gv * r1[i - 1], a4 += gv * r1[i], a5 += gv * r1[i + 1];
      a6 += gv * r2[i - 1], a7 += gv * r2[i], a8 += gv * r2[i + 1];
      s += gv;
    }
    // The border columns (one when W == 1), taps outside the plane skipped.
    const float* rows[3] = {r0, r1, r2};
    float t[9] = {a0, a1, a2, a3, a4, a5, a6, a7, a8};
    for (int64_t e = 0; e < (W > 1 ? 2 : 1); e++) {
      const int64_t i = e == 0 ? 0 : W - 1;
      const float gv = gr[i];
      s += gv;
      for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
          const int64_t c = i + kx - 1;
          if (c >= 0 && c < W) t[3 * ky + kx] += gv * rows[ky][c];
        }
      }
    }
    for (int k = 0; k < 9; k++) acc[k] += t[k];
    acc[9] += s;
  }
}

// Stride 2: acc[3 ky + kx] += <g, tap (ky, kx)> of the split padded plane (dwPadSplit), acc[9] += sum(g); g is Ho x Wo.
EXTD_TARGET_CLONES void dwWeightSumsS2(const float* e, const float* o, const float* g, int64_t Ho, int64_t Wo,
                                       double* acc) {
  const int64_t EW = Wo + 1, OW = Wo;
  for (int64_t y = 0; y < Ho; y++) {
    const float *e0 = e + 2 * y * EW, *e1 = e0 + EW, *e2 = e1 + EW;
    const float *o0 = o + 2 * y * OW, *o1 = o0 + OW, *o2 = o1 + OW;
    const float* gr = g + y * Wo;
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, a8 = 0, s = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7, a8, s)
    for (int64_t x = 0; x < Wo; x++) {
      const float gv = gr[x];
      a0 += gv * e0[x], a1 += gv * o0[x], a2 += gv * e0[x + 1];
      a3 += gv * e1[x], a4 += gv * o1[x], a5 += gv * e1[x + 1];
      a6 += gv * e2[x], a7 += gv * o2[x], a8 += gv * e2[x + 1];
      s += gv;
    }
    acc[0] += a0, acc[1] += a1, acc[2] += a2, acc[3] += a3, acc[4] += a4;
    acc[5] += a5, acc[6] += a6, acc[7] += a7, acc[8] += a8, acc[9] += s;
  }
}

// Stride 2, input gradient gx (H x W) from the padded output gradient gp
// ((Ho + 2) x (Wo + 2), gp[r][c] = g[r - 1][c - 1]). Input row iy receives
// kernel row 1 from output row iy / 2 when even, rows 0 and 2 from output rows
// (iy + 1) / 2 and (iy - 1) / 2 when odd; columns likewise, so each row is
// computed as its even (ev) and odd (od) columns, then interleaved.
EXTD_TARGET_CLONES void dwInputGradS2(const float* gp, int64_t Wo, int64_t H, int64_t W, const float* w, float* gx,
                                      float* ev, float* od) {
  const int64_t GW = Wo + 2;
  const int64_t nE = (W + 1) / 2, nO = W / 2;
  for (int64_t iy = 0; iy < H; iy++) {
    if (iy % 2 == 0) {
      const float* g1 = gp + (iy / 2 + 1) * GW;  // kernel row 1
      const float k0 = w[3], k1 = w[4], k2 = w[5];
#pragma omp simd
      for (int64_t j = 0; j < nE; j++) ev[j] = k1 * g1[j + 1];
#pragma omp simd
      for (int64_t j = 0; j < nO; j++) od[j] = k0 * g1[j + 2] + k2 * g1[j + 1];
    } else {
      const int64_t m = (iy - 1) / 2;
      const float* ga = gp + (m + 2) * GW;  // kernel row 0
      const float* gb = gp + (m + 1) * GW;  // kernel row 2
#pragma omp simd
      for (int64_t j = 0; j < nE; j++) ev[j] = w[1] * ga[j + 1] + w[7] * gb[j + 1];
#pragma omp simd
      for (int64_t j = 0; j < nO; j++) od[j] = w[0] * ga[j + 2] + w[2] * ga[j + 1] + w[6] * gb[j + 2] + w[8] * gb[j + 1];
    }
    float* r = gx + iy * W;
#pragma omp simd
    for (int64_t j = 0; j < nO; j++) {
      r[2 * j] = ev[j];
      r[2 * j + 1] = od[j];
    }
    if (W % 2) r[W - 1] = ev[nE - 1];
  }
}

inline int64_t dwOutSize(int64_t n, int64_t stride) { return (n - 1) / stride + 1; }

// x: contiguous N x C x H x W; w: contiguous C x 1 x 3 x 3; bias: [C] or undefined.
at::Tensor dwForward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, int64_t stride) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwOutSize(H, stride), Wo = dwOutSize(W, stride);
  at::Tensor y = at::empty({N, C, Ho, Wo}, x.options());
  at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const int64_t bufSize = stride == 1 ? W : (H + 2) * (2 * Wo + 1);  // stride 1: a zero row
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(bufSize));
    for (int64_t nc = begin; nc < end; nc++) {
      const int64_t c = nc % C;
      const float* xc = xp + nc * H * W;
      float* yc = yp + nc * Ho * Wo;
      const float bc = bp ? bp[c] : 0.f;
      if (stride == 1) {
        dwPlaneS1(xc, H, W, wp + 9 * c, bc, buf.data(), yc);
      } else {
        float* e = buf.data();
        float* o = e + (H + 2) * (Wo + 1);
        dwPadSplit(xc, H, W, Wo, e, o);
        dwRowsS2(e, o, Ho, Wo, wp + 9 * c, bc, yc);
      }
    }
  });
  return y;
}

// Gradients of dwForward w.r.t. input, weight and bias (each only when asked for).
std::tuple<at::Tensor, at::Tensor, at::Tensor> dwBackward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& gy,
                                                          int64_t stride, bool wantInput, bool wantWeight, bool wantBias) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = gy.size(2), Wo = gy.size(3);
  at::Tensor gx = wantInput ? at::empty_like(x) : at::Tensor();
  at::Tensor gw = wantWeight ? at::empty_like(w) : at::Tensor();
  at::Tensor gb = wantBias ? at::empty({C}, x.options()) : at::Tensor();
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* gyp = gy.data_ptr<float>();
  float* gxp = wantInput ? gx.data_ptr<float>() : nullptr;
  float* gwp = wantWeight ? gw.data_ptr<float>() : nullptr;
  float* gbp = wantBias ? gb.data_ptr<float>() : nullptr;
  const bool sums = wantWeight || wantBias;
  // Stride 1: a zero row; stride 2: the split padded input plane, and the padded output gradient plane
  // with two rows for dwInputGradS2.
  const int64_t xBuf = stride == 1 ? W : (H + 2) * (2 * Wo + 1);
  const int64_t gBuf = stride == 1 ? 0 : (Ho + 2) * (Wo + 2) + 2 * (W + 1);
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> xb(static_cast<size_t>(xBuf)), gb2(static_cast<size_t>(gBuf));
    for (int64_t c = begin; c < end; c++) {
      const float* wc = wp + 9 * c;
      // The kernel flipped in both axes: stride 1's input gradient is the correlation with it.
      const float flipped[9] = {wc[8], wc[7], wc[6], wc[5], wc[4], wc[3], wc[2], wc[1], wc[0]};
      double acc[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t n = 0; n < N; n++) {
        const int64_t nc = n * C + c;
        const float* g = gyp + nc * Ho * Wo;
        if (wantInput) {
          if (stride == 1) {
            dwPlaneS1(g, H, W, flipped, 0.f, xb.data(), gxp + nc * H * W);
          } else {
            float* gp = gb2.data();
            dwPad(g, Ho, Wo, gp);
            float* ev = gp + (Ho + 2) * (Wo + 2);
            dwInputGradS2(gp, Wo, H, W, wc, gxp + nc * H * W, ev, ev + W + 1);
          }
        }
        if (sums) {
          const float* xc = xp + nc * H * W;
          if (stride == 1) {
            dwWeightSumsS1(xc, g, H, W, xb.data(), acc);
          } else {
            float* e = xb.data();
            float* o = e + (H + 2) * (Wo + 1);
            dwPadSplit(xc, H, W, Wo, e, o);
            dwWeightSumsS2(e, o, g, Ho, Wo, acc);
          }
        }
      }
      if (wantWeight) {
        for (int k = 0; k < 9; k++) gwp[9 * c + k] = float(acc[k]);
      }
      if (wantBias) gbp[c] = float(acc[9]);
    }
  });
  return {gx, gw, gb};
}

struct Depthwise3x3 : public torch::autograd::Function<Depthwise3x3> {
  // bias: absent or undefined without one (an optional, which autograd
  // treats as not an input: an undefined at::Tensor would count as one).
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, int64_t stride) {
    at::Tensor x = input.contiguous();
    at::Tensor w = weight.contiguous();
    at::Tensor b = bias && bias->defined() ? *bias : at::Tensor();
    ctx->save_for_backward({x, w});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["bias"] = b.defined();
    return dwForward(x, w, b, stride);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const bool hasBias = ctx->saved_data["bias"].toBool();
    at::Tensor gy = grads[0].contiguous();
    auto g = dwBackward(saved[0], saved[1], gy, stride, ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                        hasBias && ctx->needs_input_grad(2));
    return {std::get<0>(g), std::get<1>(g), std::get<2>(g), at::Tensor()};
  }
};

// True when conv2d's arguments are a depthwise 3x3 convolution Depthwise3x3 computes.
bool isDepthwise3x3(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                    const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                    const std::vector<int64_t>& dilation, int64_t groups) {
  if (input.dim() != 4 || weight.dim() != 4) return false;
  const int64_t C = input.size(1);
  if (groups != C || C < 1 || weight.size(0) != C || weight.size(1) != 1 || weight.size(2) != 3 || weight.size(3) != 3) {
    return false;
  }
  if (stride.size() != 2 || stride[0] != stride[1] || (stride[0] != 1 && stride[0] != 2)) return false;
  if (padding != std::vector<int64_t>{1, 1} || dilation != std::vector<int64_t>{1, 1}) return false;
  if (input.size(0) < 1 || input.size(2) < 1 || input.size(3) < 1) return false;
  if (input.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat || !input.device().is_cpu() ||
      !weight.device().is_cpu() || input.layout() != at::kStrided || weight.layout() != at::kStrided) {
    return false;
  }
  if (bias && bias->defined()) {
    if (bias->scalar_type() != at::kFloat || !bias->device().is_cpu() || bias->dim() != 1 || bias->size(0) != C) return false;
  }
  return true;
}

// conv2d(input, weight, bias, stride, padding, groups, dilation): libtorch's,
// except depthwise 3x3 convolutions (isDepthwise3x3), which run Depthwise3x3.
Napi::Value conv2d(const Args& a) {
  at::Tensor input = a.tensor(0, "input");
  at::Tensor weight = a.tensor(1, "weight");
  c10::optional<at::Tensor> bias = a.optTensor(2, "bias");
  std::vector<int64_t> stride = a.ints(3, "stride", {1, 1}, 2);
  std::vector<int64_t> padding = a.ints(4, "padding", {0, 0}, 2);
  std::vector<int64_t> dilation = a.ints(6, "dilation", {1, 1}, 2);
  int64_t groups = a.integer(5, "groups", 1);
  if (isDepthwise3x3(input, weight, bias, stride, padding, dilation, groups)) {
    return wrap(a.env, Depthwise3x3::apply(input, weight, bias, stride[0]));
  }
  return wrap(a.env, at::conv2d(input, weight, bias, stride, padding, dilation, groups));
}

Napi::Value leakyRelu(const Args& a) {
  return wrap(a.env, at::leaky_relu(a.tensor(0, "input"), a.number(1, "slope", 0.01)));
}
Napi::Value relu(const Args& a) { return wrap(a.env, at::relu(a.tensor(0, "input"))); }

Napi::Value upsampleBilinear2d(const Args& a) {
  auto size = a.ints(1, "size");
  if (size.size() != 2) a.bad(1, "size", "[height, width]");
  return wrap(a.env, at::upsample_bilinear2d(a.tensor(0, "input"), size, a.boolean(2, false)));
}

// Binary arithmetic: the second operand is a Tensor (broadcast) or a number.
Napi::Value add(const Args& a) {
  at::Scalar alpha = Args::toScalar(a.number(2, "alpha", 1.0));
  if (a.isTensor(1)) return wrap(a.env, at::add(a.tensor(0, "a"), a.tensor(1, "b"), alpha));
  return wrap(a.env, at::add(a.tensor(0, "a"), a.scalarOperand(1), alpha));
}
Napi::Value sub(const Args& a) {
  at::Scalar alpha = Args::toScalar(a.number(2, "alpha", 1.0));
  if (a.isTensor(1)) return wrap(a.env, at::sub(a.tensor(0, "a"), a.tensor(1, "b"), alpha));
  return wrap(a.env, at::sub(a.tensor(0, "a"), a.scalarOperand(1), alpha));
}
Napi::Value mul(const Args& a) {
  if (a.isTensor(1)) return wrap(a.env, at::mul(a.tensor(0, "a"), a.tensor(1, "b")));
  return wrap(a.env, at::mul(a.tensor(0, "a"), a.scalarOperand(1)));
}
Napi::Value div(const Args& a) {
  if (a.isTensor(1)) return wrap(a.env, at::div(a.tensor(0, "a"), a.tensor(1, "b")));
  return wrap(a.env, at::div(a.tensor(0, "a"), a.scalarOperand(1)));
}

Napi::Value sqrt(const Args& a) { return wrap(a.env, at::sqrt(a.tensor(0, "input"))); }
Napi::Value clamp(const Args& a) {
  auto lo = a.optNumber(1, "min");
  auto hi = a.optNumber(2, "max");
  c10::optional<at::Scalar> slo, shi;
  if (lo) slo = at::Scalar(*lo);
  if (hi) shi = at::Scalar(*hi);
  return wrap(a.env, at::clamp(a.tensor(0, "input"), slo, shi));
}

Napi::Value cat(const Args& a) { return wrap(a.env, at::cat(a.tensors(0, "tensors"), a.integer(1, "dim", 0))); }
Napi::Value stack(const Args& a) { return wrap(a.env, at::stack(a.tensors(0, "tensors"), a.integer(1, "dim", 0))); }

Napi::Value max(const Args& a) {
  if (!a.has(1)) return wrap(a.env, at::max(a.tensor(0, "input")));
  return wrapPair(a.env, at::max(a.tensor(0, "input"), a.integer(1, "dim"), a.boolean(2, false)));
}

Napi::Value narrow(const Args& a) {
  return wrap(a.env, at::narrow(a.tensor(0, "input"), a.integer(1, "dim"), a.integer(2, "start"),
                                a.integer(3, "length")));
}
Napi::Value reshape(const Args& a) { return wrap(a.env, at::reshape(a.tensor(0, "input"), a.ints(1, "shape"))); }
Napi::Value permute(const Args& a) { return wrap(a.env, at::permute(a.tensor(0, "input"), a.ints(1, "dims"))); }

Napi::Value indexSelect(const Args& a) {
  return wrap(a.env, at::index_select(a.tensor(0, "input"), a.integer(1, "dim"), a.tensor(2, "index")));
}

Napi::Value smoothL1Loss(const Args& a) {
  return wrap(a.env, at::smooth_l1_loss(a.tensor(0, "input"), a.tensor(1, "target"), a.reduction(2),
                                        a.number(3, "beta", 1.0)));
}
Napi::Value crossEntropy(const Args& a) {
  return wrap(a.env, at::cross_entropy_loss(a.tensor(0, "input"), a.tensor(1, "target"), {}, a.reduction(2)));
}

Napi::Value sum(const Args& a) {
  if (!a.has(1)) return wrap(a.env, at::sum(a.tensor(0, "input")));
  return wrap(a.env, at::sum(a.tensor(0, "input"), a.ints(1, "dims", 1), a.boolean(2, false)));
}
Napi::Value mean(const Args& a) {
  if (!a.has(1)) return wrap(a.env, at::mean(a.tensor(0, "input")));
  return wrap(a.env, at::mean(a.tensor(0, "input"), a.ints(1, "dims", 1), a.boolean(2, false)));
}

Napi::Value toDtype(const Args& a) { return wrap(a.env, a.tensor(0, "input").to(a.dtype(1, "float32"))); }
Napi::Value clone(const Args& a) { return wrap(a.env, a.tensor(0, "input").clone()); }
Napi::Value detach(const Args& a) { return wrap(a.env, a.tensor(0, "input").detach()); }

// ---------------------------------------------------------------- SGD

// PyTorch's torch.optim.SGD (1.13) step, per parameter p with gradient g:
//   g += weightDecay * p
//   buf = g (first step) | momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
class SGDWrap : public Napi::ObjectWrap<SGDWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "SGD",
                       {
                           InstanceMethod<&SGDWrap::Step>("step"),
                           InstanceMethod<&SGDWrap::ZeroGrad>("zeroGrad"),
                           InstanceMethod<&SGDWrap::GetBuffers>("getMomentumBuffers"),
                           InstanceMethod<&SGDWrap::SetBuffers>("setMomentumBuffers"),
                           InstanceAccessor<&SGDWrap::GetLr, &SGDWrap::SetLr>("lr"),
                           InstanceAccessor<&SGDWrap::GetMomentum>("momentum"),
                           InstanceAccessor<&SGDWrap::GetWeightDecay>("weightDecay"),
                           InstanceAccessor<&SGDWrap::GetDampening>("dampening"),
                           InstanceAccessor<&SGDWrap::GetNesterov>("nesterov"),
                           InstanceAccessor<&SGDWrap::GetCount>("paramCount"),
                       });
  }

  explicit SGDWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SGDWrap>(info) {
    Napi::Env env = info.Env();
    guarded(env, "SGD", [&] {
      Args a(info, "SGD");
      params_ = a.tensors(0, "params");
      if (!a.has(1) || !info[1].IsObject()) a.bad(1, "options", "an object { lr, momentum, weightDecay, dampening, nesterov }");
      auto o = info[1].As<Napi::Object>();
      auto num = [&](const char* key, double dflt) {
        Napi::Value v = o.Get(key);
        if (v.IsUndefined()) return dflt;
        if (!v.IsNumber()) typeError(env, std::string("SGD: option ") + key + " must be a number");
        return v.As<Napi::Number>().DoubleValue();
      };
      lr_ = num("lr", -1);
      if (!(lr_ >= 0)) typeError(env, "SGD: option lr is required and must be >= 0");
      momentum_ = num("momentum", 0);
      weightDecay_ = num("weightDecay", 0);
      dampening_ = num("dampening", 0);
      nesterov_ = o.Get("nesterov").ToBoolean().Value();
      if (momentum_ < 0 || weightDecay_ < 0) typeError(env, "SGD: momentum and weightDecay must be >= 0");
      if (nesterov_ && (momentum_ <= 0 || dampening_ != 0)) {
        typeError(env, "SGD: nesterov needs momentum > 0 and dampening 0");
      }
      bufs_.resize(params_.size());
      return 0;
    });
  }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "SGD.step", [&]() -> Napi::Value {
      c10::NoGradGuard noGrad;
      for (size_t i = 0; i < params_.size(); i++) {
        at::Tensor& p = params_[i];
        if (!p.grad().defined()) continue;
        at::Tensor d = p.grad();
        if (weightDecay_ != 0) d = d.add(p, weightDecay_);
        if (momentum_ != 0) {
          if (!bufs_[i].defined()) {
            bufs_[i] = d.clone().detach();
          } else {
            bufs_[i].mul_(momentum_).add_(d, 1 - dampening_);
          }
          d = nesterov_ ? d.add(bufs_[i], momentum_) : bufs_[i];
        }
        p.add_(d, -lr_);
      }
      return info.Env().Undefined();
    });
  }

  // Default sets gradients to none (PyTorch's set_to_none=True): cheaper, and
  // step() skips parameters that received no gradient.
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    bool toNone = !(info.Length() > 0 && info[0].IsBoolean() && !info[0].As<Napi::Boolean>().Value());
    return guarded(info.Env(), "SGD.zeroGrad", [&]() -> Napi::Value {
      for (auto& p : params_) {
        if (!p.grad().defined()) continue;
        if (toNone) {
          p.mutable_grad().reset();
        } else {
          p.mutable_grad().detach_();
          p.mutable_grad().zero_();
        }
      }
      return info.Env().Undefined();
    });
  }

  Napi::Value GetBuffers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, "SGD.getMomentumBuffers", [&]() -> Napi::Value {
      auto arr = Napi::Array::New(env, bufs_.size());
      for (size_t i = 0; i < bufs_.size(); i++) {
        arr.Set(uint32_t(i), bufs_[i].defined() ? wrap(env, bufs_[i].clone()) : env.Null());
      }
      return arr;
    });
  }

  Napi::Value SetBuffers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, "SGD.setMomentumBuffers", [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsArray()) {
        typeError(env, "SGD.setMomentumBuffers: argument 1 must be an array of Tensor | null");
      }
      auto arr = info[0].As<Napi::Array>();
      if (arr.Length() != params_.size()) {
        typeError(env, "SGD.setMomentumBuffers: got " + std::to_string(arr.Length()) + " buffers, the optimiser has " +
                           std::to_string(params_.size()) + " parameters");
      }
      std::vector<at::Tensor> next(params_.size());
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value v = arr.Get(i);
        if (v.IsNull() || v.IsUndefined()) continue;
        if (!TensorWrap::Is(env, v)) typeError(env, "SGD.setMomentumBuffers: entry " + std::to_string(i) + " is not a Tensor or null");
        at::Tensor& b = TensorWrap::Unwrap(v.As<Napi::Object>())->Get(env, "SGD.setMomentumBuffers");
        if (!b.sizes().equals(params_[i].sizes())) {
          typeError(env, "SGD.setMomentumBuffers: buffer " + std::to_string(i) + " has shape " + shapeString(b.sizes()) +
                             ", parameter " + std::to_string(i) + " has shape " + shapeString(params_[i].sizes()));
        }
        next[i] = b.detach().to(params_[i].scalar_type()).clone();
      }
      bufs_ = std::move(next);
      return env.Undefined();
    });
  }

  Napi::Value GetLr(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), lr_); }
  void SetLr(const Napi::CallbackInfo& info, const Napi::Value& v) {
    if (!v.IsNumber() || !(v.As<Napi::Number>().DoubleValue() >= 0)) typeError(info.Env(), "SGD.lr must be a number >= 0");
    lr_ = v.As<Napi::Number>().DoubleValue();
  }
  Napi::Value GetMomentum(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), momentum_); }
  Napi::Value GetWeightDecay(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), weightDecay_); }
  Napi::Value GetDampening(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), dampening_); }
  Napi::Value GetNesterov(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), nesterov_); }
  Napi::Value GetCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(params_.size())); }

  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> bufs_;
  double lr_ = 0, momentum_ = 0, weightDecay_ = 0, dampening_ = 0;
  bool nesterov_ = false;
};

// ---------------------------------------------------------------- module

struct OpEntry {
  const char* name;
  OpFn fn;
};

const OpEntry kOps[] = {
    {"fromTypedArray", fromTypedArray},
    {"zeros", zeros},
    {"ones", ones},
    {"full", full},
    {"randn", randn},
    {"rand", rand},
    {"manualSeed", manualSeed},
    {"setNumThreads", setNumThreads},
    {"profileStart", profileStart},
    {"profileStop", profileStop},
    {"getNumThreads", getNumThreads},
    {"intraOpWorkers", intraOpWorkers},
    {"allocatorStats", allocatorStats},
    {"resetAllocatorPeak", resetAllocatorPeak},
    {"setGradEnabled", setGradEnabled},
    {"isGradEnabled", isGradEnabled},
    {"version", version},
    {"startScope", startScope},
    {"endScope", endScope},
    {"conv2d", conv2d},
    {"batchNorm", batchNorm},
    {"prelu", prelu},
    {"batchNormPrelu", batchNormPrelu},
    {"leakyRelu", leakyRelu},
    {"relu", relu},
    {"upsampleBilinear2d", upsampleBilinear2d},
    {"add", add},
    {"sub", sub},
    {"mul", mul},
    {"div", div},
    {"sqrt", sqrt},
    {"clamp", clamp},
    {"cat", cat},
    {"stack", stack},
    {"max", max},
    {"narrow", narrow},
    {"reshape", reshape},
    {"permute", permute},
    {"indexSelect", indexSelect},
    {"smoothL1Loss", smoothL1Loss},
    {"crossEntropy", crossEntropy},
    {"sum", sum},
    {"mean", mean},
    {"toDtype", toDtype},
    {"clone", clone},
    {"detach", detach},
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);

  Napi::Function tensorClass = TensorWrap::Define(env);
  data->tensorCtor = Napi::Persistent(tensorClass);
  exports.Set("Tensor", tensorClass);
  Napi::Function sgdClass = SGDWrap::Define(env);
  data->sgdCtor = Napi::Persistent(sgdClass);
  exports.Set("SGD", sgdClass);

  for (const OpEntry& e : kOps) {
    const char* name = e.name;
    OpFn fn = e.fn;
    exports.Set(name, Napi::Function::New(
                          env,
                          [name, fn](const Napi::CallbackInfo& info) -> Napi::Value {
                            return guarded(info.Env(), name, [&] { return fn(Args(info, name)); });
                          },
                          name));
  }

  // Before any tensor exists, so every block libtorch frees came from it.
  c10::SetCPUAllocator(&CachingCpuAllocator::instance(), /*priority=*/1);
  at::set_num_threads(kDefaultThreads);
  return exports;
}

}  // namespace

NODE_API_MODULE(extd_torch, Init)
