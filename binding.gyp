{
  "targets": [
    {
      "target_name": "tableroll",
      "sources": [
        "native/addon.cc",
        "native/arguments.cc",
        "native/descriptors.cc",
        "native/errors.cc",
        "native/fd-passing.cc",
        "native/files.cc",
        "native/memory.cc",
        "native/poller.cc",
        "native/socket-info.cc",
        "native/sockets.cc",
        "native/lane/binding.cc",
        "native/lane/engine.cc",
        "native/lane/http-head.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
