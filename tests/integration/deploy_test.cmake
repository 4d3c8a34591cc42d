# Deploying S4D kernels end to end with real processes: xbar-fwsim (imssa, seed 13: 1-3
# stuck-high devices per array), xbard in front of it, xbarctl deploy/deployments/deployment/
# undeploy/map; the twin's ground truth checks what was placed and programmed. Included at the
# end of tests/CMakeLists.txt (xbar_test and XBAR_PROCESS_DEFS are defined there).
xbar_test(deploy_test ${CMAKE_CURRENT_LIST_DIR}/deploy_test.cc)
target_link_libraries(deploy_test PRIVATE xbar_drivers xbar_kernel xbar_server_lib xbar_proto
                      gRPC::grpc++)
target_compile_definitions(deploy_test PRIVATE ${XBAR_PROCESS_DEFS}
                           XBAR_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_dependencies(deploy_test xbard xbarctl xbar-fwsim)
