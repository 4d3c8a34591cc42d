// UsbTransport end to end without hardware: the stock libusb enumerates and drives mocked
// xbar boards in a umockdev testbed, and each board's usbfs ioctls (SUBMITURB, REAPURB, ...)
// are answered by the twin (twin::Firmware). docs/usb.md explains the set-up.
//
// The process must run with libumockdev-preload loaded (tests/usb.cmake links it first).

#include "xbar/drivers/usb_transport.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <glib.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <libusb.h>
#include <linux/ioctl.h>  // before usbdevice_fs.h, which uses _IOR & co. without including it
#include <linux/usbdevice_fs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <umockdev.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/twin/firmware.h"
#include "xbar/twin/profile.h"
#include "xbar/wire/frame.h"
#include "xbar/wire/messages.h"

namespace xbar {
namespace {

using std::chrono::milliseconds;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// String descriptor indices in the mocked device descriptor.
constexpr uint8_t kManufacturerIndex = 1;
constexpr uint8_t kProductIndex = 2;
constexpr uint8_t kSerialIndex = 3;

// Device descriptor + configuration 1 (one vendor-class interface, bulk EPs 0x01 and 0x81,
// 512-byte packets): what the kernel exposes in sysfs "descriptors" and libusb reads there.
std::vector<uint8_t> board_descriptors() {
  return {// device: USB 2.0, class from interface, EP0 64 bytes, VID 1209, PID 7b01, bcdDevice 1.00
          0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x40, 0x09, 0x12, 0x01, 0x7b, 0x00, 0x01,
          kManufacturerIndex, kProductIndex, kSerialIndex, 0x01,
          // configuration 1: 32 bytes in total, 1 interface, bus powered, 100 mA
          0x09, 0x02, 0x20, 0x00, 0x01, 0x01, 0x00, 0x80, 0x32,
          // interface 0: 2 endpoints, vendor class 0xff
          0x09, 0x04, 0x00, 0x00, 0x02, 0xff, 0x00, 0x00, 0x00,
          // bulk OUT 0x01 and bulk IN 0x81, 512 bytes
          0x07, 0x05, 0x01, 0x02, 0x00, 0x02, 0x00,  //
          0x07, 0x05, 0x81, 0x02, 0x00, 0x02, 0x00};
}

// A USB 2.0 root hub (bus 1, device 1), so that boards sit at realistic addresses.
constexpr const char* kRootHubRecord =
    "P: /devices/usb1\n"
    "N: bus/usb/001/001\n"
    "E: SUBSYSTEM=usb\n"
    "E: DEVTYPE=usb_device\n"
    "E: DRIVER=usb\n"
    "E: BUSNUM=001\n"
    "E: DEVNUM=001\n"
    "E: DEVNAME=/dev/bus/usb/001/001\n"
    "A: busnum=1\\n\n"
    "A: devnum=1\\n\n"
    "A: bConfigurationValue=1\\n\n"
    "A: speed=480\\n\n"
    "H: descriptors=12010002090001406b1d020006050302010109021900010100e0000904000001090000"
    "000705810304000c\n";

std::string hex(const std::vector<uint8_t>& bytes) {
  std::string s;
  for (uint8_t b : bytes) s += fmt::format("{:02x}", b);
  return s;
}

std::vector<uint8_t> string_descriptor(const std::string& ascii) {
  std::vector<uint8_t> d = {static_cast<uint8_t>(2 + 2 * ascii.size()), LIBUSB_DT_STRING};
  for (char c : ascii) {
    d.push_back(static_cast<uint8_t>(c));
    d.push_back(0);
  }
  return d;
}

// A GObject reference held by a C++ owner.
template <typename T>
struct GObjectUnref {
  void operator()(T* p) const { g_object_unref(p); }
};
template <typename T>
using GPtr = std::unique_ptr<T, GObjectUnref<T>>;

// One mocked board: the usbfs side of the kernel for its device node, answering bulk OUT
// frames with the twin. Ioctls arrive on the testbed's worker thread; the test thread only
// flips the fault switches, so all state sits behind one mutex.
//
// A board that was unplugged can be plugged in again (replug()): the same twin, so the
// conductances stay, powered up afresh, at a new device number on the same port. Its old
// node's handles (still open in the host) then fail every ioctl with ENODEV.
class MockBoard {
 public:
  MockBoard(uint64_t chip_seed, int devnum)
      : firmware_(load_typical_profile(), twin::FirmwareOptions{chip_seed, 1}),
        session_(firmware_.open_session()),
        serial_(twin::Firmware::serial_for_seed(chip_seed)),
        port_(devnum - 1),
        handler_(umockdev_ioctl_base_new()),
        devnum_(devnum) {
    g_signal_connect(handler_.get(), "handle-ioctl", G_CALLBACK(&MockBoard::on_ioctl), this);
  }

  ~MockBoard() {
    for (UMockdevIoctlData* d : in_flight_) g_object_unref(d);
    for (UMockdevIoctlData* d : done_) g_object_unref(d);
  }

  const std::string& serial() const { return serial_; }
  int port() const { return port_; }
  int devnum() const {
    std::lock_guard lock(mu_);
    return devnum_;
  }
  std::string dev_node() const {
    std::lock_guard lock(mu_);
    return node_locked();
  }
  // Sysfs path of the device (the port it sits on), as umockdev_testbed_add_device gives it.
  std::string syspath() const { return fmt::format("/sys/devices/usb1/1-{}", port_); }
  UMockdevIoctlBase* handler() const { return handler_.get(); }

