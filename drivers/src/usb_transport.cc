#include "xbar/drivers/usb_transport.h"

#include <fmt/format.h>
#include <libusb.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <utility>

#include "xbar/drivers/transport_registry.h"
#include "xbar/drivers/uri_params.h"
#include "xbar/wire/frame.h"

namespace xbar {
namespace {

// The one table from libusb return codes to driver error codes (docs/usb.md mirrors it).
struct UsbErrorRow {
  int rc;
  ErrorCode code;
  const char* text;
};

constexpr UsbErrorRow kUsbErrorTable[] = {
    {LIBUSB_ERROR_IO, ErrorCode::kUnavailable, "I/O error on the USB link"},
    {LIBUSB_ERROR_INVALID_PARAM, ErrorCode::kInternal, "invalid parameter passed to libusb"},
    {LIBUSB_ERROR_ACCESS, ErrorCode::kPermissionDenied, "permission denied"},
    {LIBUSB_ERROR_NO_DEVICE, ErrorCode::kUnavailable, "board unplugged"},
    {LIBUSB_ERROR_NOT_FOUND, ErrorCode::kNotFound,
     "interface 0 or its endpoints not found (is this an xbar board?)"},
    {LIBUSB_ERROR_BUSY, ErrorCode::kUnavailable,
     "interface 0 is claimed by another program (is another xbard running?)"},
    {LIBUSB_ERROR_TIMEOUT, ErrorCode::kTimeout, "no response from the board"},
    {LIBUSB_ERROR_OVERFLOW, ErrorCode::kProtocol,
     "the board sent more bytes than the transfer buffer holds"},
    {LIBUSB_ERROR_PIPE, ErrorCode::kProtocol, "endpoint stalled (the board rejected the request)"},
    {LIBUSB_ERROR_INTERRUPTED, ErrorCode::kCancelled, "interrupted by a signal"},
    {LIBUSB_ERROR_NO_MEM, ErrorCode::kInternal, "out of memory"},
    {LIBUSB_ERROR_NOT_SUPPORTED, ErrorCode::kUnsupported,
     "not supported by this platform's USB stack"},
    {LIBUSB_ERROR_OTHER, ErrorCode::kInternal, "unspecified libusb error"},
};

std::string dev_node_for(int bus, int address) {
  return fmt::format("/dev/bus/usb/{:03}/{:03}", bus, address);
}

// libusb treats a timeout of 0 as "wait forever"; a caller asking for 0 ms wants a poll.
unsigned int libusb_timeout_ms(std::chrono::milliseconds t) {
  return static_cast<unsigned int>(std::max<int64_t>(t.count(), 1));
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

struct ContextDeleter {
  void operator()(libusb_context* c) const { libusb_exit(c); }
};
using ContextPtr = std::unique_ptr<libusb_context, ContextDeleter>;

struct HandleDeleter {
  void operator()(libusb_device_handle* h) const { libusb_close(h); }
};
using HandlePtr = std::unique_ptr<libusb_device_handle, HandleDeleter>;

struct DeviceListDeleter {
  void operator()(libusb_device** l) const { libusb_free_device_list(l, /*unref_devices=*/1); }
};

// A device whose VID:PID matched, before it is opened.
struct Candidate {
  libusb_device* dev = nullptr;
  int bus = 0;
  int address = 0;
  uint8_t serial_index = 0;  // iSerialNumber; 0: the device has no serial string
  std::string node() const { return dev_node_for(bus, address); }
};

// An opened candidate with its serial read, or the error that prevented it.
struct Probed {
  HandlePtr handle;
  std::string serial;
};

Result<Probed> probe(const Candidate& c, std::chrono::milliseconds timeout) {
  libusb_device_handle* raw = nullptr;
  if (int rc = libusb_open(c.dev, &raw); rc != 0) {
    return std::unexpected(usb_error(rc, {"open", c.node()}));
  }
  Probed p{HandlePtr(raw), {}};
  if (c.serial_index == 0) return p;

  // Read the string descriptor ourselves (not libusb_get_string_descriptor_ascii) so that the
  // caller's timeout applies. Language 0x0409 (US English) is what USB boards use for serials.
  constexpr uint8_t kStandardDeviceIn = 0x80;  // bmRequestType: device-to-host, standard, device
  unsigned char buf[255] = {};
  int n = libusb_control_transfer(raw, kStandardDeviceIn, LIBUSB_REQUEST_GET_DESCRIPTOR,
                                  static_cast<uint16_t>((LIBUSB_DT_STRING << 8) | c.serial_index),
                                  0x0409, buf, sizeof(buf), libusb_timeout_ms(timeout));
  if (n < 0) return std::unexpected(usb_error(n, {"read serial number", c.node(), timeout}));
  if (n < 2 || buf[1] != LIBUSB_DT_STRING || buf[0] > n || buf[0] % 2 != 0) {
    return std::unexpected(
        Error{ErrorCode::kProtocol,
              fmt::format("usb read serial number on {}: malformed string descriptor ({} bytes)",
                          c.node(), n)});
  }
  // UTF-16LE; serials are ASCII, anything else is shown as '?'.
  for (int i = 2; i + 1 < buf[0]; i += 2) {
    const bool ascii = buf[i + 1] == 0 && buf[i] >= 0x20 && buf[i] < 0x7F;
    p.serial.push_back(ascii ? static_cast<char>(buf[i]) : '?');
  }
  return p;
}

}  // namespace

Error usb_error(int libusb_rc, const UsbErrorContext& where) {
  const auto* row = std::find_if(std::begin(kUsbErrorTable), std::end(kUsbErrorTable),
                                 [&](const UsbErrorRow& r) { return r.rc == libusb_rc; });
  std::string prefix = "usb " + where.operation;
  if (!where.dev_node.empty() && libusb_rc != LIBUSB_ERROR_ACCESS)
    prefix += " on " + where.dev_node;
  if (row == std::end(kUsbErrorTable)) {
    return Error{ErrorCode::kInternal, fmt::format("{}: libusb error {}", prefix, libusb_rc)};
  }
  std::string detail = row->text;
  switch (libusb_rc) {
    case LIBUSB_ERROR_ACCESS:
      // The usual cause is a missing udev rule; say what fixes it.
      detail = where.dev_node.empty()
                   ? "permission denied: install packaging/udev/70-xbar.rules"
                   : fmt::format(
                         "permission denied on {}: install packaging/udev/70-xbar.rules "
                         "and add the user to group xbar",
                         where.dev_node);
      break;
    case LIBUSB_ERROR_TIMEOUT:
      if (where.timeout.count() > 0) {
        detail = fmt::format("{} within {} ms", row->text, where.timeout.count());
      }
      break;
    default:
      break;
  }
  return Error{row->code, fmt::format("{}: {} ({})", prefix, detail, libusb_error_name(libusb_rc))};
}

namespace {

// The listed devices whose VID:PID match the selector, in bus/address order.
std::vector<Candidate> matching_devices(libusb_device* const* list, ssize_t n_devices,
                                        const UsbSelector& selector) {
  // Descriptors come from sysfs: matching VID:PID opens nothing.
  std::vector<Candidate> candidates;
  for (ssize_t i = 0; i < n_devices; ++i) {
    libusb_device_descriptor desc{};
    if (libusb_get_device_descriptor(list[i], &desc) != 0) continue;
    if (desc.idVendor != selector.vid || desc.idProduct != selector.pid) continue;
    candidates.push_back(Candidate{list[i], libusb_get_bus_number(list[i]),
                                   libusb_get_device_address(list[i]), desc.iSerialNumber});
  }
  // libusb lists devices in no useful order; bus/address order keeps messages stable.
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return std::pair(a.bus, a.address) < std::pair(b.bus, b.address);
  });
  return candidates;
}

// The candidate chosen, opened.
struct Chosen {
  const Candidate* candidate = nullptr;
  Probed probed;
};

// No serial asked for: the one board attached; with several, an error listing them.
Result<Chosen> choose_only_board(const std::vector<Candidate>& candidates,
                                 std::chrono::milliseconds timeout) {
  if (candidates.size() > 1) {
    // List what is there so that the user can pick one.
    std::vector<std::string> names;
    for (const auto& c : candidates) {
      auto p = probe(c, timeout);
      names.push_back(p ? (p->serial.empty() ? "<no serial> at " + c.node() : p->serial)
                        : fmt::format("<unreadable> at {}", c.node()));
    }
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("several boards attached (serials {}): choose one with "
                                  "usb:serial=...",
                                  join(names)));
  }
  auto p = probe(candidates.front(), timeout);
  if (!p) return std::unexpected(std::move(p.error()));
  return Chosen{&candidates.front(), std::move(*p)};
}

