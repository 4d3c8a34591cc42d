#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <optional>
#include <string_view>

#include "xbar/a0/commands.h"

namespace xbar::a0 {

namespace {

using Bytes = std::vector<uint8_t>;
using Encoded = std::expected<Bytes, std::string>;

// Binary payloads follow a marker byte and a comma (cmd.c skips both with ptr += 2).
constexpr uint8_t kMaskMarker = 0x01;  // 303, 403
constexpr uint8_t kCodesMarker = '0';  // 405

std::string range_error(std::string_view field, uint64_t v, std::string_view allowed) {
  return fmt::format("{} = {}: allowed {}", field, v, allowed);
}

std::expected<void, std::string> check_device(uint8_t array, uint8_t row, uint8_t col) {
  if (array >= kArrays) return std::unexpected(range_error("array", array, "0..2"));
  if (row >= kRows) return std::unexpected(range_error("row", row, "0..63"));
  if (col >= kCols) return std::unexpected(range_error("col", col, "0..63"));
  return {};
}

Bytes text(const std::string& s) {
  Bytes b(s.begin(), s.end());
  b.push_back(0);
  return b;
}

// The header "CODE,f1,...,fn," then the marker and a comma, the payload and the NUL.
Bytes with_payload(const std::string& header, uint8_t marker, std::span<const uint8_t> payload) {
  Bytes b(header.begin(), header.end());
  b.push_back(marker);
  b.push_back(',');
  b.insert(b.end(), payload.begin(), payload.end());
  b.push_back(0);
  return b;
}

Encoded sized(Bytes b, int code) {
  if (b.size() > kMaxCommandBytes) {
    return std::unexpected(
        fmt::format("command {} is {} bytes: allowed at most {} (the board's "
                    "command buffer)",
                    code, b.size(), kMaxCommandBytes));
  }
  return b;
}

int dpe_mode(const DpeBatch& d) {
  return (d.float_unselected ? 1 : 0) | (d.gain == GainMode::kAuto ? 2 : 0);
}

Encoded encode_one(const Echo&) { return text("103"); }

Encoded encode_one(const DacWrite& d) {
  // The host code sends the word byte-swapped, in decimal; the PIC's atoi gives it back, and
  // its little-endian bytes go out on SPI most significant first (drv_gpio.py spi_dac_write).
  return text(fmt::format("214,{}", std::byteswap(d.word)));
}

Encoded encode_one(const ScanWrite& s) {
  if (s.chain > 2) return std::unexpected(range_error("chain", s.chain, "0..2"));
  if (s.data.empty() || s.data.size() > kMaxScanBytes) {
    return std::unexpected(range_error("scan bytes", s.data.size(), "1..120"));
  }
  return sized(with_payload(fmt::format("303,{},{},", s.chain, s.data.size()), kMaskMarker, s.data),
               303);
}

Encoded encode_one(const PinWrite& p) {
  if (p.port < 'A' || p.port > 'K' || p.port == 'I') {
    return std::unexpected(fmt::format("port = '{}': allowed A..K without I", p.port));
  }
  if (p.bit > 15) return std::unexpected(range_error("bit", p.bit, "0..15"));
  return text(fmt::format("{},{},{}", p.high ? 211 : 212, p.port, p.bit));
}

Encoded encode_one(const ReadSingle& r) {
  if (auto ok = check_device(r.array, r.row, r.col); !ok) return std::unexpected(ok.error());
  return text(fmt::format("401,{},{},{},{}", r.array, r.row, r.col, static_cast<int>(r.gain)));
}

Encoded encode_one(const ReadBatch& r) {
  if (r.array >= kArrays) return std::unexpected(range_error("array", r.array, "0..2"));
  return text(fmt::format("402,{},{},{}", r.array, static_cast<int>(r.gain), r.t_delay_us));
}

Encoded encode_one(const DpeBatch& d) {
  if (d.array >= kArrays) return std::unexpected(range_error("array", d.array, "0..2"));
  if (d.row_masks.empty() || d.row_masks.size() > kMaxDpeVectors) {
    return std::unexpected(range_error("row_masks", d.row_masks.size(), "1..60 vectors"));
  }
  Bytes masks;
  masks.reserve(d.row_masks.size() * 8);
  for (uint64_t m : d.row_masks) {  // big-endian, as struct.pack('>Q')
    for (int i = 7; i >= 0; --i) masks.push_back(static_cast<uint8_t>(m >> (8 * i)));
  }
  return sized(with_payload(fmt::format("403,{},{},{},{},", d.array, d.row_masks.size(),
                                        dpe_mode(d), d.t_delay_us),
                            kMaskMarker, masks),
               403);
}

Encoded encode_one(const WriteSingle& w) {
  if (auto ok = check_device(w.array, w.row, w.col); !ok) return std::unexpected(ok.error());
  return text(fmt::format("404,{},{},{},{},{},{}", w.array, w.row, w.col, static_cast<int>(w.mode),
                          w.v_write_code, w.v_gate_code));
}

Encoded encode_one(const WriteBatchPart& w) {
  if (w.array >= kArrays) return std::unexpected(range_error("array", w.array, "0..2"));
  if (w.row > kLastWriteBatchRow || w.row % 2 != 0) {
    return std::unexpected(range_error("row", w.row, "0, 2, ..., 126"));
  }
  if (w.codes.size() != 2 * kCols) {
    return std::unexpected(range_error("codes", w.codes.size(), "exactly 128 (2 rows x 64)"));
  }
  Bytes payload(w.codes.size() * 2);
  std::memcpy(payload.data(), w.codes.data(), payload.size());  // little-endian uint16
  return sized(with_payload(fmt::format("405,{},{},{},", w.array, static_cast<int>(w.mode), w.row),
                            kCodesMarker, payload),
               405);
}

Encoded encode_one(const WriteSingleExt& w) {
  if (auto ok = check_device(w.array, w.row, w.col); !ok) return std::unexpected(ok.error());
  return text(fmt::format("406,{},{},{},{},{},{},{},{}", w.array, w.row, w.col,
                          static_cast<int>(w.mode), w.v_write_code, w.v_gate_code, w.v_zero_code,
                          w.t_width_us));
}

// ---- parsing a byte stream ----

// Reads the stream's comma-separated text fields; a field ends at ',' or NUL.
class FieldReader {
 public:
  explicit FieldReader(std::span<const uint8_t> s) : s_(s) {}