  std::string udev_record() const {
    std::lock_guard lock(mu_);
    return fmt::format(
        "P: /devices/usb1/1-{port}\n"
        "N: bus/usb/001/{dev:03}\n"
        "E: SUBSYSTEM=usb\n"
        "E: DEVTYPE=usb_device\n"
        "E: DRIVER=usb\n"
        "E: PRODUCT=1209/7b01/100\n"
        "E: BUSNUM=001\n"
        "E: DEVNUM={dev:03}\n"
        "E: DEVNAME=/dev/bus/usb/001/{dev:03}\n"
        "A: busnum=1\\n\n"
        "A: devnum={dev}\\n\n"
        "A: idVendor=1209\\n\n"
        "A: idProduct=7b01\\n\n"
        "A: serial={serial}\\n\n"
        "A: bConfigurationValue=1\\n\n"
        "A: speed=480\\n\n"
        "H: descriptors={desc}\n",
        fmt::arg("port", port_), fmt::arg("dev", devnum_), fmt::arg("serial", serial_),
        fmt::arg("desc", hex(board_descriptors())));
  }

  // Fault switches (test thread).
  void set_withhold_replies(bool on) {
    std::lock_guard lock(mu_);
    withhold_replies_ = on;
  }
  void set_truncate_next_reply() {
    std::lock_guard lock(mu_);
    truncate_next_reply_ = true;
  }
  // The board vanishes right after it accepts the next request: the IN URB that follows is
  // refused with ENODEV at SUBMITURB.
  void unplug_after_next_request() {
    std::lock_guard lock(mu_);
    unplug_after_next_request_ = true;
  }
  // The board vanishes now: URBs in flight complete with -ESHUTDOWN (as the host controller
  // reports a disconnect), later ioctls fail with ENODEV.
  void unplug_now() {
    std::lock_guard lock(mu_);
    set_unplugged_locked();
    for (UMockdevIoctlData* d : in_flight_) {
      auto* urb = reinterpret_cast<usbdevfs_urb*>(d->data);
      urb->status = -ESHUTDOWN;
      urb->actual_length = 0;
      done_.push_back(d);
    }
    in_flight_.clear();
  }
  // The board vanishes right after it executed its n-th PULSE_BATCH (counted from now): the
  // batch was applied, its reply never leaves.
  void unplug_after_pulse_batch(int n) {
    std::lock_guard lock(mu_);
    pulse_batches_ = 0;
    unplug_after_pulse_batch_ = n;
  }
  // IN URBs the host submitted that wait for a reply.
  size_t in_flight() const {
    std::lock_guard lock(mu_);
    return in_flight_.size();
  }
  // Waits until the board went away (any of the switches above); false on timeout.
  bool wait_unplugged(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return unplugged_cv_.wait_for(lock, timeout, [this] { return unplugged_; });
  }
  // Plugged in again at device number `devnum` on the same port, after the test took the old
  // device out of the testbed. A bus-powered board lost its power with the cable:
  // Firmware::restart(), so its session refuses stateful requests with RESTARTED until the
  // host acknowledges; the conductances stay. URBs and replies of the old device are gone.
  void replug(int devnum) {
    std::lock_guard lock(mu_);
    for (UMockdevIoctlData* d : in_flight_) g_object_unref(d);
    for (UMockdevIoctlData* d : done_) g_object_unref(d);
    in_flight_.clear();
    done_.clear();
    replies_.clear();
    withhold_replies_ = false;
    truncate_next_reply_ = false;
    unplug_after_next_request_ = false;
    unplug_after_pulse_batch_ = 0;
    unplugged_ = false;
    devnum_ = devnum;
    firmware_.restart();
  }
  int requests_executed() const {
    std::lock_guard lock(mu_);
    return requests_executed_;
  }

 private:
  static twin::ChipProfile load_typical_profile() {
    auto p = twin::load_profile("typical");
    if (!p) {
      ADD_FAILURE() << "load_profile(typical): " << p.error();
      return twin::ChipProfile{};
    }
    return *p;
  }

  static gboolean on_ioctl(UMockdevIoctlBase*, UMockdevIoctlClient* client, gpointer self) {
    return static_cast<MockBoard*>(self)->handle_ioctl(client) ? TRUE : FALSE;
  }

  std::string node_locked() const { return fmt::format("/dev/bus/usb/001/{:03}", devnum_); }

  void set_unplugged_locked() {
    unplugged_ = true;
    unplugged_cv_.notify_all();
  }

  bool handle_ioctl(UMockdevIoctlClient* client) {
    const gulong request = umockdev_ioctl_client_get_request(client);
    UMockdevIoctlData* arg = umockdev_ioctl_client_get_arg(client);
    std::lock_guard lock(mu_);
    if (node_locked() != umockdev_ioctl_client_get_devnode(client)) {
      // A handle on the node of an earlier plug-in: that device is gone for good.
      umockdev_ioctl_client_complete(client, -1, ENODEV);
      return true;
    }
    switch (request) {
      case USBDEVFS_GET_CAPABILITIES: {
        GPtr<UMockdevIoctlData> caps(
            umockdev_ioctl_data_resolve(arg, 0, sizeof(uint32_t), nullptr));
        // Scatter-gather: libusb submits each bulk transfer as one URB, as on a modern kernel.
        const uint32_t value = USBDEVFS_CAP_BULK_SCATTER_GATHER | USBDEVFS_CAP_BULK_CONTINUATION |
                               USBDEVFS_CAP_NO_PACKET_SIZE_LIM | USBDEVFS_CAP_ZERO_PACKET |
                               USBDEVFS_CAP_REAP_AFTER_DISCONNECT;
        std::memcpy(caps->data, &value, sizeof(value));
        umockdev_ioctl_client_complete(client, 0, 0);
        return true;
      }
      case USBDEVFS_CLAIMINTERFACE:
      case USBDEVFS_RELEASEINTERFACE:
      case USBDEVFS_CLEAR_HALT:
      case USBDEVFS_RESET:
      case USBDEVFS_RESETEP:
        if (unplugged_) {
          umockdev_ioctl_client_complete(client, -1, ENODEV);
        } else {
          umockdev_ioctl_client_complete(client, 0, 0);
        }
        return true;
      case USBDEVFS_SUBMITURB:
        submit_urb(client, arg);
        return true;
      case USBDEVFS_REAPURB:
      case USBDEVFS_REAPURBNDELAY:
        reap_urb(client, arg);
        return true;
      case USBDEVFS_DISCARDURB:
        discard_urb(client, arg);
        return true;
      default:
        return false;  // umockdev answers ENOTTY
    }
  }

