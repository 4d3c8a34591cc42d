#include "xbar/twin/inprocess_transport.h"

#include <fmt/format.h>

namespace xbar {

InProcessTransport::InProcessTransport(std::shared_ptr<twin::Firmware> firmware)
    : firmware_(std::move(firmware)), session_(firmware_->open_session()) {}

InProcessTransport::~InProcessTransport() { firmware_->close_session(session_); }

Result<void> InProcessTransport::send(std::span<const uint8_t> frame) {
  if (cut_) return make_error(ErrorCode::kUnavailable, "in-process board: unplugged");
  // The firmware answers synchronously; the replies the link delivers wait here for receive().
  for (auto& r : firmware_->exchange(session_, frame)) replies_.push_back(std::move(r));
  if (firmware_->link_cut(session_)) {
    cut_ = true;
    replies_.clear();
  }
  return {};
}

Result<std::vector<uint8_t>> InProcessTransport::receive(std::chrono::milliseconds /*timeout*/) {
  if (cut_) return make_error(ErrorCode::kUnavailable, "in-process board: unplugged");
  if (replies_.empty())
    return make_error(ErrorCode::kTimeout, "in-process board: no reply pending");
  std::vector<uint8_t> r = std::move(replies_.front());
  replies_.pop_front();
  return r;
}

Result<void> InProcessTransport::reopen() {
  if (!firmware_->present())
    return make_error(ErrorCode::kUnavailable, "in-process board: not plugged in again yet");
  firmware_->close_session(session_);
  session_ = firmware_->open_session();
  replies_.clear();
  cut_ = false;
  return {};
}

std::string InProcessTransport::describe() const {
  return fmt::format("in-process twin (serial {})", firmware_->info().serial);
}

}  // namespace xbar