  enum class Got { kField, kEnd, kNeedMore };
  // One field into `out`; kEnd when it ended at the command's NUL.
  Got next(std::string_view& out) {
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != 0) ++pos_;
    if (pos_ == s_.size()) return Got::kNeedMore;
    out = std::string_view(reinterpret_cast<const char*>(s_.data()) + start, pos_ - start);
    return s_[pos_++] == 0 ? Got::kEnd : Got::kField;
  }
  size_t pos() const { return pos_; }
  std::span<const uint8_t> rest() const { return s_.subspan(pos_); }
  void skip(size_t n) { pos_ += n; }

 private:
  std::span<const uint8_t> s_;
  size_t pos_ = 0;
};

Parsed need_more() { return {}; }

// A bad command: consumed up to and including the next NUL (or everything seen, if none yet:
// the caller keeps feeding and the garbage is dropped as it comes).
Parsed bad(std::span<const uint8_t> stream, std::string why) {
  Parsed p;
  p.status = Parsed::Status::kBad;
  const auto nul = std::find(stream.begin(), stream.end(), uint8_t{0});
  p.consumed = nul == stream.end() ? stream.size() : static_cast<size_t>(nul - stream.begin()) + 1;
  p.error = std::move(why);
  return p;
}

std::expected<uint64_t, std::string> number(std::string_view f, std::string_view name,
                                            uint64_t max) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (f.empty() || ec != std::errc() || end != f.data() + f.size()) {
    return std::unexpected(fmt::format("{} = '{}': not a decimal number", name, f));
  }
  if (v > max) return std::unexpected(range_error(name, v, fmt::format("0..{}", max)));
  return v;
}

