# The durable chip record: unit tests plus a crash test that kill -9s a real writer process.
# Included at the end of tests/CMakeLists.txt (xbar_test is defined there).

# The writer the crash test starts and kills: loops over one-transaction writes forever.
add_executable(chip_record_crash ${CMAKE_CURRENT_LIST_DIR}/chip_record_crash_main.cc)
target_link_libraries(chip_record_crash PRIVATE xbar_server_lib)

xbar_test(chip_record_test ${CMAKE_CURRENT_LIST_DIR}/chip_record_test.cc)
target_link_libraries(chip_record_test PRIVATE xbar_server_lib)
target_compile_definitions(chip_record_test PRIVATE
  CHIP_RECORD_CRASH_PATH="$<TARGET_FILE:chip_record_crash>")
add_dependencies(chip_record_test chip_record_crash)
