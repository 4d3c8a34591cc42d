# The Python client against a real xbard: tests/test_client.py starts xbard itself (ideal twin,
# a free port, a temporary state dir), checks the package call by call, then runs
# examples/deploy_and_stream.py and checks its output. Included from tests/CMakeLists.txt
# (testing is enabled there); the stubs come from client/python/CMakeLists.txt.
set(XBAR_PY_DIR ${CMAKE_SOURCE_DIR}/client/python)
add_test(NAME python_client_example
         COMMAND ${XBAR_PYTHON} -m unittest -v test_client
         WORKING_DIRECTORY ${XBAR_PY_DIR}/tests)
set(XBAR_PY_TEST_ENV
    "PYTHONPATH=${XBAR_PY_DIR}:${CMAKE_BINARY_DIR}/client/python/gen"
    "PYTHONDONTWRITEBYTECODE=1"
    "XBARD=$<TARGET_FILE:xbard>")
if(XBAR_SANITIZE MATCHES "thread")
  # The xbard it starts inherits these.
  list(APPEND XBAR_PY_TEST_ENV
       "TSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/tsan.supp halt_on_error=1")
endif()
set_tests_properties(python_client_example PROPERTIES
                     ENVIRONMENT "${XBAR_PY_TEST_ENV}"
                     TIMEOUT 300
                     LABELS python)

# Matrices with numpy and the PyTorch module (issue 21), against xbard on a typical twin.
add_test(NAME python_client_matrices
         COMMAND ${XBAR_PYTHON} -m unittest -v test_matrices
         WORKING_DIRECTORY ${XBAR_PY_DIR}/tests)
set_tests_properties(python_client_matrices PROPERTIES
                     ENVIRONMENT "${XBAR_PY_TEST_ENV}"
                     TIMEOUT 300
                     LABELS python)
