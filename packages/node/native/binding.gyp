{
  # Built by scripts/build-kernels.mjs (npm's install step) with node-gyp, in
  # native/build. No dependencies beyond a C++17 compiler. -march=native: the
  # addon is compiled on the machine that runs it, so the kernels use its
  # widest vectors (AVX-512 where present).
  "targets": [
    {
      "target_name": "extd_kernels",
      "sources": ["extd_kernels.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++14", "-std=c++14"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-march=native", "-Wno-unused-parameter"]
    }
  ]
}
