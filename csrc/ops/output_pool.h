// Recycled CPU memory for large step outputs (MinAtar observations: 1.6 MB for 4096 Breakouts,
// 4 MB for Seaquest, every step). glibc serves an allocation that large with a fresh mmap (torch
// asks for 64-byte alignment, which pads the request past the threshold its previous free set),
// so each step page-faulted its observations in anew: 0.3 to 1.5 ms a step on the project's VM,
// more than the step itself. Here a buffer freed by its last tensor goes back to a free list by
// size and the next output of that size takes it, already mapped (and often still in cache).
// The list is capped (kMaxCachedBytes in all), so memory above that is freed as before.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/impl/alloc_cpu.h>

#include <mutex>
#include <unordered_map>
#include <vector>

namespace fastrl {

class OutputPool {
 public:
  static constexpr size_t kMaxCachedBytes = size_t(64) << 20;
  // Outputs smaller than this come from torch's allocator (glibc serves them from its heap).
  static constexpr size_t kMinBytes = size_t(128) << 10;

  // Never destroyed: tensors alive at exit still return their buffers here.
  static OutputPool& get() {
    static OutputPool* pool = new OutputPool();
    return *pool;
  }

  void* take(size_t bytes) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    return c10::alloc_cpu(bytes);
  }

  void give(void* p, size_t bytes) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= kMaxCachedBytes) {
        free_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
    c10::free_cpu(p);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

// An uninitialized CPU tensor; from the pool when at least OutputPool::kMinBytes.
inline at::Tensor pooled_empty_cpu(at::IntArrayRef size, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (const int64_t s : size) numel *= s;
  const size_t bytes = static_cast<size_t>(numel) * options.dtype().itemsize();
  if (bytes < OutputPool::kMinBytes) return at::detail::empty_cpu(size, options);
  void* data = OutputPool::get().take(bytes);
  return at::from_blob(data, size, [bytes](void* p) { OutputPool::get().give(p, bytes); }, options);
}

}  // namespace fastrl
