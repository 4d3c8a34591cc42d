// USB transport: protocol v1 frames over the board's two bulk endpoints, via libusb-1.0.
// docs/usb.md describes the USB identity, the framing and the error translation table.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/transport.h"

// libusb types stay opaque here so that users of the header need no libusb include path.
struct libusb_context;
struct libusb_device_handle;

namespace xbar {

// pid.codes test VID with the xbar board's PID; the board is a vendor-class device.
inline constexpr uint16_t kXbarUsbVid = 0x1209;
inline constexpr uint16_t kXbarUsbPid = 0x7B01;
inline constexpr int kXbarUsbInterface = 0;
inline constexpr uint8_t kXbarUsbEpOut = 0x01;  // bulk OUT: one request frame per transfer
inline constexpr uint8_t kXbarUsbEpIn = 0x81;   // bulk IN: one reply frame per transfer

/// Which board to open.
struct UsbSelector {
  uint16_t vid = kXbarUsbVid;
  uint16_t pid = kXbarUsbPid;
  std::string serial;  // iSerialNumber; empty: exactly one board must be attached
};

/// Where a libusb call failed, for the error message.
struct UsbErrorContext {
  std::string operation;                 // e.g. "open", "claim interface 0", "send", "receive"
  std::string dev_node;                  // e.g. "/dev/bus/usb/001/002"; may be empty
  std::chrono::milliseconds timeout{0};  // named in kTimeout messages when non-zero
};

/// The one translation of a libusb return code (LIBUSB_ERROR_*, negative) into an Error:
/// ACCESS -> kPermissionDenied, NO_DEVICE -> kUnavailable ("board unplugged"),
/// TIMEOUT -> kTimeout, ... (full table in docs/usb.md). The message names the operation,
/// the device node when known, and the libusb error name.
Error usb_error(int libusb_rc, const UsbErrorContext& where);

/// One claimed xbar board. Thread model: one thread at a time (as Transport).
class UsbTransport final : public Transport {
 public:
  /// Enumerates USB devices, picks the board matching `selector` and claims interface 0.
  /// `timeout` bounds every control transfer while opening and every send().
  /// Errors: kNotFound (no board / no such serial), kInvalidArgument (several boards and no
  /// serial), kPermissionDenied (device node not accessible), kUnavailable, kTimeout.
  static Result<std::unique_ptr<UsbTransport>> open(
      const UsbSelector& selector,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

  ~UsbTransport() override;
  UsbTransport(const UsbTransport&) = delete;
  UsbTransport& operator=(const UsbTransport&) = delete;

  /// Writes `frame` as one bulk OUT transfer.
  Result<void> send(std::span<const uint8_t> frame) override;
  /// Reads one bulk IN transfer (up to wire::kMaxFrame bytes) and checks that it holds
  /// exactly one frame (header + the payload length it announces). CRC is left to the caller.
  Result<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) override;
  /// e.g. "usb bus 1 dev 2 serial XS000000000007".
  std::string describe() const override;
  std::string kind() const override { return "usb"; }
  /// Closes the handle and opens the board with the same serial again, wherever it
  /// re-enumerated (a new device address after an unplug). kNotFound while it is away.
  Result<void> reopen() override;

  /// The board's iSerialNumber string (empty if it has none).
  const std::string& serial() const { return serial_; }

 private:
  UsbTransport(libusb_context* ctx, libusb_device_handle* handle, int bus, int address,
               std::string serial, std::chrono::milliseconds timeout);

  std::string dev_node() const;
  void close();
  Error not_open(std::string_view what) const;

  libusb_context* ctx_;           // owned: one context per transport
  libusb_device_handle* handle_;  // owned; interface 0 claimed
  int bus_;
  int address_;
  std::string serial_;
  UsbSelector selector_;  // what open() was asked for
  std::chrono::milliseconds send_timeout_;
  std::vector<uint8_t> rx_buffer_;  // wire::kMaxFrame bytes, reused by every receive()
};

}  // namespace xbar