  void submit_urb(UMockdevIoctlClient* client, UMockdevIoctlData* arg) {
    if (unplugged_) {
      umockdev_ioctl_client_complete(client, -1, ENODEV);
      return;
    }
    // Owned reference, kept until the URB is reaped.
    UMockdevIoctlData* urb_data =
        umockdev_ioctl_data_resolve(arg, 0, sizeof(usbdevfs_urb), nullptr);
    auto* urb = reinterpret_cast<usbdevfs_urb*>(urb_data->data);
    // Resolving the buffer repoints urb->buffer at a local copy that umockdev syncs back.
    if (urb->buffer_length > 0) {
      g_object_unref(umockdev_ioctl_data_resolve(urb_data, offsetof(usbdevfs_urb, buffer),
                                                 static_cast<size_t>(urb->buffer_length), nullptr));
    }
    auto* buffer = static_cast<uint8_t*>(urb->buffer);
    const size_t length = static_cast<size_t>(urb->buffer_length);

    if (urb->type == USBDEVFS_URB_TYPE_CONTROL) {
      answer_control(urb, buffer, length);
      done_.push_back(urb_data);
    } else if (urb->type == USBDEVFS_URB_TYPE_BULK && urb->endpoint == kXbarUsbEpOut) {
      // One bulk OUT transfer is one request frame.
      std::vector<uint8_t> reply =
          firmware_.handle(session_, std::span<const uint8_t>(buffer, length));
      ++requests_executed_;
      const bool pulse_batch =
          length > 5 && buffer[5] == static_cast<uint8_t>(wire::Opcode::kPulseBatch);
      if (pulse_batch && unplug_after_pulse_batch_ > 0 &&
          ++pulse_batches_ == unplug_after_pulse_batch_) {
        unplug_after_next_request_ = true;
      }
      if (truncate_next_reply_ && reply.size() > wire::kHeaderSize) {
        reply.resize(reply.size() - 1);
        truncate_next_reply_ = false;
      }
      if (!withhold_replies_) replies_.push_back(std::move(reply));
      urb->actual_length = urb->buffer_length;
      urb->status = 0;
      done_.push_back(urb_data);
      if (unplug_after_next_request_) set_unplugged_locked();
    } else if (urb->type == USBDEVFS_URB_TYPE_BULK && urb->endpoint == kXbarUsbEpIn) {
      in_flight_.push_back(urb_data);
    } else {
      g_object_unref(urb_data);
      umockdev_ioctl_client_complete(client, -1, EINVAL);
      return;
    }
    match_replies();
    umockdev_ioctl_client_complete(client, 0, 0);
  }

  // GET_DESCRIPTOR for strings (libusb reads device/config descriptors from sysfs).
  void answer_control(usbdevfs_urb* urb, uint8_t* buffer, size_t length) {
    urb->status = -EPIPE;  // stall unless answered below
    urb->actual_length = 0;
    if (length < LIBUSB_CONTROL_SETUP_SIZE) return;
    const uint8_t request_type = buffer[0];
    const uint8_t request = buffer[1];
    const uint8_t desc_index = buffer[2];
    const uint8_t desc_type = buffer[3];
    const size_t w_length = buffer[6] | (buffer[7] << 8);
    if (request_type != 0x80 || request != LIBUSB_REQUEST_GET_DESCRIPTOR) return;
    std::vector<uint8_t> answer;
    if (desc_type == LIBUSB_DT_STRING) {
      switch (desc_index) {
        case 0:
          answer = {4, LIBUSB_DT_STRING, 0x09, 0x04};
          break;  // LANGID en-US
        case kManufacturerIndex:
          answer = string_descriptor("xbar lab");
          break;
        case kProductIndex:
          answer = string_descriptor("xbar crossbar board");
          break;
        case kSerialIndex:
          answer = string_descriptor(serial_);
          break;
        default:
          return;
      }
    } else if (desc_type == LIBUSB_DT_DEVICE) {
      const auto all = board_descriptors();
      answer.assign(all.begin(), all.begin() + 18);
    } else {
      return;
    }
    const size_t n = std::min({answer.size(), w_length, length - LIBUSB_CONTROL_SETUP_SIZE});
    std::memcpy(buffer + LIBUSB_CONTROL_SETUP_SIZE, answer.data(), n);
    urb->actual_length = static_cast<int>(n);  // excludes the setup packet, as in usbfs
    urb->status = 0;
  }

  // Pairs waiting IN URBs with the twin's replies, one frame per transfer.
  void match_replies() {
    while (!in_flight_.empty() && !replies_.empty()) {
      UMockdevIoctlData* urb_data = in_flight_.front();
      in_flight_.pop_front();
      auto* urb = reinterpret_cast<usbdevfs_urb*>(urb_data->data);
      std::vector<uint8_t> reply = std::move(replies_.front());
      replies_.pop_front();
      if (reply.size() > static_cast<size_t>(urb->buffer_length)) {
        urb->status = -EOVERFLOW;
        urb->actual_length = 0;
      } else {
        std::memcpy(urb->buffer, reply.data(), reply.size());
        urb->actual_length = static_cast<int>(reply.size());
        urb->status = 0;
      }
      done_.push_back(urb_data);
    }
  }

  void reap_urb(UMockdevIoctlClient* client, UMockdevIoctlData* arg) {
    if (done_.empty()) {
      umockdev_ioctl_client_complete(client, -1, unplugged_ ? ENODEV : EAGAIN);
      return;
    }
    UMockdevIoctlData* urb_data = done_.front();
    done_.pop_front();
    // The argument is a `struct usbdevfs_urb**`: point it at the finished URB, whose data
    // (status, actual_length, buffer) umockdev writes back on completion.
    GPtr<UMockdevIoctlData> out(umockdev_ioctl_data_resolve(arg, 0, sizeof(void*), nullptr));
    umockdev_ioctl_data_set_ptr(out.get(), 0, urb_data);
    g_object_unref(urb_data);  // `out` holds it now
    umockdev_ioctl_client_complete(client, 0, 0);
  }

