{
  "variables": {
    # libdeflate (Debian's libdeflate-dev, which scripts/setup.sh installs) compresses the sealed dialog blocks
    # (seal-deflate.cc), linked statically so that the addon needs no libdeflate at run time (the agent image's
    # runtime stage has none); where it cannot be linked the addon uses Node's zlib, as before.
    "tf_libdeflate%": "<!(printf '#include <libdeflate.h>\\nint main(void){return libdeflate_alloc_compressor(1)==0;}\\n' | c++ -x c++ - -o /dev/null -l:libdeflate.a >/dev/null 2>&1 && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "tfindex",
      "sources": ["scan.cc", "seal-deflate.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "conditions": [
        ["tf_libdeflate==1", { "defines": ["TF_LIBDEFLATE"], "libraries": ["-l:libdeflate.a"] }]
      ]
    }
  ]
}
