// The board's twin: the device side of protocol v1 (docs/protocol.md) over the chip physics
// (chip.h). One Firmware is one board: requests from every host session are executed one at a
// time, in arrival order, like the board's microcontroller does.
//
// Its parts: the opcode handlers and the board's state (here), each session's ReplyCache
// (reply_cache.h), the closed loop (LoopEngine, loop_engine.h) and, in front of it
// all, the test bench's FaultyLink (faulty_link.h), which exchange() consults and handle()
// bypasses.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "xbar/twin/chip.h"
#include "xbar/twin/faulty_link.h"
#include "xbar/twin/loop_engine.h"
#include "xbar/twin/profile.h"
#include "xbar/twin/reply_cache.h"
#include "xbar/wire/frame.h"
#include "xbar/wire/loop_program.h"
#include "xbar/wire/messages.h"

namespace xbar::twin {

struct FirmwareOptions {
  uint64_t chip_seed = 1;   // fixes the devices and faults (the chip serial is derived from it)
  uint64_t noise_seed = 1;  // fixes every cycle-to-cycle, relaxation and read draw
  wire::LinkFaults link;    // the link's faults from the start (SIM_LINK changes them)
};

/// \context Any thread: every public method is thread-safe (one mutex serialises the board,
/// as its microcontroller does), except chip_for_testing(), which tests use with no request in
/// flight.
class Firmware {
 public:
  using SessionId = uint32_t;
  static constexpr size_t kReplyCacheDepth = ReplyCache::kDepth;

  Firmware(ChipProfile profile, FirmwareOptions options);

  /// Opens a host session with its own reply cache (one per USB host or socket connection).
  /// Thread-safe.
  SessionId open_session();
  /// Forgets a session's reply cache. Thread-safe.
  void close_session(SessionId id);

  /// Executes one request frame and returns the reply frame. Never throws; malformed input
  /// gets an error reply. A request whose sequence number and bytes match one of the session's
  /// last kReplyCacheDepth requests is answered from the cache, not executed again.
  /// Thread-safe: all sessions are serialised.
  std::vector<uint8_t> handle(SessionId id, std::span<const uint8_t> request);

  /// One request through the link (docs/protocol.md §4.12): with the link's faults off, the
  /// reply of handle(); with them on, the request may be dropped or corrupted on its way in,
  /// the reply dropped, corrupted, duplicated or held back until after the next request's,
  /// and the board may restart. Returns the frames the host receives, in order (0, 1 or more).
  /// Transports use this; handle() is the fault-free board. Thread-safe.
  std::vector<std::vector<uint8_t>> exchange(SessionId id, std::span<const uint8_t> request);

  /// A power glitch: the volatile state (every session's reply cache, loop programs, an open
  /// run) is lost, the conductances and the clock are kept. Each session's next request other
  /// than INFO, STATUS or SIM_* is refused with RESTARTED, not executed, until one carries
  /// the ACK_RESTART flag. Thread-safe.
  void restart();

  /// True once the link's faults unplugged the board (LinkFaults::unplug) while this session
  /// was open: the session's link is cut for good, and its transport must drop it (close the
  /// socket, fail with "unplugged") and open a new session when present() again. Thread-safe.
  bool link_cut(SessionId id);
  /// False while an unplugged board is away (LinkFaults::unplug_ms of wall time). Thread-safe.
  bool present();
  /// The test bench plugs an unplugged board back in now, however long unplug_ms was: the
  /// board is present() again (sessions cut by the unplug stay cut). Thread-safe.
  void plug_in();

  /// The INFO reply this board gives (serial, geometry, converter facts). Thread-safe.
  const wire::InfoReply& info() const { return info_; }
  /// Serial derived from the chip seed: "XS" + 14 hex digits.
  static std::string serial_for_seed(uint64_t chip_seed);

  /// Direct access for tests and benchmarks of the physics; not thread-safe against handle().
  Chip& chip_for_testing() { return chip_; }

 private:
  struct Session {
    ReplyCache cache;
    bool restarted = false;                  // refuse the next stateful request
    std::vector<std::vector<uint8_t>> held;  // delayed replies, delivered after the next one
    bool cut = false;                        // unplugged while open (link_cut)
  };

  std::vector<uint8_t> execute(SessionId session, const wire::Frame& req);
  std::vector<uint8_t> error_reply(const wire::Header& req, wire::BoardErrorCode code,
                                   std::string msg);
  std::vector<uint8_t> ok_reply(const wire::Header& req, std::span<const uint8_t> payload);

  std::vector<uint8_t> do_info(const wire::Frame& f);
  std::vector<uint8_t> do_status(const wire::Frame& f);
  std::vector<uint8_t> do_read(const wire::Frame& f);
  std::vector<uint8_t> do_pulse_batch(const wire::Frame& f);
  std::vector<uint8_t> do_vmm(const wire::Frame& f);
  std::vector<uint8_t> do_wait(const wire::Frame& f);
  std::vector<uint8_t> do_sim_fault_map(const wire::Frame& f);
  std::vector<uint8_t> do_sim_ground_truth(const wire::Frame& f);
  std::vector<uint8_t> do_sim_inject_fault(const wire::Frame& f);
  std::vector<uint8_t> do_sim_clock(const wire::Frame& f);
  std::vector<uint8_t> do_sim_link(const wire::Frame& f);
  std::vector<uint8_t> handle_locked(SessionId id, std::span<const uint8_t> request);
  void restart_locked();
  void unplug_locked();
  std::vector<uint8_t> do_loop_load(const wire::Frame& f);
  std::vector<uint8_t> do_loop_run(SessionId session, const wire::Frame& f);

  std::mutex mu_;
  ChipProfile profile_;
  Chip chip_;
  wire::InfoReply info_;
  std::map<SessionId, Session> sessions_;
  SessionId next_session_ = 1;
  uint16_t last_error_ = 0;
  uint64_t ops_executed_ = 0;
  uint32_t replays_served_ = 0;

  // The test bench's link in front of the board (SIM_LINK); survives restarts.
  FaultyLink link_;

  LoopEngine loop_;  // closed loop (docs/protocol.md §4.10, docs/firmware.md §6)
};

}  // namespace xbar::twin