// The board with the serial asked for, probing each in turn.
Result<Chosen> choose_by_serial(const std::vector<Candidate>& candidates, const std::string& serial,
                                std::chrono::milliseconds timeout) {
  std::vector<std::string> found;
  std::vector<Error> failures;
  for (const auto& c : candidates) {
    auto p = probe(c, timeout);
    if (!p) {
      failures.push_back(std::move(p.error()));
      continue;
    }
    if (p->serial == serial) return Chosen{&c, std::move(*p)};
    found.push_back(p->serial.empty() ? "<no serial>" : p->serial);
  }
  std::string msg = fmt::format("no board with serial {} (found: {})", serial,
                                found.empty() ? "none readable" : join(found));
  if (failures.empty()) return make_error(ErrorCode::kNotFound, std::move(msg));
  // A board we could not open may be the one asked for: report why, keeping its code.
  for (const auto& f : failures) msg += "; " + f.message;
  return make_error(failures.front().code, std::move(msg));
}

}  // namespace

Result<std::unique_ptr<UsbTransport>> UsbTransport::open(const UsbSelector& selector,
                                                         std::chrono::milliseconds timeout) {
  libusb_context* raw_ctx = nullptr;
  if (int rc = libusb_init(&raw_ctx); rc != 0) {
    return std::unexpected(usb_error(rc, {"init"}));
  }
  ContextPtr ctx(raw_ctx);

  libusb_device** raw_list = nullptr;
  const ssize_t n_devices = libusb_get_device_list(ctx.get(), &raw_list);
  if (n_devices < 0) {
    return std::unexpected(usb_error(static_cast<int>(n_devices), {"enumerate"}));
  }
  std::unique_ptr<libusb_device*, DeviceListDeleter> list(raw_list);

  const std::vector<Candidate> candidates = matching_devices(list.get(), n_devices, selector);
  if (candidates.empty()) {
    return make_error(
        ErrorCode::kNotFound,
        fmt::format("no xbar board attached (VID:PID {:04x}:{:04x})", selector.vid, selector.pid));
  }

  auto chosen = selector.serial.empty() ? choose_only_board(candidates, timeout)
                                        : choose_by_serial(candidates, selector.serial, timeout);
  if (!chosen) return std::unexpected(std::move(chosen.error()));
  Probed& probed = chosen->probed;
  if (int rc = libusb_claim_interface(probed.handle.get(), kXbarUsbInterface); rc != 0) {
    return std::unexpected(usb_error(rc, {"claim interface 0", chosen->candidate->node()}));
  }
  auto t = std::unique_ptr<UsbTransport>(
      new UsbTransport(ctx.release(), probed.handle.release(), chosen->candidate->bus,
                       chosen->candidate->address, std::move(probed.serial), timeout));
  t->selector_ = selector;
  return t;
}

