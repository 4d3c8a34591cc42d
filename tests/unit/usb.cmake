# UsbTransport against mocked boards in a umockdev testbed, answered by the twin (docs/usb.md).
# Included from tests/CMakeLists.txt; needs PkgConfig and include(GoogleTest) done there.
pkg_check_modules(UMOCKDEV REQUIRED IMPORTED_TARGET umockdev-1.0)

add_executable(usb_transport_test ${CMAKE_CURRENT_LIST_DIR}/usb_transport_test.cc)
# The testbed only redirects /sys, /dev and the usbfs ioctls of a process that has
# libumockdev-preload loaded. Linking it first, with --no-as-needed because nothing references
# its symbols, puts it ahead of libc in symbol lookup, which is what LD_PRELOAD would do; so
# the plain binary, ctest and gtest_discover_tests need no wrapper or environment.
target_link_libraries(usb_transport_test PRIVATE
  "-Wl,--no-as-needed" umockdev-preload "-Wl,--as-needed"
  xbar_drivers xbar_transports xbar_twin xbar_wire
  PkgConfig::UMOCKDEV PkgConfig::LIBUSB
  fmt::fmt GTest::gtest_main Threads::Threads)

# GLib and umockdev are not built with ThreadSanitizer: tests/tsan.supp (set in
# XBAR_TEST_PROPERTIES) silences their internal synchronisation.
set(XBAR_USB_TEST_PROPERTIES ${XBAR_TEST_PROPERTIES} LABELS usb)

# One process per test (gtest_discover_tests), each with its own testbed in $TMPDIR.
gtest_discover_tests(usb_transport_test
  DISCOVERY_TIMEOUT 30
  PROPERTIES ${XBAR_USB_TEST_PROPERTIES})
