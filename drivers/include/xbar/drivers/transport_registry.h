// Transports register themselves by URI scheme, each from its own file (SoapySDR's Registry,
// libiio's backends by URI prefix, libcamera's REGISTER_PIPELINE_HANDLER). Board::open looks
// the scheme up here, so the driver library knows no transport: the twin's `sim:` lives with
// the twin, `usb:` with libusb, and a program links only the transports it wants
// (CMake target xbar_transports: all of them).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/transport.h"

namespace xbar {

/// Opens the transport a whole URI ("usb:serial=XB1", scheme included) names.
using TransportOpener = Result<std::unique_ptr<Transport>> (*)(const std::string& uri);

struct TransportScheme {
  std::string scheme;  // "sim", "tcp", ...: matches "scheme" and "scheme:..."
  std::string usage;   // the URI's form for error messages, e.g. "usb:[serial=S]"
  TransportOpener open = nullptr;
};

/// Registers `scheme` at static initialisation (XBAR_REGISTER_TRANSPORT). A scheme registered
/// twice is a link error made visible: opening it fails with kInternal naming both.
/// \context Static initialisation, or any thread: the registry takes its own lock.
class TransportRegistrar {
 public:
  TransportRegistrar(std::string scheme, std::string usage, TransportOpener open);
};

/// The registered schemes, in scheme order (a clashing scheme once). \context Any thread.
std::vector<TransportScheme> registered_transports();

/// The transport `uri` names. kInvalidArgument (listing the registered forms) when no
/// registered scheme matches; kInternal when two transports registered it; otherwise whatever
/// the transport's opener returns.
/// \context Any thread.
Result<std::unique_ptr<Transport>> open_transport(const std::string& uri);

}  // namespace xbar

/// In a transport's own .cc: XBAR_REGISTER_TRANSPORT(usb, "usb", "usb:[serial=S]", open_usb);
/// The file must be linked as a whole (CMake: the transport libraries are linked through
/// xbar_transports with WHOLE_ARCHIVE), or its registrar is dropped with the unused object.
#define XBAR_REGISTER_TRANSPORT(ident, scheme, usage, opener) \
  static const ::xbar::TransportRegistrar xbar_transport_registrar_##ident { scheme, usage, opener }