void UsbTransport::close() {
  if (handle_ != nullptr) {
    // Release fails harmlessly if the board is already gone.
    libusb_release_interface(handle_, kXbarUsbInterface);
    libusb_close(handle_);
    handle_ = nullptr;
  }
  if (ctx_ != nullptr) {
    libusb_exit(ctx_);
    ctx_ = nullptr;
  }
}

Result<void> UsbTransport::reopen() {
  // The old handle first: the interface cannot be claimed twice.
  close();
  UsbSelector sel = selector_;
  if (!serial_.empty()) sel.serial = serial_;  // the same board, wherever it re-enumerated
  auto fresh = open(sel, send_timeout_);
  if (!fresh) {
    // open()'s "no xbar board attached" does not say which board is awaited; the caller's
    // "not back" message must.
    Error e = std::move(fresh.error());
    e.message = fmt::format("usb re-open of board {} (last at bus {} dev {}): {}",
                            serial_.empty() ? "<no serial>" : serial_, bus_, address_, e.message);
    return std::unexpected(std::move(e));
  }
  std::swap(ctx_, (*fresh)->ctx_);
  std::swap(handle_, (*fresh)->handle_);
  bus_ = (*fresh)->bus_;
  address_ = (*fresh)->address_;
  return {};
}

Error UsbTransport::not_open(std::string_view what) const {
  return Error{ErrorCode::kUnavailable,
               fmt::format("usb {} on {}: board unplugged, not re-opened yet", what, dev_node())};
}

