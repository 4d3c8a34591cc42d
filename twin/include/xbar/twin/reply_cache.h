// One host session's reply cache: the board's half of the retry rule (docs/protocol.md §5).
// A request whose sequence number and bytes match one of the session's last kDepth requests is
// answered with the reply it got then, never executed twice; the same sequence number with
// other bytes is a host bug (SEQ_REUSED).
//
// Not thread-safe: the Firmware that owns it serialises every session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace xbar::twin {

class ReplyCache {
 public:
  static constexpr size_t kDepth = 8;

  enum class Lookup {
    kMiss,       // not a retry: execute it, then store()
    kReplay,     // a retry: answer with *reply
    kSeqReused,  // the seq of a cached request, other bytes
  };
  /// What the cache knows of `request` (the whole frame) sent with `seq`; on kReplay, `*reply`
  /// points into the cache until the next store() or clear().
  Lookup find(uint32_t seq, std::span<const uint8_t> request,
              const std::vector<uint8_t>** reply) const;
  /// Remembers an executed request and its reply, forgetting the oldest beyond kDepth.
  void store(uint32_t seq, std::span<const uint8_t> request, std::vector<uint8_t> reply);
  /// Forgets everything (a board restart).
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    uint32_t seq = 0;
    std::vector<uint8_t> request;  // the whole request frame: a replay must match byte for byte
    std::vector<uint8_t> reply;
  };
  std::deque<Entry> entries_;
};

}  // namespace xbar::twin
