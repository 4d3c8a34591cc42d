#include "xbar/drivers/inprocess_transport.h"

#include <fmt/format.h>

namespace xbar {

InProcessTransport::InProcessTransport(std::shared_ptr<fwsim::Firmware> firmware)
    : firmware_(std::move(firmware)), session_(firmware_->open_session()) {}

InProcessTransport::~InProcessTransport() { firmware_->close_session(session_); }

Result<void> InProcessTransport::send(std::span<const uint8_t> frame) {
  // The firmware answers synchronously; the replies the link delivers wait here for receive().
  for (auto& r : firmware_->exchange(session_, frame)) replies_.push_back(std::move(r));
  return {};
}

Result<std::vector<uint8_t>> InProcessTransport::receive(std::chrono::milliseconds /*timeout*/) {
  if (replies_.empty())
    return make_error(ErrorCode::kTimeout, "in-process board: no reply pending");
  std::vector<uint8_t> r = std::move(replies_.front());
  replies_.pop_front();
  return r;
}

std::string InProcessTransport::describe() const {
  return fmt::format("in-process twin (serial {})", firmware_->info().serial);
}

}  // namespace xbar
