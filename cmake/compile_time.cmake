# What keeps three full builds (plain, ASan+UBSan, TSan) inside CI's time budget. Nothing here
# changes what the code does; bench/RESULTS.md ("CI's build time") has the figures.
#
# 1. Precompiled headers, in builds without debug information (the sanitizer builds, Release).
#    gRPC, protobuf, CLI11, GoogleTest and Eigen are parsed once per target instead of once per
#    file. Measured on the ASan build (-O0): 10-30 % less per file (deployer.cc 17.2 -> 12.0 s,
#    model_cmds.cc 18.2 -> 15.7 s). With -g (RelWithDebInfo) a 250 MB header costs about what
#    it saves (metrics_test.cc 18.1 -> 19.4 s, model_cmds.cc 24.9 -> 18.3 s), so it is off
#    there. -DXBAR_PCH=ON/OFF overrides; clang-tidy needs OFF (it cannot read GCC's .gch).
# 2. Hot and cold code. A sanitizer build compiles the code the tests spend their time in (the
#    twin's physics, the protocol codec, the drivers, the compiler and the model) at
#    XBAR_HOT_OPT and everything else (gRPC services, xbarctl, generated protobuf code, tests)
#    at the build type's level. scripts/sanitize.sh sets -O0 and -O1: under ASan+UBSan, -O1
#    costs 2.4 times -O0 in compile time, and the cold code is not where the time goes.
if(CMAKE_BUILD_TYPE STREQUAL "Release")
  set(xbar_pch_default ON)
else()
  set(xbar_pch_default OFF)
endif()
option(XBAR_PCH "Precompile the heavy third-party headers" ${xbar_pch_default})
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