  void discard_urb(UMockdevIoctlClient* client, UMockdevIoctlData* arg) {
    // The argument is the client's URB address itself.
    gulong addr = 0;
    std::memcpy(&addr, arg->data, sizeof(addr));
    auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                           [&](UMockdevIoctlData* d) { return d->client_addr == addr; });
    if (it == in_flight_.end()) {
      umockdev_ioctl_client_complete(client, -1, EINVAL);
      return;
    }
    auto* urb = reinterpret_cast<usbdevfs_urb*>((*it)->data);
    urb->status = -ENOENT;  // what usbfs reports for a discarded URB
    urb->actual_length = 0;
    done_.push_back(*it);
    in_flight_.erase(it);
    umockdev_ioctl_client_complete(client, 0, 0);
  }

  twin::Firmware firmware_;
  twin::Firmware::SessionId session_;
  std::string serial_;
  const int port_;  // 1-N in sysfs; a re-plugged board comes back on the same port
  GPtr<UMockdevIoctlBase> handler_;

  mutable std::mutex mu_;
  std::condition_variable unplugged_cv_;
  int devnum_;                                // changes when the board is plugged in again
  std::deque<UMockdevIoctlData*> in_flight_;  // IN URBs waiting for a reply (owned refs)
  std::deque<UMockdevIoctlData*> done_;       // finished URBs waiting to be reaped (owned refs)
  std::deque<std::vector<uint8_t>> replies_;  // reply frames not yet read by the host
  bool withhold_replies_ = false;
  bool truncate_next_reply_ = false;
  bool unplug_after_next_request_ = false;
  bool unplugged_ = false;
  int unplug_after_pulse_batch_ = 0;  // 0: off
  int pulse_batches_ = 0;             // executed since unplug_after_pulse_batch()
  int requests_executed_ = 0;
};

// A fresh testbed per test: a root hub on bus 1 and any number of boards behind it.
class UsbTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testbed_.reset(umockdev_testbed_new());
    ASSERT_TRUE(umockdev_in_mock_environment())
        << "libumockdev-preload is not loaded (see tests/usb.cmake)";
    GError* error = nullptr;
    ASSERT_TRUE(umockdev_testbed_add_from_string(testbed_.get(), kRootHubRecord, &error))
        << (error ? error->message : "");
  }

  void TearDown() override {
    board_.reset();  // closes libusb before its device nodes go away
    transport_.reset();
    testbed_.reset();
    boards_.clear();
  }

  MockBoard& add_board(uint64_t chip_seed) {
    boards_.push_back(std::make_unique<MockBoard>(chip_seed, next_devnum_++));
    MockBoard& b = *boards_.back();
    plug_in(b);
    return b;
  }

  // A board plugged in while the test runs: the kernel announces it with a uevent.
  MockBoard& hot_add_board(uint64_t chip_seed) {
    MockBoard& b = add_board(chip_seed);
    umockdev_testbed_uevent(testbed_.get(), b.syspath().c_str(), "add");
    return b;
  }

  // The device appears on the bus at the board's current device number.
  void plug_in(MockBoard& b) {
    GError* error = nullptr;
    // The ioctl handler first, so that the node is live when the device appears.
    EXPECT_TRUE(
        umockdev_testbed_attach_ioctl(testbed_.get(), b.dev_node().c_str(), b.handler(), &error))
        << (error ? error->message : "");
    EXPECT_TRUE(umockdev_testbed_add_from_string(testbed_.get(), b.udev_record().c_str(), &error))
        << (error ? error->message : "");
  }

  // The device leaves the bus, as the kernel removes it after a disconnect: sysfs entry and
  // node gone. For a board that already vanished (unplug_now() or an unplug switch), whose
  // handles the host still holds fail with ENODEV.
  void remove_from_bus(MockBoard& b) {
    umockdev_testbed_uevent(testbed_.get(), b.syspath().c_str(), "remove");
    umockdev_testbed_remove_device(testbed_.get(), b.syspath().c_str());
  }

  // The cable is pulled: transfers in flight fail, then the device is removed.
  void unplug(MockBoard& b) {
    b.unplug_now();
    remove_from_bus(b);
  }

  // The same board plugged in again on its port: powered up afresh, enumerated at the next
  // free device number (the kernel never reuses one right away).
  void replug(MockBoard& b) {
    b.replug(next_devnum_++);
    plug_in(b);
    umockdev_testbed_uevent(testbed_.get(), b.syspath().c_str(), "add");
  }

  std::string testbed_root() const {
    gchar* root = umockdev_testbed_get_root_dir(testbed_.get());
    std::string s = root;
    g_free(root);
    return s;
  }

  // Sends one request and returns the decoded reply frame.
  wire::Frame round_trip(wire::Opcode op, std::span<const uint8_t> payload) {
    const uint32_t seq = next_seq_++;
    auto sent = transport_->send(wire::encode_frame(op, 0, seq, payload));
    EXPECT_TRUE(sent.has_value()) << sent.error().message;
    auto bytes = transport_->receive(milliseconds(2000));
    EXPECT_TRUE(bytes.has_value()) << bytes.error().message;
    if (!bytes) return {};
    auto frame = wire::decode_frame(*bytes);
    EXPECT_TRUE(frame.has_value()) << wire::frame_error_name(frame.error());
    if (!frame) return {};
    EXPECT_EQ(frame->header.seq, seq);
    EXPECT_EQ(frame->header.opcode, op);
    EXPECT_TRUE(frame->header.flags & wire::kFlagReply);
    EXPECT_FALSE(frame->header.flags & wire::kFlagError)
        << wire::decode_error_reply(frame->payload).value_or(wire::ErrorReply{}).message;
    return *frame;
  }

  void open_by_serial(const std::string& serial) {
    auto t = UsbTransport::open(UsbSelector{.serial = serial});
    ASSERT_TRUE(t.has_value()) << t.error().message;
    transport_ = std::move(*t);
  }

  struct TestbedDeleter {
    void operator()(UMockdevTestbed* t) const { g_object_unref(t); }
  };
  // Boards outlive the testbed's worker thread, which calls into them.
  std::vector<std::unique_ptr<MockBoard>> boards_;
  std::unique_ptr<UMockdevTestbed, TestbedDeleter> testbed_;
  std::atomic<int> next_devnum_ = 2;  // device 1 is the root hub
  std::unique_ptr<UsbTransport> transport_;
  std::unique_ptr<Board> board_;
  uint32_t next_seq_ = 1;
};

