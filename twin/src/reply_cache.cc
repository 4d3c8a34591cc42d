#include "xbar/twin/reply_cache.h"

#include <algorithm>

namespace xbar::twin {

ReplyCache::Lookup ReplyCache::find(uint32_t seq, std::span<const uint8_t> request,
                                    const std::vector<uint8_t>** reply) const {
  for (const Entry& e : entries_) {
    if (e.seq != seq) continue;
    if (std::equal(e.request.begin(), e.request.end(), request.begin(), request.end())) {
      *reply = &e.reply;
      return Lookup::kReplay;
    }
    return Lookup::kSeqReused;
  }
  return Lookup::kMiss;
}

void ReplyCache::store(uint32_t seq, std::span<const uint8_t> request, std::vector<uint8_t> reply) {
  entries_.push_back({seq, std::vector<uint8_t>(request.begin(), request.end()), std::move(reply)});
  if (entries_.size() > kDepth) entries_.pop_front();
}

}  // namespace xbar::twin