// The text fields of a command after its code: exactly `n` of them. With `then_payload`, the
// last is followed by the payload's marker (the field list ends with ',').
struct Fields {
  std::vector<std::string_view> values;
  Parsed::Status status = Parsed::Status::kOk;
  std::string error;
};

Fields read_fields(FieldReader& r, size_t n, bool then_payload) {
  Fields out;
  for (size_t i = 0; i < n; ++i) {
    std::string_view f;
    const FieldReader::Got g = r.next(f);
    if (g == FieldReader::Got::kNeedMore) return {{}, Parsed::Status::kNeedMore, {}};
    out.values.push_back(f);
    const bool last = i + 1 == n;
    if (g == FieldReader::Got::kEnd && !(last && !then_payload)) {
      return {{}, Parsed::Status::kBad, fmt::format("{} fields where {} are needed", i + 1, n)};
    }
    if (g == FieldReader::Got::kField && last && !then_payload) {
      return {{}, Parsed::Status::kBad, fmt::format("more than {} fields", n)};
    }
  }
  return out;
}

// The payload after the text fields: marker, ',', `len` bytes, NUL.
struct Payload {
  std::span<const uint8_t> bytes;
  Parsed::Status status = Parsed::Status::kOk;
  std::string error;
};

Payload read_payload(FieldReader& r, uint8_t marker, size_t len) {
  const auto rest = r.rest();
  if (rest.size() < len + 3) return {{}, Parsed::Status::kNeedMore, {}};
  if (rest[0] != marker || rest[1] != ',') {
    return {{}, Parsed::Status::kBad, fmt::format("payload marker {:#04x} ',' missing", marker)};
  }
  if (rest[len + 2] != 0) {
    return {{}, Parsed::Status::kBad, "payload not followed by NUL (wrong length?)"};
  }
  r.skip(len + 3);
  return {rest.subspan(2, len)};
}

class CommandParser {
 public:
  explicit CommandParser(std::span<const uint8_t> s) : s_(s), r_(s) {}

  Parsed run() {
    std::string_view code_field;
    const FieldReader::Got g = r_.next(code_field);
    if (g == FieldReader::Got::kNeedMore) return need_more();
    auto code = number(code_field, "command", 999);
    if (!code) return bad(s_, code.error());
    const bool ended = g == FieldReader::Got::kEnd;
    switch (*code) {
      case 103:
        return ended ? ok(Echo{}) : bad(s_, "command 103 takes no fields");
      case 214:
        return ended ? bad(s_, "command 214: no DAC word") : dac();
      case 211:
      case 212:
        return ended ? bad(s_, "command 21x: no port") : pin(*code == 211);
      case 303:
      case 401:
      case 402:
      case 403:
      case 404:
      case 405:
      case 406:
        if (ended) return bad(s_, fmt::format("command {}: no fields", *code));
        return array_command(static_cast<int>(*code));
      default:
        return bad(s_, fmt::format("command {}: not one the board knows (no reply)", *code));
    }
  }

 private:
  Parsed ok(Command c) {
    Parsed p;
    p.status = Parsed::Status::kOk;
    p.command = std::move(c);
    p.consumed = r_.pos();
    return p;
  }

  // Reads `n` fields; on success leaves them in f_.
  std::optional<Parsed> fields(size_t n, bool then_payload = false) {
    Fields f = read_fields(r_, n, then_payload);
    if (f.status == Parsed::Status::kNeedMore) return need_more();
    if (f.status == Parsed::Status::kBad) return bad(s_, f.error);
    f_ = std::move(f.values);
    return std::nullopt;
  }

  // A payload that is incomplete or malformed ends the parse.
  std::optional<Parsed> unless_ok(const Payload& pl) {
    if (pl.status == Parsed::Status::kNeedMore) return need_more();
    if (pl.status == Parsed::Status::kBad) return bad(s_, pl.error);
    return std::nullopt;
  }

  template <typename T>
  std::optional<Parsed> num(size_t i, std::string_view name, uint64_t max, T& out) {
    auto v = number(f_[i], name, max);
    if (!v) return bad(s_, v.error());
    out = static_cast<T>(*v);
    return std::nullopt;
  }