TEST_F(UsbTransportTest, OpensBoardBySerialAndRoundTripsInfoAndRead) {
  MockBoard& board = add_board(7);
  ASSERT_EQ(board.serial(), "XS00000000000007");
  ASSERT_NO_FATAL_FAILURE(open_by_serial(board.serial()));
  EXPECT_EQ(transport_->kind(), "usb");
  EXPECT_EQ(transport_->serial(), board.serial());
  EXPECT_EQ(transport_->describe(), "usb bus 1 dev 2 serial XS00000000000007");

  wire::Frame info_frame = round_trip(wire::Opcode::kInfo, {});
  auto info = wire::decode_info_reply(info_frame.payload);
  ASSERT_TRUE(info.has_value()) << info.error();
  EXPECT_EQ(info->serial, board.serial());
  EXPECT_EQ(info->n_arrays, 3);
  EXPECT_EQ(info->rows, 64);
  EXPECT_EQ(info->cols, 64);

  // A whole-array READ: 4096 code sums, a reply of ~16 KiB in one bulk IN transfer.
  for (uint8_t array = 0; array < 3; ++array) {
    wire::ReadRequest req;
    req.array = array;
    req.gain_index = 2;
    req.n_avg = 1;
    req.mode = wire::ReadMode::kWholeArray;
    wire::Frame read_frame = round_trip(wire::Opcode::kRead, req.encode());
    EXPECT_GT(read_frame.payload.size(), 16384u);
    auto read = wire::decode_read_reply(read_frame.payload);
    ASSERT_TRUE(read.has_value()) << read.error();
    EXPECT_EQ(read->array, array);
    ASSERT_EQ(read->code_sums.size(), 4096u);
    EXPECT_LE(*std::max_element(read->code_sums.begin(), read->code_sums.end()), 1023u);
  }

  wire::Frame status_frame = round_trip(wire::Opcode::kStatus, {});
  auto status = wire::decode_status_reply(status_frame.payload);
  ASSERT_TRUE(status.has_value()) << status.error();
  EXPECT_EQ(status->ops_executed, 5u);  // INFO, 3 READs, this STATUS
  EXPECT_EQ(board.requests_executed(), 5);
}

TEST_F(UsbTransportTest, OpensTheOnlyBoardWithoutSerial) {
  MockBoard& board = add_board(42);
  auto t = UsbTransport::open(UsbSelector{});
  ASSERT_TRUE(t.has_value()) << t.error().message;
  transport_ = std::move(*t);
  EXPECT_EQ(transport_->serial(), board.serial());
  auto info = wire::decode_info_reply(round_trip(wire::Opcode::kInfo, {}).payload);
  ASSERT_TRUE(info.has_value()) << info.error();
  EXPECT_EQ(info->serial, board.serial());
}

TEST_F(UsbTransportTest, PicksOneOfTwoBoardsBySerial) {
  add_board(1);
  MockBoard& second = add_board(2);
  ASSERT_NO_FATAL_FAILURE(open_by_serial(second.serial()));
  EXPECT_EQ(transport_->describe(), "usb bus 1 dev 3 serial XS00000000000002");
  auto info = wire::decode_info_reply(round_trip(wire::Opcode::kInfo, {}).payload);
  ASSERT_TRUE(info.has_value()) << info.error();
  EXPECT_EQ(info->serial, second.serial());
}

TEST_F(UsbTransportTest, ReceiveTimesOutWhenBoardWithholdsReplyThenRecovers) {
  MockBoard& board = add_board(7);
  ASSERT_NO_FATAL_FAILURE(open_by_serial(board.serial()));
  board.set_withhold_replies(true);
  ASSERT_TRUE(transport_->send(wire::encode_frame(wire::Opcode::kInfo, 0, 100, {})).has_value());

  const auto start = std::chrono::steady_clock::now();
  auto r = transport_->receive(milliseconds(200));
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kTimeout) << r.error().message;
  EXPECT_TRUE(Contains(r.error().message,
                       "usb receive on /dev/bus/usb/001/002: no response from the board within "
                       "200 ms (LIBUSB_ERROR_TIMEOUT)"));
  EXPECT_GE(waited, milliseconds(190));
  EXPECT_LT(waited, milliseconds(2000));

  // The cancelled URB was reaped cleanly: the link still works.
  board.set_withhold_replies(false);
  auto info = wire::decode_info_reply(round_trip(wire::Opcode::kInfo, {}).payload);
  ASSERT_TRUE(info.has_value()) << info.error();
  EXPECT_EQ(info->serial, board.serial());
}

TEST_F(UsbTransportTest, UnplugBetweenRequestAndReplyIsUnavailable) {
  MockBoard& board = add_board(7);
  ASSERT_NO_FATAL_FAILURE(open_by_serial(board.serial()));
  round_trip(wire::Opcode::kInfo, {});

  board.unplug_after_next_request();
  ASSERT_TRUE(transport_->send(wire::encode_frame(wire::Opcode::kStatus, 0, 200, {})).has_value());
  auto r = transport_->receive(milliseconds(1000));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
  EXPECT_TRUE(Contains(r.error().message, "board unplugged (LIBUSB_ERROR_NO_DEVICE)"));

  // And it stays gone.
  auto s = transport_->send(wire::encode_frame(wire::Opcode::kStatus, 0, 201, {}));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable) << s.error().message;
  EXPECT_TRUE(Contains(s.error().message, "usb send on /dev/bus/usb/001/002: board unplugged"));
}

