# Installation layout of xbar as a Debian package (CPack DEB) and the package's contents test.
# `bash scripts/package.sh` builds build/xbar_<version>_<arch>.deb; README "Install as a service".
#
# Paths are relative to the install prefix (the package's is /usr) except the configuration,
# which lives in /etc/xbar whatever the prefix. xbard, xbarctl and xbar-fwsim install themselves
# to bin/ (server/, client/, twin/ CMakeLists), the chip profiles to share/xbar/profiles
# (top CMakeLists.txt).
include(GNUInstallDirs)

set(XBAR_DOC_DIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/xbar)

# The default configuration: the file of every key, read by the service unit's --config.
install(FILES ${CMAKE_SOURCE_DIR}/configs/xbard.yaml DESTINATION /etc/xbar)
# systemd unit and the service's user; udev rule for the board's USB node. Relative to the
# prefix: /usr/lib/... in the package, /usr/local/lib/... for `cmake --install` (both searched).
install(FILES ${CMAKE_SOURCE_DIR}/packaging/systemd/xbard.service DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/sysusers/xbar.conf DESTINATION lib/sysusers.d)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/udev/70-xbar.rules DESTINATION lib/udev/rules.d)
# Documentation (the unit's Documentation= points at README.md) and the example inputs.
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${XBAR_DOC_DIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${XBAR_DOC_DIR}/docs FILES_MATCHING
        PATTERN "*.md")
install(FILES ${CMAKE_SOURCE_DIR}/configs/kernels/example.json
              ${CMAKE_SOURCE_DIR}/configs/kernels/example-2bit.json
              ${CMAKE_SOURCE_DIR}/models/example-model.json
        DESTINATION ${XBAR_DOC_DIR}/examples)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME xbar)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "xbar")
set(CPACK_PACKAGE_CONTACT "xbar maintainers <xbar@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "gRPC daemon, CLI and simulated board for a memristive crossbar chip")
# The long description; CPack puts the summary above it and formats the lines for dpkg.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "xbard serves the xbar.v1 gRPC API in front of one USB crossbar board (three 64x64 \
1T1R arrays) or its bit-accurate simulation: program-verify, fault scans, kernel and model \
deployment, inference. xbarctl is its command-line client, xbar-fwsim the simulated board as \
a separate process. Ships a systemd unit (xbard.service, not enabled by default), the udev \
rule for the board and the default configuration /etc/xbar/xbard.yaml.")
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # xbar_<version>_<arch>.deb
# Depends from the libraries the binaries link (dpkg-shlibdeps, from dpkg-dev; libcairo2 for
# xbarctl's figures among them). fonts-dejavu-core: the figures' text (without a font cairo
# draws it in its built-in ASCII-only one).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, udev, fonts-dejavu-core")
set(CPACK_STRIP_FILES ON)
# Maintainer scripts (packaging/debian) and the configuration as a conffile: an upgrade keeps the
# administrator's edits (dpkg asks when both sides changed).
set(XBAR_DEB_CONFFILES ${CMAKE_BINARY_DIR}/deb/conffiles)
file(WRITE ${XBAR_DEB_CONFFILES} "/etc/xbar/xbard.yaml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/debian/postinst ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
    ${CMAKE_SOURCE_DIR}/packaging/debian/postrm ${XBAR_DEB_CONFFILES})
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)

# The package's metadata and file list (scripts/check-package.sh builds the .deb into a
# temporary directory unless given one). Label `package`: ctest -L package.
if(XBAR_BUILD_TESTS)
  add_test(NAME package_contents
           COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/check-package.sh --build-dir ${CMAKE_BINARY_DIR})
  set_tests_properties(package_contents PROPERTIES LABELS package TIMEOUT 120)
endif()