  Parsed dac() {
    if (auto p = fields(1)) return *p;
    uint32_t swapped = 0;
    if (auto p = num(0, "DAC word", UINT32_MAX, swapped)) return *p;
    return ok(DacWrite{std::byteswap(swapped)});
  }

  Parsed pin(bool high) {
    if (auto p = fields(2)) return *p;
    PinWrite w;
    w.high = high;
    if (f_[0].size() != 1 || f_[0][0] < 'A' || f_[0][0] > 'K' || f_[0][0] == 'I') {
      return bad(s_, fmt::format("port = '{}': allowed A..K without I", f_[0]));
    }
    w.port = f_[0][0];
    if (auto p = num(1, "bit", 15, w.bit)) return *p;
    return ok(w);
  }

  Parsed array_command(int code) {
    switch (code) {
      case 303:
        return scan();
      case 401:
        return read_single();
      case 402:
        return read_batch();
      case 403:
        return dpe();
      case 404:
        return write_single();
      case 405:
        return write_batch();
      default:
        return write_single_ext();
    }
  }

  Parsed scan() {
    if (auto p = fields(2, true)) return *p;
    ScanWrite s;
    size_t n = 0;
    if (auto p = num(0, "chain", 2, s.chain)) return *p;
    if (auto p = num(1, "scan bytes", kMaxScanBytes, n)) return *p;
    if (n == 0) return bad(s_, "scan bytes = 0: allowed 1..120");
    Payload pl = read_payload(r_, kMaskMarker, n);
    if (auto p = unless_ok(pl)) return *p;
    s.data.assign(pl.bytes.begin(), pl.bytes.end());
    return ok(std::move(s));
  }

  std::optional<Parsed> device(uint8_t& array, uint8_t& row, uint8_t& col) {
    if (auto p = num(0, "array", kArrays - 1, array)) return p;
    if (auto p = num(1, "row", kRows - 1, row)) return p;
    return num(2, "col", kCols - 1, col);
  }

  Parsed read_single() {
    if (auto p = fields(4)) return *p;
    ReadSingle r;
    if (auto p = device(r.array, r.row, r.col)) return *p;
    if (auto p = num(3, "mode", 1, r.gain)) return *p;
    return ok(r);
  }

  Parsed read_batch() {
    if (auto p = fields(3)) return *p;
    ReadBatch r;
    if (auto p = num(0, "array", kArrays - 1, r.array)) return *p;
    if (auto p = num(1, "mode", 1, r.gain)) return *p;
    if (auto p = num(2, "t_delay_us", UINT32_MAX, r.t_delay_us)) return *p;
    return ok(r);
  }

  Parsed dpe() {
    if (auto p = fields(4, true)) return *p;
    DpeBatch d;
    size_t n = 0;
    int mode = 0;
    if (auto p = num(0, "array", kArrays - 1, d.array)) return *p;
    if (auto p = num(1, "vectors", kMaxDpeVectors, n)) return *p;
    if (n == 0) return bad(s_, "vectors = 0: allowed 1..60");
    if (auto p = num(2, "mode", 3, mode)) return *p;
    if (auto p = num(3, "t_delay_us", UINT32_MAX, d.t_delay_us)) return *p;
    d.float_unselected = (mode & 1) != 0;
    d.gain = (mode & 2) != 0 ? GainMode::kAuto : GainMode::kFixed;
    Payload pl = read_payload(r_, kMaskMarker, 8 * n);
    if (auto p = unless_ok(pl)) return *p;
    for (size_t v = 0; v < n; ++v) {
      uint64_t m = 0;
      for (size_t i = 0; i < 8; ++i) m = (m << 8) | pl.bytes[8 * v + i];
      d.row_masks.push_back(m);
    }
    return ok(std::move(d));
  }

  // The fields 404 and 406 start with: the device, the polarity and the two DAC codes.
  template <typename W>
  std::optional<Parsed> pulse(W& w) {
    if (auto p = device(w.array, w.row, w.col)) return p;
    if (auto p = num(3, "mode", 1, w.mode)) return p;
    if (auto p = num(4, "v_write_code", UINT16_MAX, w.v_write_code)) return p;
    return num(5, "v_gate_code", UINT16_MAX, w.v_gate_code);
  }

