# The audio front end (compute/audio/include/xbar/audio/audio.h): sound files -> mono samples
# -> the S4D model's input sequence (block average or log-mel, front_end.h: Eigen's FFT).
# Depends on xbar_base only. Included from compute/CMakeLists.txt.
# GLOBAL: tests/ links libsndfile too (it writes the sound files it decodes).
if(NOT TARGET PkgConfig::SNDFILE)
  pkg_check_modules(SNDFILE REQUIRED IMPORTED_TARGET GLOBAL sndfile)
endif()
if(NOT TARGET PkgConfig::SAMPLERATE)
  pkg_check_modules(SAMPLERATE REQUIRED IMPORTED_TARGET GLOBAL samplerate)
endif()

add_library(xbar_audio ${CMAKE_CURRENT_LIST_DIR}/src/audio.cc ${CMAKE_CURRENT_LIST_DIR}/src/front_end.cc)
target_include_directories(xbar_audio PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(xbar_audio
  PUBLIC xbar_base Eigen3::Eigen
  PRIVATE PkgConfig::SNDFILE PkgConfig::SAMPLERATE fmt::fmt)