UsbTransport::UsbTransport(libusb_context* ctx, libusb_device_handle* handle, int bus, int address,
                           std::string serial, std::chrono::milliseconds timeout)
    : ctx_(ctx),
      handle_(handle),
      bus_(bus),
      address_(address),
      serial_(std::move(serial)),
      send_timeout_(timeout),
      rx_buffer_(wire::kMaxFrame) {}

UsbTransport::~UsbTransport() { close(); }

std::string UsbTransport::dev_node() const { return dev_node_for(bus_, address_); }

std::string UsbTransport::describe() const {
  return fmt::format("usb bus {} dev {} serial {}", bus_, address_,
                     serial_.empty() ? "<none>" : serial_);
}

Result<void> UsbTransport::send(std::span<const uint8_t> frame) {
  if (frame.size() > wire::kMaxFrame) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("usb send: frame of {} bytes exceeds the maximum of {} bytes",
                                  frame.size(), wire::kMaxFrame));
  }
  if (handle_ == nullptr) return std::unexpected(not_open("send"));
  int transferred = 0;
  // libusb takes a non-const buffer for both directions; it does not write to OUT data.
  int rc = libusb_bulk_transfer(handle_, kXbarUsbEpOut, const_cast<uint8_t*>(frame.data()),
                                static_cast<int>(frame.size()), &transferred,
                                libusb_timeout_ms(send_timeout_));
  if (rc != 0) return std::unexpected(usb_error(rc, {"send", dev_node(), send_timeout_}));
  if (static_cast<size_t>(transferred) != frame.size()) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("usb send on {}: short write, {} of {} bytes", dev_node(),
                                  transferred, frame.size()));
  }
  return {};
}

Result<std::vector<uint8_t>> UsbTransport::receive(std::chrono::milliseconds timeout) {
  if (handle_ == nullptr) return std::unexpected(not_open("receive"));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int transferred = 0;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    int rc = libusb_bulk_transfer(handle_, kXbarUsbEpIn, rx_buffer_.data(),
                                  static_cast<int>(rx_buffer_.size()), &transferred,
                                  libusb_timeout_ms(left));
    if (rc != 0) return std::unexpected(usb_error(rc, {"receive", dev_node(), timeout}));
    // A stray zero-length packet carries no frame; keep waiting for one until the deadline.
    if (transferred > 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      return std::unexpected(usb_error(LIBUSB_ERROR_TIMEOUT, {"receive", dev_node(), timeout}));
    }
  }

  const auto bytes = std::span<const uint8_t>(rx_buffer_.data(), static_cast<size_t>(transferred));
  if (bytes.size() < wire::kHeaderSize) {
    return make_error(ErrorCode::kProtocol,
                      fmt::format("usb receive on {}: transfer of {} bytes is shorter than a "
                                  "{}-byte frame header",
                                  dev_node(), bytes.size(), wire::kHeaderSize));
  }
  // Only the framing is checked here (one transfer = one frame); ProtocolClient checks magic,
  // CRC and opcode, so a damaged reply is retried exactly as over a socket.
  const uint32_t length = wire::announced_length(bytes);
  const size_t expected = wire::kHeaderSize + static_cast<size_t>(length);
  if (bytes.size() != expected) {
    return make_error(ErrorCode::kProtocol,
                      fmt::format("usb receive on {}: transfer of {} bytes, but the header "
                                  "announces {} ({} + {} payload)",
                                  dev_node(), bytes.size(), expected, wire::kHeaderSize, length));
  }
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

namespace {

Result<std::unique_ptr<Transport>> open_usb_uri(const std::string& uri) {
  auto params = parse_uri_params(uri, uri_params_of(uri, "usb"), {"serial"});
  if (!params) return std::unexpected(params.error());
  UsbSelector sel;
  if (params->contains("serial")) sel.serial = (*params)["serial"];
  auto t = UsbTransport::open(sel);
  if (!t) return std::unexpected(t.error());
  return std::unique_ptr<Transport>(std::move(*t));
}

}  // namespace

XBAR_REGISTER_TRANSPORT(usb, "usb", "usb:[serial=S]", open_usb_uri);

}  // namespace xbar
