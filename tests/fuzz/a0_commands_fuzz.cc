// The A0 board's command parser (protocol/src/a0_commands.cc), which the twin's A0 personality
// runs on whatever bytes come down its tty.
//
// Input: the bytes of a stream. Properties:
//   - parse_command never reads past the stream and always makes progress on a whole stream:
//     kOk and kBad consume 1..size bytes; kNeedMore only when no NUL could end the command yet
//     or a binary payload is incomplete.
//   - a command it accepts encodes (encode() refuses nothing parse_command accepted), and the
//     encoding parses back to a command with the same encoding, consumed whole.
//   - a stream split anywhere before a command's end says kNeedMore for the prefix: a partial
//     command never becomes one.
#include <fmt/format.h>

#include "fuzz_util.h"
#include "xbar/a0/commands.h"

using namespace xbar::a0;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> rest(data, size);
  for (int guard = 0; !rest.empty() && guard < 4096; ++guard) {
    const Parsed p = parse_command(rest);
    if (p.status == Parsed::Status::kNeedMore) break;
    FUZZ_CHECK(p.consumed >= 1 && p.consumed <= rest.size(),
               fmt::format("consumed {} of {}", p.consumed, rest.size()));
    if (p.status == Parsed::Status::kOk) {
      auto bytes = encode(p.command);
      FUZZ_CHECK(bytes.has_value(), fmt::format("accepted, then refused: {}", bytes.error()));
      const Parsed again = parse_command(*bytes);
      FUZZ_CHECK(again.status == Parsed::Status::kOk && again.consumed == bytes->size(),
                 fmt::format("the encoding of code {} does not parse back: {}",
                             command_code(p.command), again.error));
      FUZZ_CHECK(encode(again.command) == bytes, "re-encoding differs");
      for (size_t cut = 0; cut < p.consumed; ++cut) {
        FUZZ_CHECK(parse_command(rest.first(cut)).status == Parsed::Status::kNeedMore,
                   fmt::format("a prefix of {} of {} bytes was not 'need more'", cut, p.consumed));
      }
    }
    rest = rest.subspan(p.consumed);
  }
  return 0;
}
