# xbarctl's kernel commands, what needs no daemon: kernel files (the KernelSet JSON mapping,
# configs/kernels/*.json) and the deployment map PNG. Included at the end of
# tests/CMakeLists.txt (xbar_test is defined there).
xbar_test(kernel_cli_test ${CMAKE_CURRENT_LIST_DIR}/kernel_cli_test.cc)
target_link_libraries(kernel_cli_test PRIVATE xbar_client_lib xbar_proto PNG::PNG)
target_compile_definitions(kernel_cli_test PRIVATE XBAR_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
