# The audio front end: decoding (libsndfile), resampling, preprocessing, Heidelberg Digits
# names. Included at the end of tests/CMakeLists.txt (xbar_test is defined there).
xbar_test(audio_test ${CMAKE_CURRENT_LIST_DIR}/audio_test.cc)
target_link_libraries(audio_test PRIVATE xbar_audio PkgConfig::SNDFILE)