TEST_F(UsbTransportTest, UnplugWhileWaitingForReplyIsUnavailable) {
  MockBoard& board = add_board(7);
  ASSERT_NO_FATAL_FAILURE(open_by_serial(board.serial()));
  board.set_withhold_replies(true);
  ASSERT_TRUE(transport_->send(wire::encode_frame(wire::Opcode::kInfo, 0, 300, {})).has_value());

  // The IN URB is in flight when the board goes away: the unplug waits for it (and comes
  // anyway after a while, so that a receive that submitted nothing cannot hang the test).
  std::atomic<bool> was_in_flight = false;
  std::thread unplugger([&board, &was_in_flight] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (board.in_flight() == 0 && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(milliseconds(1));
    was_in_flight = board.in_flight() > 0;
    board.unplug_now();
  });
  // The receive's timeout is far beyond the unplug, however slow the machine: only the unplug
  // ends this wait early.
  const auto timeout = milliseconds(120'000);
  const auto start = std::chrono::steady_clock::now();
  auto r = transport_->receive(timeout);
  const auto waited = std::chrono::steady_clock::now() - start;
  unplugger.join();
  EXPECT_TRUE(was_in_flight) << "receive() submitted no IN URB";
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
  EXPECT_TRUE(Contains(r.error().message, "board unplugged (LIBUSB_ERROR_NO_DEVICE)"));
  EXPECT_LT(waited, timeout / 2) << "the unplug must end the wait, not the timeout";
}

// Unplugged, the board cannot be re-opened; plugged in again it re-enumerates at a new device
// number, and reopen() finds it there by its serial.
TEST_F(UsbTransportTest, ReopenFindsTheRepluggedBoardAtItsNewDeviceNumber) {
  MockBoard& board = add_board(7);
  ASSERT_NO_FATAL_FAILURE(open_by_serial(board.serial()));
  round_trip(wire::Opcode::kInfo, {});

  unplug(board);
  auto s = transport_->send(wire::encode_frame(wire::Opcode::kStatus, 0, next_seq_++, {}));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable) << s.error().message;

  // While it is away every attempt fails, naming the board it looks for.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = transport_->reopen();
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(r.error().code == ErrorCode::kNotFound || r.error().code == ErrorCode::kUnavailable)
        << r.error().message;
    EXPECT_TRUE(Contains(r.error().message, board.serial()));
  }
  // The old handle is closed: the link reports that it is down, it does not touch libusb.
  s = transport_->send(wire::encode_frame(wire::Opcode::kStatus, 0, next_seq_++, {}));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable) << s.error().message;
  EXPECT_TRUE(Contains(s.error().message, "not re-opened yet"));
  auto rx = transport_->receive(milliseconds(10));
  ASSERT_FALSE(rx.has_value());
  EXPECT_EQ(rx.error().code, ErrorCode::kUnavailable) << rx.error().message;

  replug(board);
  ASSERT_EQ(board.devnum(), 3);
  auto r = transport_->reopen();
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(transport_->describe(), "usb bus 1 dev 3 serial XS00000000000007");
  EXPECT_EQ(transport_->serial(), board.serial());
  auto info = wire::decode_info_reply(round_trip(wire::Opcode::kInfo, {}).payload);
  ASSERT_TRUE(info.has_value()) << info.error();
  EXPECT_EQ(info->serial, board.serial());

  // The same twin, powered up afresh: it refuses stateful requests until the host acknowledges
  // the restart (ProtocolClient's business, not the transport's).
  wire::ReadRequest req;
  req.array = 0;
  req.gain_index = 2;
  req.n_avg = 1;
  req.mode = wire::ReadMode::kWholeArray;
  const uint32_t seq = next_seq_++;
  ASSERT_TRUE(transport_->send(wire::encode_frame(wire::Opcode::kRead, 0, seq, req.encode())));
  auto bytes = transport_->receive(milliseconds(2000));
  ASSERT_TRUE(bytes.has_value()) << bytes.error().message;
  auto frame = wire::decode_frame(*bytes);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->header.seq, seq);
  ASSERT_TRUE(frame->header.flags & wire::kFlagError);
  EXPECT_EQ(wire::decode_error_reply(frame->payload)->code, wire::BoardErrorCode::kRestarted);
}

// Another board where the lost one was: reopen() must not take it (program-verify would go on
// on the wrong chip). The lost board, plugged in again next to it, is found by its serial.
TEST_F(UsbTransportTest, ReopenDoesNotTakeAnotherBoardInItsPlace) {
  MockBoard& board = add_board(7);
  ASSERT_NO_FATAL_FAILURE(open_by_serial(board.serial()));
  round_trip(wire::Opcode::kInfo, {});

  unplug(board);
  MockBoard& other = hot_add_board(8);
  ASSERT_EQ(other.devnum(), 3);
  auto r = transport_->reopen();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << r.error().message;
  EXPECT_TRUE(Contains(r.error().message, fmt::format("no board with serial {} (found: {})",
                                                      board.serial(), other.serial())));
  EXPECT_EQ(other.requests_executed(), 0);
  auto s = transport_->send(wire::encode_frame(wire::Opcode::kInfo, 0, next_seq_++, {}));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable) << s.error().message;
  EXPECT_EQ(other.requests_executed(), 0) << "a request reached the other board";

  replug(board);
  ASSERT_EQ(board.devnum(), 4);
  r = transport_->reopen();
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(transport_->describe(), "usb bus 1 dev 4 serial XS00000000000007");
  auto info = wire::decode_info_reply(round_trip(wire::Opcode::kInfo, {}).payload);
  ASSERT_TRUE(info.has_value()) << info.error();
  EXPECT_EQ(info->serial, board.serial());
  EXPECT_EQ(other.requests_executed(), 0);
}