  Parsed write_single() {
    if (auto p = fields(6)) return *p;
    WriteSingle w;
    if (auto p = pulse(w)) return *p;
    return ok(w);
  }

  Parsed write_batch() {
    if (auto p = fields(3, true)) return *p;
    WriteBatchPart w;
    if (auto p = num(0, "array", kArrays - 1, w.array)) return *p;
    if (auto p = num(1, "mode", 1, w.mode)) return *p;
    if (auto p = num(2, "row", kLastWriteBatchRow, w.row)) return *p;
    if (w.row % 2 != 0) return bad(s_, range_error("row", w.row, "0, 2, ..., 126"));
    Payload pl = read_payload(r_, kCodesMarker, 4 * kCols);
    if (auto p = unless_ok(pl)) return *p;
    w.codes.resize(2 * kCols);
    std::memcpy(w.codes.data(), pl.bytes.data(), pl.bytes.size());
    return ok(std::move(w));
  }

  Parsed write_single_ext() {
    if (auto p = fields(8)) return *p;
    WriteSingleExt w;
    if (auto p = pulse(w)) return *p;
    if (auto p = num(6, "v_zero_code", UINT16_MAX, w.v_zero_code)) return *p;
    if (auto p = num(7, "t_width_us", UINT32_MAX, w.t_width_us)) return *p;
    return ok(w);
  }

  std::span<const uint8_t> s_;
  FieldReader r_;
  std::vector<std::string_view> f_;
};

}  // namespace

int command_code(const Command& c) {
  static constexpr int kCodes[] = {103, 214, 303, 0, 401, 402, 403, 404, 405, 406};
  if (const auto* p = std::get_if<PinWrite>(&c)) return p->high ? 211 : 212;
  return kCodes[c.index()];
}

std::expected<std::vector<uint8_t>, std::string> encode(const Command& c) {
  return std::visit([](const auto& cmd) { return encode_one(cmd); }, c);
}

size_t reply_bytes(const Command& c) {
  struct Size {
    size_t operator()(const Echo&) const { return 64 * 4; }
    size_t operator()(const DacWrite&) const { return 0; }
    size_t operator()(const ScanWrite&) const { return 1; }
    size_t operator()(const PinWrite&) const { return 0; }
    size_t operator()(const ReadSingle&) const { return 2; }
    size_t operator()(const ReadBatch&) const { return rows_reply_bytes(kRows); }
    size_t operator()(const DpeBatch& d) const {
      return rows_reply_bytes(static_cast<int>(d.row_masks.size()));
    }
    size_t operator()(const WriteSingle&) const { return 1; }
    size_t operator()(const WriteBatchPart& w) const { return w.row == kLastWriteBatchRow; }
    size_t operator()(const WriteSingleExt&) const { return 1; }
  };
  return std::visit(Size{}, c);
}

Parsed parse_command(std::span<const uint8_t> stream) {
  if (stream.empty()) return need_more();
  return CommandParser(stream).run();
}

std::vector<uint8_t> encode_rows(std::span<const uint16_t> values) {
  const int rows = static_cast<int>((values.size() + kCols - 1) / kCols);
  std::vector<uint8_t> out(rows_reply_bytes(rows), 0);
  std::memcpy(out.data(), values.data(), values.size() * 2);
  return out;
}

std::expected<std::vector<uint16_t>, std::string> decode_rows(std::span<const uint8_t> reply,
                                                              int rows) {
  if (reply.size() != rows_reply_bytes(rows)) {
    return std::unexpected(fmt::format("reply of {} bytes for {} rows: expected {}", reply.size(),
                                       rows, rows_reply_bytes(rows)));
  }
  std::vector<uint16_t> v(static_cast<size_t>(rows) * kCols);
  std::memcpy(v.data(), reply.data(), v.size() * 2);
  return v;
}

}  // namespace xbar::a0
