// The `sim:` transport: the twin's firmware linked into this process. Frames still go
// through the full codec, so everything above it runs exactly as over a socket or USB.
#pragma once

#include <deque>
#include <memory>

#include "xbar/drivers/transport.h"
#include "xbar/twin/firmware.h"

namespace xbar {

class InProcessTransport : public Transport {
 public:
  /// Shares the firmware (one board may have several host sessions, as over a socket).
  explicit InProcessTransport(std::shared_ptr<twin::Firmware> firmware);
  ~InProcessTransport() override;

  Result<void> send(std::span<const uint8_t> frame) override;
  Result<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) override;
  std::string describe() const override;
  std::string kind() const override { return "sim"; }
  /// A new session once the unplugged twin is back (Firmware::present).
  Result<void> reopen() override;

  twin::Firmware& firmware() { return *firmware_; }

 private:
  std::shared_ptr<twin::Firmware> firmware_;
  twin::Firmware::SessionId session_;
  std::deque<std::vector<uint8_t>> replies_;
  bool cut_ = false;  // the twin was unplugged (Firmware::link_cut): nothing gets through
};

}  // namespace xbar
