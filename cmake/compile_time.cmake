# What keeps three full builds (plain, ASan+UBSan, TSan) inside CI's time budget. Nothing here
# changes what the code does; bench/RESULTS.md ("CI's build time") has the figures.
#
# 1. Precompiled headers. gRPC, protobuf, CLI11, GoogleTest and Eigen are parsed once per target
#    instead of once per file: parsing was 37 % of a client file's compile time.
#    -DXBAR_PCH=OFF turns them off (clang-tidy reads compile_commands.json and cannot read GCC's
#    .gch files).
# 2. Hot and cold code. A sanitizer build compiles the code the tests spend their time in (the
#    twin's physics, the protocol codec, the drivers, the compiler and the model) at
#    XBAR_HOT_OPT and everything else (gRPC services, xbarctl, generated protobuf code, tests)
#    at the build type's level. scripts/sanitize.sh sets -O0 and -O1: under ASan+UBSan, -O1
#    costs 2.4 times -O0 in compile time, and the cold code is not where the time goes.
option(XBAR_PCH "Precompile the heavy third-party headers" ON)
set(XBAR_HOT_OPT "" CACHE STRING
    "Extra compile options for the hot libraries (twin, protocol, drivers, compute), e.g. -O1")

# The standard headers nearly every file includes.
set(XBAR_PCH_STD <algorithm> <chrono> <cmath> <cstdint> <expected> <functional> <map> <memory>
    <mutex> <optional> <span> <string> <string_view> <vector>)

# xbar_precompile(TARGET HEADER...): TARGET's own precompiled header, for a multi-file target.
function(xbar_precompile target)
  if(XBAR_PCH)
    target_precompile_headers(${target} PRIVATE ${XBAR_PCH_STD} ${ARGN})
  endif()
endfunction()

# xbar_hot_code(TARGET...): these targets are compiled with XBAR_HOT_OPT.
function(xbar_hot_code)
  if(XBAR_HOT_OPT)
    foreach(t ${ARGN})
      target_compile_options(${t} PRIVATE ${XBAR_HOT_OPT})
    endforeach()
  endif()
endfunction()
