#include "xbar/twin/faulty_link.h"

#include "xbar/wire/frame.h"

namespace xbar::twin {

void FaultyLink::set(const wire::LinkFaults& faults) {
  faults_ = faults;
  rng_ = faults.seed;
}

bool FaultyLink::draw(uint16_t p) {
  if (p == 0) return false;
  // splitmix64: a fixed, portable sequence from the link seed.
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (z & 0xffff) < p;
}

void FaultyLink::corrupt(std::vector<uint8_t>& frame) {
  constexpr size_t kFirst = wire::kOffsetCrc;
  if (frame.size() <= kFirst) return;
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ULL;
  frame[kFirst + (z >> 8) % (frame.size() - kFirst)] ^= static_cast<uint8_t>(1u << (z % 8));
}

wire::SimLinkReply FaultyLink::report() const {
  wire::SimLinkReply r = counts_;
  r.faults = faults_;
  return r;
}

void FaultyLink::unplug() {
  ++counts_.unplugs;
  away_until_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(faults_.unplug_ms);
}

void FaultyLink::note_pulse_batch(std::span<const uint8_t> request) {
  // FNV-1a over the request as the host meant it: opcode, seq and payload.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < request.size(); ++i) {
    const bool flags = i == wire::kOffsetFlags || i == wire::kOffsetFlags + 1;
    if (flags || (i >= wire::kOffsetCrc && i < wire::kHeaderSize)) continue;
    h = (h ^ request[i]) * 0x100000001b3ULL;
  }
  if (!pulse_batches_seen_.insert(h).second) ++counts_.pulse_batches_repeated;
}

}  // namespace xbar::twin
