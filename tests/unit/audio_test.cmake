# The audio front end: decoding (libsndfile), resampling, preprocessing, Heidelberg Digits
# names. Included at the end of tests/CMakeLists.txt (xbar_test is defined there).
xbar_test(audio_test ${CMAKE_CURRENT_LIST_DIR}/audio_test.cc)
target_link_libraries(audio_test PRIVATE xbar_audio PkgConfig::SNDFILE)

# The log-mel front end and the streaming front end (issue 18): against models/frontend.py
# (tests/front_end_reference.py runs it with /usr/bin/python3 and numpy when the test runs).
xbar_test(front_end_test ${CMAKE_CURRENT_LIST_DIR}/front_end_test.cc)
target_link_libraries(front_end_test PRIVATE xbar_audio)
target_compile_definitions(front_end_test PRIVATE XBAR_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
