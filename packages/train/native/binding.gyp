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
      # -fopenmp-simd, -fno-trapping-math: the vectorised loops of the fused BN + PReLU backward
      # (`#pragma omp simd`, no OpenMP runtime; selects become blends, values unchanged).
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fopenmp-simd", "-fno-trapping-math", "-Wno-unused-parameter"],
      "conditions": [
        ["torch_lib!=''", {
          "libraries": ["-L<(torch_lib)", "-Wl,-rpath,<(torch_lib)"]
        }]
      ],
      "libraries": ["-ltorch", "-ltorch_cpu", "-lc10"]
    }
  ]
}
