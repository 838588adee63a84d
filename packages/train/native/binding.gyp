{
  # Built by scripts/build-addon.mjs (npm's install step) with node-gyp, in
  # native/build. libtorch comes from Debian's libtorch-dev (1.13): headers in
  # /usr/include and /usr/include/torch/csrc/api/include, libraries on the
  # default linker path. TORCH_INCLUDE / TORCH_LIB override the locations.
  "variables": {
    "torch_include%": "<!(node -p \"process.env.TORCH_INCLUDE || '/usr/include'\")",
    "torch_lib%": "<!(node -p \"process.env.TORCH_LIB || ''\")"
  },
  "targets": [
    {
      "target_name": "extd_torch",
      "sources": ["extd_torch.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(torch_include)",
        "<(torch_include)/torch/csrc/api/include"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      # libtorch's headers need RTTI and exceptions; gyp turns both off by default.
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14", "-std=c++14"],
      # -fopenmp: libtorch 1.13's at::parallel_for is a header template that
      # runs its range in parallel only when the caller is compiled with
      # OpenMP (ATen/ParallelOpenMP.h); without it the addon's own kernels
      # (BN + PReLU, depthwise 3x3) ran on one thread whatever
      # at::set_num_threads said (intraOpWorkers() tells). Debian's libtorch
      # uses the same libgomp. -fno-trapping-math: selects in the vectorised
      # loops (`#pragma omp simd`) become blends, values unchanged.
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fopenmp", "-fno-trapping-math", "-Wno-unused-parameter"],
      "ldflags": ["-fopenmp"],
      "conditions": [
        ["torch_lib!=''", {
          "libraries": ["-L<(torch_lib)", "-Wl,-rpath,<(torch_lib)"]
        }]
      ],
      "libraries": ["-ltorch", "-ltorch_cpu", "-lc10"]
    }
  ]
}