// The board is pulled out in the middle of program-verify, right after it applied a pulse batch
// whose reply is then lost, and is back 300 ms later at a new device number, powered up
// afresh. ProtocolClient re-opens it; the batch comes back as kRestarted (whether it was
// applied is unknown to the host), and program-verify reads back and goes on from there. It
// finishes, no batch is applied twice, and what it read is what the chip holds.
TEST_F(UsbTransportTest, ProgramVerifyGoesOnAfterTheBoardIsRepluggedMidway) {
  MockBoard& board = add_board(7);
  auto t = UsbTransport::open(UsbSelector{.serial = board.serial()});
  ASSERT_TRUE(t.has_value()) << t.error().message;
  // The board is away for 300 ms plus what taking it out of the testbed and back takes: a
  // reopen window far beyond that on a loaded machine (the window is not what this tests).
  auto b = Board::connect(std::move(*t), ProtocolOptions{.reopen_window = milliseconds(60'000)});
  ASSERT_TRUE(b.has_value()) << b.error().message;
  board_ = std::move(*b);

  // An 8x8 block of array 0, targets spread over 10..150 uS; the rest skipped.
  Eigen::MatrixXd target = Eigen::MatrixXd::Constant(64, 64, 10.0);
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> skip =
      Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>::Constant(64, 64, true);
  for (int r = 8; r < 16; ++r) {
    for (int c = 8; c < 16; ++c) {
      target(r, c) = 10.0 + 140.0 * ((r * 8 + c) * 37 % 64) / 63.0;
      skip(r, c) = false;
    }
  }

  board.unplug_after_pulse_batch(2);
  // The cable: out as soon as the board vanished, back in 300 ms later.
  std::atomic<bool> replugged = false;
  std::thread cable([&] {
    if (!board.wait_unplugged(milliseconds(120'000))) return;  // released below if never
    remove_from_bus(board);
    std::this_thread::sleep_for(milliseconds(300));
    replug(board);
    replugged = true;
  });
  const ProgramVerifyConfig cfg;
  auto result = program_verify(*board_, 0, target, cfg, {}, &skip);
  const bool cycled = replugged;
  if (!cycled) board.unplug_now();  // releases the cable thread
  cable.join();
  ASSERT_TRUE(cycled) << "program-verify ended before its second pulse batch"
                      << (result ? "" : ": " + result.error().message);
  ASSERT_TRUE(result.has_value()) << result.error().message;

  EXPECT_EQ(board.devnum(), 3);
  EXPECT_EQ(board_->client().reopens(), 1u);
  EXPECT_TRUE(board_->client().link_up());
  EXPECT_EQ(result->board_restarts, 1) << "the batch whose reply was lost is not kRestarted";
  EXPECT_EQ(board_->client().restarts(), 1u) << "the READ after it met the RESTARTED refusal";
  EXPECT_GE(result->rounds, 3);

  // No batch applied twice: the twin's counter of repeated PULSE_BATCH requests, and the
  // pulses the chip took against those program-verify sent (the lost batch's once: it was
  // applied before the board vanished).
  auto link = board_->sim_link();
  ASSERT_TRUE(link.has_value()) << link.error().message;
  EXPECT_EQ(link->pulse_batches_repeated, 0u) << "a pulse batch was applied twice";
  EXPECT_EQ(link->restarts, 1u);
  auto status = board_->status();
  ASSERT_TRUE(status.has_value()) << status.error().message;
  EXPECT_EQ(status->pulses_applied,
            static_cast<uint64_t>(result->set_pulses.sum() + result->reset_pulses.sum()));

  // The read-back is what the chip holds, and the block is programmed.
  auto truth = board_->sim_ground_truth(0);
  ASSERT_TRUE(truth.has_value()) << truth.error().message;
  double worst = 0;
  for (int r = 8; r < 16; ++r) {
    for (int c = 8; c < 16; ++c) {
      worst = std::max(worst, std::abs(result->final_uS(r, c) - (*truth)(r, c)));
    }
  }
  EXPECT_LT(worst, 2.0) << "read-back differs from the twin's ground truth";
  EXPECT_GE(result->within_tolerance(cfg), 90.0);
}

// Gone for longer than reopen_window: the request fails with kUnavailable saying that the
// board did not come back. Once it is back, the next request re-opens the link and succeeds.
TEST_F(UsbTransportTest, BoardAwayLongerThanTheReopenWindowFailsThenComesBack) {
  MockBoard& board = add_board(7);
  auto t = UsbTransport::open(UsbSelector{.serial = board.serial()});
  ASSERT_TRUE(t.has_value()) << t.error().message;
  auto b = Board::connect(std::move(*t), ProtocolOptions{.reopen_window = milliseconds(300)});
  ASSERT_TRUE(b.has_value()) << b.error().message;
  board_ = std::move(*b);
  ASSERT_TRUE(board_->status().has_value());

  unplug(board);
  const auto start = std::chrono::steady_clock::now();
  auto st = board_->status();
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable) << st.error().message;
  EXPECT_TRUE(Contains(st.error().message, "board unplugged"));
  EXPECT_TRUE(Contains(st.error().message, "not back within 300 ms"));
  EXPECT_TRUE(Contains(st.error().message, board.serial()));
  EXPECT_LT(waited, milliseconds(3000)) << "gave up after the window, not the default 5 s";
  EXPECT_FALSE(board_->client().link_up());
  EXPECT_EQ(board_->client().reopens(), 0u);

  // Still away: the next request learns it from one attempt.
  auto again = board_->status();
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::kUnavailable) << again.error().message;
  EXPECT_TRUE(Contains(again.error().message, "the board is gone"));

  replug(board);
  auto back = board_->status();
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_TRUE(board_->client().link_up());
  EXPECT_EQ(board_->client().reopens(), 1u);
  // A stateful request too: refused once by the restarted board, acknowledged, executed.
  auto m = board_->read_array(0);
  ASSERT_TRUE(m.has_value()) << m.error().message;
  EXPECT_EQ(board_->client().restarts(), 1u);
}

TEST_F(UsbTransportTest, ReplyShorterThanItsHeaderSaysIsProtocolError) {
  MockBoard& board = add_board(7);
  ASSERT_NO_FATAL_FAILURE(open_by_serial(board.serial()));
  board.set_truncate_next_reply();
  ASSERT_TRUE(transport_->send(wire::encode_frame(wire::Opcode::kInfo, 0, 400, {})).has_value());
  auto r = transport_->receive(milliseconds(1000));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << r.error().message;
  EXPECT_TRUE(Contains(r.error().message, "but the header announces"));
}

TEST_F(UsbTransportTest, NoBoardAttachedIsNotFound) {
  auto t = UsbTransport::open(UsbSelector{});
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(t.error().message, "no xbar board attached (VID:PID 1209:7b01)");
}

TEST_F(UsbTransportTest, WrongSerialIsNotFoundAndNamesBothSerials) {
  MockBoard& board = add_board(7);
  auto t = UsbTransport::open(UsbSelector{.serial = "XS0000000000BEEF"});
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, ErrorCode::kNotFound) << t.error().message;
  EXPECT_EQ(t.error().message,
            fmt::format("no board with serial XS0000000000BEEF (found: {})", board.serial()));
}

TEST_F(UsbTransportTest, TwoBoardsWithoutSerialListsBoth) {
  MockBoard& a = add_board(1);
  MockBoard& b = add_board(2);
  auto t = UsbTransport::open(UsbSelector{});
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, ErrorCode::kInvalidArgument) << t.error().message;
  EXPECT_EQ(t.error().message,
            fmt::format("several boards attached (serials {}, {}): choose one with "
                        "usb:serial=...",
                        a.serial(), b.serial()));
}

// The device node as the kernel creates it without the udev rule: root-owned, 0600. As root
// the check runs in a child process that drops to uid 65534 (nobody).
TEST_F(UsbTransportTest, InaccessibleNodeNamesTheUdevRule) {
  MockBoard& board = add_board(7);
  const std::string root = testbed_root();
  const std::string node = root + board.dev_node();
  ASSERT_EQ(chmod(node.c_str(), 0600), 0) << node << ": " << std::strerror(errno);

  auto check = [&]() -> std::string {
    auto t = UsbTransport::open(UsbSelector{});
    if (t) return "open succeeded";
    if (t.error().code != ErrorCode::kPermissionDenied) return "wrong code: " + t.error().message;
    const std::string want = fmt::format(
        "permission denied on {}: install packaging/udev/70-xbar.rules", board.dev_node());
    if (t.error().message.find(want) == std::string::npos) return "message: " + t.error().message;
    return "";
  };

  if (geteuid() != 0) {
    // The node belongs to us: take our own access away, as a root-owned node would.
    ASSERT_EQ(chmod(node.c_str(), 0000), 0);
    EXPECT_EQ(check(), "");
    return;
  }
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "as root this check forks a child that starts threads, which ThreadSanitizer "
                  "does not support; run it as a normal user";
#endif
  // nobody must be able to walk the testbed tree down to the node (like /dev/bus/usb) and to
  // create the testbed's emulated netlink socket (libusb's hotplug monitor) in its root.
  // Only directories inside our own testbed are touched.
  const std::filesystem::path testbed(root);
  ASSERT_TRUE(testbed.filename().string().starts_with("umockdev.")) << root;
  for (auto p = std::filesystem::path(node).parent_path();
       p != testbed && p.has_relative_path() && p.string().starts_with(root + "/");
       p = p.parent_path()) {
    ASSERT_EQ(chmod(p.c_str(), 0755), 0) << p;
  }
  ASSERT_EQ(chmod(root.c_str(), 0777), 0) << root;
  // umockdev connects to the node's ioctl socket before it opens the node itself.
  const std::string socket = root + "/ioctl" + board.dev_node();
  ASSERT_EQ(chmod(socket.c_str(), 0666), 0) << socket << ": " << std::strerror(errno);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipe_fds[0]);
    std::string result = (setgroups(0, nullptr) == 0 && setresgid(65534, 65534, 65534) == 0 &&
                          setresuid(65534, 65534, 65534) == 0)
                             ? check()
                             : "could not drop to uid 65534";
    (void)!write(pipe_fds[1], result.data(), result.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string result;
  char buf[512];
  for (ssize_t n; (n = read(pipe_fds[0], buf, sizeof(buf))) > 0;) result.append(buf, n);
  close(pipe_fds[0]);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  EXPECT_EQ(result, "");
}

TEST(UsbErrorTest, TranslatesEveryLibusbCodeInOneTable) {
  const UsbErrorContext where{"open", "/dev/bus/usb/001/002"};
  EXPECT_EQ(usb_error(LIBUSB_ERROR_ACCESS, where).code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_ACCESS, where).message,
            "usb open: permission denied on /dev/bus/usb/001/002: install "
            "packaging/udev/70-xbar.rules and add the user to group xbar (LIBUSB_ERROR_ACCESS)");
  EXPECT_EQ(usb_error(LIBUSB_ERROR_NO_DEVICE, {"receive"}).message,
            "usb receive: board unplugged (LIBUSB_ERROR_NO_DEVICE)");
  EXPECT_EQ(usb_error(LIBUSB_ERROR_NO_DEVICE, where).code, ErrorCode::kUnavailable);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_TIMEOUT, where).code, ErrorCode::kTimeout);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_BUSY, where).code, ErrorCode::kUnavailable);
  EXPECT_TRUE(Contains(usb_error(LIBUSB_ERROR_BUSY, where).message, "another xbard"));
  EXPECT_EQ(usb_error(LIBUSB_ERROR_NOT_FOUND, where).code, ErrorCode::kNotFound);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_PIPE, where).code, ErrorCode::kProtocol);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_OVERFLOW, where).code, ErrorCode::kProtocol);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_IO, where).code, ErrorCode::kUnavailable);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_INTERRUPTED, where).code, ErrorCode::kCancelled);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_NOT_SUPPORTED, where).code, ErrorCode::kUnsupported);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_NO_MEM, where).code, ErrorCode::kInternal);
  EXPECT_EQ(usb_error(LIBUSB_ERROR_OTHER, where).code, ErrorCode::kInternal);
  EXPECT_EQ(usb_error(-1234, where).message,
            "usb open on /dev/bus/usb/001/002: libusb error -1234");
}

}  // namespace
}  // namespace xbar
