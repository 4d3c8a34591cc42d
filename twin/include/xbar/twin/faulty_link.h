// The test bench between the host and the twin's board (SIM_LINK, docs/protocol.md §4.12):
// which link faults are in force, the deterministic draws that decide each one (splitmix64 from
// the faults' seed), what they did, and whether an unplugged board is away. It is not the
// board: it survives the board's restarts, as a bench around a real board would.
//
// Not thread-safe: the Firmware it sits in front of serialises every call.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <span>
#include <vector>

#include "xbar/wire/messages.h"

namespace xbar::twin {

class FaultyLink {
 public:
  explicit FaultyLink(const wire::LinkFaults& faults) : faults_(faults), rng_(faults.seed) {}

  const wire::LinkFaults& faults() const { return faults_; }
  /// Puts `faults` in force and restarts the draws from their seed (SIM_LINK set).
  void set(const wire::LinkFaults& faults);
  /// True with probability p / 65536; draws nothing for p = 0.
  bool draw(uint16_t p);
  /// Flips one bit past the framing fields (magic .. length): a byte stream keeps its frame
  /// boundaries and the CRC check catches the damage, as with a USB transfer.
  void corrupt(std::vector<uint8_t>& frame);
  /// What the faults did so far (SIM_LINK's reply, with the faults in force).
  wire::SimLinkReply report() const;
  /// The counters, for the exchange that decides each fault.
  wire::SimLinkReply& counts() { return counts_; }

  /// The cable was pulled now: the board is away for faults().unplug_ms of wall time.
  void unplug();
  /// False while an unplugged board is away.
  bool present() const { return std::chrono::steady_clock::now() >= away_until_; }
  /// Back now, however long unplug_ms was.
  void plug_in() { away_until_ = {}; }

  /// Counts a PULSE_BATCH request (the whole frame) the board executes a second time: the same
  /// opcode, seq and payload (flags and CRC aside, which an acknowledging resend changes).
  void note_pulse_batch(std::span<const uint8_t> request);

 private:
  wire::LinkFaults faults_;
  uint64_t rng_ = 0;  // splitmix64 state
  wire::SimLinkReply counts_;
  std::chrono::steady_clock::time_point away_until_{};
  std::set<uint64_t> pulse_batches_seen_;  // FNV-1a of every executed PULSE_BATCH request
};

}  // namespace xbar::twin
