// The pybind11 module fastrl._C: how the extension was built, a probe of its thread pool, and the
// env part (env_binding.cpp). Loading it registers the ops (bindings.cpp and the kernel files).
#include <ATen/Parallel.h>
#include <pybind11/pybind11.h>
#include <torch/python.h>

#include <mutex>
#include <set>
#include <thread>

#include "cpu/avx2.h"
#include "env_binding.h"

namespace {

// How many distinct threads at::parallel_for really used: 1 means the build lost OpenMP.
int parallel_threads_used() {
  std::mutex lock;
  std::set<std::thread::id> ids;
  at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) {
    volatile double sink = 0;
    for (int i = 0; i < 200000; ++i) sink = sink + i;
    std::lock_guard<std::mutex> guard(lock);
    ids.insert(std::this_thread::get_id());
  });
  return static_cast<int>(ids.size());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrl native kernels; the ops are registered as torch.ops.fastrl.*";
  m.def("build_info", [] {
    pybind11::dict info;
#ifdef FASTRL_WITH_CUDA
    info["cuda"] = true;
#else
    info["cuda"] = false;
#endif
    // torch.__version__ of the torch it was compiled against: fastrl/_native.py refuses to use
    // the kernels under any other torch.
    info["torch_version"] = FASTRL_TORCH_VERSION;
    info["openmp"] = bool(AT_PARALLEL_OPENMP);
    info["avx2"] = fastrl::cpu::avx2::enabled();  // the *_avx2.cpp kernels run on this CPU
    return info;
  });
  m.def("parallel_threads_used", &parallel_threads_used);
  fastrl::bind_envs(m);  // the env bindings and registries: csrc/env_binding.cpp
}
