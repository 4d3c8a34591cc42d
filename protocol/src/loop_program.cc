#include "xbar/wire/loop_program.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <set>

#include "xbar/wire/bytes.h"

namespace xbar::wire {

namespace {

constexpr size_t kProgramHeader = 8;
constexpr size_t kTapBytes = 6, kRouteBytes = 8, kOutputBytes = 2, kFixBytes = 6;
constexpr size_t kRunHeader = 16;

}  // namespace

std::vector<uint8_t> LoopLoadRequest::encode() const {
  ByteWriter w;
  w.put(static_cast<uint8_t>(programs.size()));
  w.put(uint8_t{0});
  w.put(uint16_t{0});
  for (const LoopProgram& p : programs) {
    w.put(p.array);
    w.put(p.gain_index);
    w.put(static_cast<uint8_t>(p.taps.size()));
    w.put(static_cast<uint8_t>(p.routes.size()));
    w.put(static_cast<uint8_t>(p.outputs.size()));
    w.put(p.clamp);
    w.put(p.flags);
    for (const LoopTap& t : p.taps) {
      w.put(t.row_pos);
      w.put(t.row_neg);
      w.put(t.mul);
      w.put(t.shift);
      w.put(uint8_t{0});
    }
    for (const LoopRoute& r : p.routes) {
      w.put(r.col_pos);
      w.put(r.col_neg);
      w.put(r.row_pos);
      w.put(r.row_neg);
      w.put(r.mul);
      w.put(r.shift);
      w.put(uint8_t{0});
    }
    for (const LoopOutput& o : p.outputs) {
      w.put(o.col_pos);
      w.put(o.col_neg);
    }
    if (p.flags & kLoopDeviceFixes) {
      w.put(static_cast<uint16_t>(p.fixes.size()));
      w.put(uint16_t{0});
      for (const LoopFix& f : p.fixes) {
        w.put(f.row);
        w.put(f.col);
        w.put(f.mul);
        w.put(f.shift);
        w.put(uint8_t{0});
      }
    }
  }
  return w.take();
}

Decoded<LoopLoadRequest> decode_loop_load_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  LoopLoadRequest q;
  const uint8_t n = r.get<uint8_t>();
  (void)r.get<uint8_t>();
  (void)r.get<uint16_t>();
  for (uint8_t i = 0; i < n && r.ok(); ++i) {
    LoopProgram prog;
    prog.array = r.get<uint8_t>();
    prog.gain_index = r.get<uint8_t>();
    const uint8_t n_in = r.get<uint8_t>(), n_fb = r.get<uint8_t>(), n_out = r.get<uint8_t>();
    prog.clamp = r.get<uint8_t>();
    prog.flags = r.get<uint16_t>();
    if (n_in > kMaxLoopTaps || n_fb > kMaxLoopRoutes || n_out > kMaxLoopOutputs) {
      return std::unexpected(fmt::format(
          "LOOP_LOAD program {}: n_in = {}, n_fb = {}, n_out = {}: allowed 0..{}, 0..{}, 0..{}", i,
          n_in, n_fb, n_out, kMaxLoopTaps, kMaxLoopRoutes, kMaxLoopOutputs));
    }
    for (uint8_t k = 0; k < n_in; ++k) {
      LoopTap t;
      t.row_pos = r.get<uint8_t>();
      t.row_neg = r.get<uint8_t>();
      t.mul = r.get<int16_t>();
      t.shift = r.get<uint8_t>();
      (void)r.get<uint8_t>();
      prog.taps.push_back(t);
    }
    for (uint8_t k = 0; k < n_fb; ++k) {
      LoopRoute t;
      t.col_pos = r.get<uint8_t>();
      t.col_neg = r.get<uint8_t>();
      t.row_pos = r.get<uint8_t>();
      t.row_neg = r.get<uint8_t>();
      t.mul = r.get<int16_t>();
      t.shift = r.get<uint8_t>();
      (void)r.get<uint8_t>();
      prog.routes.push_back(t);
    }
    for (uint8_t k = 0; k < n_out; ++k) {
      LoopOutput o;
      o.col_pos = r.get<uint8_t>();
      o.col_neg = r.get<uint8_t>();
      prog.outputs.push_back(o);
    }
    if (prog.flags & kLoopDeviceFixes) {
      const uint16_t n_fix = r.get<uint16_t>();
      (void)r.get<uint16_t>();
      if (n_fix > kMaxLoopFixes) {
        return std::unexpected(fmt::format("LOOP_LOAD program {}: n_fixes = {}: allowed 0..{}", i,
                                           n_fix, kMaxLoopFixes));
      }
      for (uint16_t k = 0; k < n_fix && r.ok(); ++k) {
        LoopFix f;
        f.row = r.get<uint8_t>();
        f.col = r.get<uint8_t>();
        f.mul = r.get<int16_t>();
        f.shift = r.get<uint8_t>();
        (void)r.get<uint8_t>();
        prog.fixes.push_back(f);
      }
    }
    q.programs.push_back(std::move(prog));
  }
  if (!r.done()) {
    return std::unexpected(
        fmt::format("LOOP_LOAD: payload of {} bytes does not match its {} "
                    "program(s)",
                    p.size(), n));
  }
  return q;
}

std::string check_loop_programs(const std::vector<LoopProgram>& programs, int arrays, int rows,
                                int cols, int n_gains) {
  if (programs.empty() || static_cast<int>(programs.size()) > arrays) {
    return fmt::format("LOOP_LOAD.n_programs = {}: allowed 1..{}", programs.size(), arrays);
  }
  for (size_t i = 0; i < programs.size(); ++i) {
    const LoopProgram& p = programs[i];
    const std::string at = fmt::format("LOOP_LOAD program {}", i);
    if (p.array >= arrays)
      return fmt::format("{}: array = {}: allowed 0..{}", at, p.array, arrays - 1);
    if (i > 0 && p.array <= programs[i - 1].array) {
      return fmt::format("{}: array = {}: arrays must be strictly increasing", at, p.array);
    }
    if (p.gain_index >= n_gains) {
      return fmt::format("{}: gain_index = {}: allowed 0..{}", at, p.gain_index, n_gains - 1);
    }
    if (p.clamp < 1) return fmt::format("{}: clamp = 0: allowed 1..255", at);
    if (p.flags & ~(kLoopErrorFeedback | kLoopDeviceFixes)) {
      return fmt::format("{}: flags = 0x{:04x}: allowed bits 0 (ERROR_FEEDBACK), 1 (DEVICE_FIXES)",
                         at, p.flags);
    }
    if (!(p.flags & kLoopDeviceFixes) && !p.fixes.empty()) {
      return fmt::format("{}: {} fixes without flag bit 1 (DEVICE_FIXES)", at, p.fixes.size());
    }
    if (p.fixes.size() > static_cast<size_t>(kMaxLoopFixes)) {
      return fmt::format("{}: n_fixes = {}: allowed 0..{}", at, p.fixes.size(), kMaxLoopFixes);
    }
    for (size_t k = 0; k < p.fixes.size(); ++k) {
      const LoopFix& f = p.fixes[k];
      if (f.row >= rows || f.col >= cols) {
        return fmt::format("{}: fixes[{}]: row {}, col {}: allowed 0..{}, 0..{}", at, k, f.row,
                           f.col, rows - 1, cols - 1);
      }
      if (f.shift > 31)
        return fmt::format("{}: fixes[{}].shift = {}: allowed 0..31", at, k, f.shift);
    }
    std::set<int> used_rows;
    auto row = [&](const char* what, size_t k, const char* field, int r) -> std::string {
      if (r >= rows)
        return fmt::format("{}: {}[{}].{} = {}: allowed 0..{}", at, what, k, field, r, rows - 1);
      if (!used_rows.insert(r).second) {
        return fmt::format("{}: {}[{}].{} = {}: row already used by this program", at, what, k,
                           field, r);
      }
      return {};
    };
    auto col = [&](const char* what, size_t k, int cp, int cn) -> std::string {
      if (cp >= cols || cn >= cols) {
        return fmt::format("{}: {}[{}]: columns {}, {}: allowed 0..{}", at, what, k, cp, cn,
                           cols - 1);
      }
      if (cp == cn) return fmt::format("{}: {}[{}]: col_pos = col_neg = {}", at, what, k, cp);
      return {};
    };
    for (size_t k = 0; k < p.taps.size(); ++k) {
      const LoopTap& t = p.taps[k];
      for (auto e : {row("taps", k, "row_pos", t.row_pos), row("taps", k, "row_neg", t.row_neg)}) {
        if (!e.empty()) return e;
      }
      if (t.shift > 31)
        return fmt::format("{}: taps[{}].shift = {}: allowed 0..31", at, k, t.shift);
    }
    for (size_t k = 0; k < p.routes.size(); ++k) {
      const LoopRoute& t = p.routes[k];
      for (auto e : {row("routes", k, "row_pos", t.row_pos), row("routes", k, "row_neg", t.row_neg),
                     col("routes", k, t.col_pos, t.col_neg)}) {
        if (!e.empty()) return e;
      }
      if (t.shift > 31) {
        return fmt::format("{}: routes[{}].shift = {}: allowed 0..31", at, k, t.shift);
      }
    }
    for (size_t k = 0; k < p.outputs.size(); ++k) {
      if (auto e = col("outputs", k, p.outputs[k].col_pos, p.outputs[k].col_neg); !e.empty()) {
        return e;
      }
    }
  }
  return {};
}

uint16_t loop_max_block_steps(const std::vector<LoopProgram>& programs) {
  size_t in = 0, out = 0;
  for (const LoopProgram& p : programs) {
    in += p.taps.size();
    out += p.outputs.size();
  }
  size_t k = 4096;
  if (in > 0) k = std::min(k, (kMaxLoopPayload - kRunHeader) / (2 * in));
  if (out > 0) k = std::min(k, (kMaxLoopPayload - kRunHeader) / (4 * out));
  return static_cast<uint16_t>(k);
}

std::vector<uint8_t> LoopLoadReply::encode() const {
  ByteWriter w;
  w.put(max_block_steps);
  w.put(uint16_t{0});
  return w.take();
}
Decoded<LoopLoadReply> decode_loop_load_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  LoopLoadReply q;
  q.max_block_steps = r.get<uint16_t>();
  (void)r.get<uint16_t>();
  if (!r.done())
    return std::unexpected(fmt::format("LOOP_LOAD reply: {} bytes, expected 4", p.size()));
  return q;
}

std::vector<uint8_t> LoopRunRequest::encode() const {
  ByteWriter w;
  w.put(flags);
  w.put(uint8_t{0});
  w.put(n_steps);
  w.put(block_index);
  w.put(noise_tag);
  w.put(uint32_t{0});
  if (flags & kLoopResume) {
    w.put(start_step);
    w.put(static_cast<uint16_t>(state.size()));
    w.put(uint16_t{0});
    w.put_bytes({reinterpret_cast<const uint8_t*>(state.data()), state.size() * 2});
  }
  w.put_bytes({reinterpret_cast<const uint8_t*>(inputs.data()), inputs.size() * 2});
  return w.take();
}
Decoded<LoopRunRequest> decode_loop_run_request(std::span<const uint8_t> p) {
  ByteReader r(p);
  LoopRunRequest q;
  q.flags = r.get<uint8_t>();
  (void)r.get<uint8_t>();
  q.n_steps = r.get<uint16_t>();
  q.block_index = r.get<uint32_t>();
  q.noise_tag = r.get<uint32_t>();
  (void)r.get<uint32_t>();
  if (q.flags & kLoopResume) {
    q.start_step = r.get<uint32_t>();
    const auto n_state = r.get<uint16_t>();
    (void)r.get<uint16_t>();
    if (!r.ok() || r.remaining() < size_t{n_state} * 2) {
      return std::unexpected(fmt::format(
          "LOOP_RUN: payload of {} bytes: RESUME needs a 24-byte header and its state codes",
          p.size()));
    }
    auto st = r.get_bytes(size_t{n_state} * 2);
    q.state.resize(n_state);
    if (!st.empty()) std::memcpy(q.state.data(), st.data(), st.size());
  }
  if (!r.ok() || r.remaining() % 2 != 0) {
    return std::unexpected(
        fmt::format("LOOP_RUN: payload of {} bytes: a 16-byte header and "
                    "2-byte input codes needed",
                    p.size()));
  }
  auto b = r.get_bytes(r.remaining());
  q.inputs.resize(b.size() / 2);
  if (!b.empty()) std::memcpy(q.inputs.data(), b.data(), b.size());  // never memcpy(nullptr)
  return q;
}

std::vector<uint8_t> LoopRunReply::encode() const {
  ByteWriter w;
  w.put(flags);
  w.put(run_open);
  w.put(n_steps);
  w.put(block_index);
  w.put(uint32_t{0});
  w.put(uint32_t{0});
  if (flags & kLoopSnapshot) {
    w.put(next_step);
    w.put(static_cast<uint16_t>(state.size()));
    w.put(uint16_t{0});
    w.put_bytes({reinterpret_cast<const uint8_t*>(state.data()), state.size() * 2});
  }
  w.put_bytes({reinterpret_cast<const uint8_t*>(outputs.data()), outputs.size() * 4});
  return w.take();
}
Decoded<LoopRunReply> decode_loop_run_reply(std::span<const uint8_t> p) {
  ByteReader r(p);
  LoopRunReply q;
  q.flags = r.get<uint8_t>();
  q.run_open = r.get<uint8_t>();
  q.n_steps = r.get<uint16_t>();
  q.block_index = r.get<uint32_t>();
  (void)r.get<uint32_t>();
  (void)r.get<uint32_t>();
  if (q.flags & kLoopSnapshot) {
    q.next_step = r.get<uint32_t>();
    const auto n_state = r.get<uint16_t>();
    (void)r.get<uint16_t>();
    if (!r.ok() || r.remaining() < size_t{n_state} * 2) {
      return std::unexpected(fmt::format("LOOP_RUN reply: payload of {} bytes", p.size()));
    }
    auto st = r.get_bytes(size_t{n_state} * 2);
    q.state.resize(n_state);
    if (!st.empty()) std::memcpy(q.state.data(), st.data(), st.size());
  }
  if (!r.ok() || r.remaining() % 4 != 0) {
    return std::unexpected(fmt::format("LOOP_RUN reply: payload of {} bytes", p.size()));
  }
  auto b = r.get_bytes(r.remaining());
  q.outputs.resize(b.size() / 4);
  if (!b.empty()) std::memcpy(q.outputs.data(), b.data(), b.size());
  return q;
}

int64_t rshift_round(int64_t q, unsigned s) {
  if (s == 0) return q;
  const int64_t mag = ((q < 0 ? -q : q) + (int64_t{1} << (s - 1))) >> s;
  return q < 0 ? -mag : mag;
}

void loop_rows(const LoopProgram& prog, std::span<const int16_t> inputs, const LoopState& state,
               std::span<uint8_t> m) {
  std::fill(m.begin(), m.end(), uint8_t{0});
  const int64_t c = prog.clamp;
  for (size_t i = 0; i < prog.taps.size(); ++i) {
    const LoopTap& t = prog.taps[i];
    const int64_t s = std::clamp(rshift_round(int64_t{inputs[i]} * t.mul, t.shift), -c, c);
    m[t.row_pos] = static_cast<uint8_t>(std::max<int64_t>(s, 0));
    m[t.row_neg] = static_cast<uint8_t>(std::max<int64_t>(-s, 0));
  }
  for (size_t f = 0; f < prog.routes.size(); ++f) {
    const LoopRoute& r = prog.routes[f];
    const int64_t s = state.x[f];
    m[r.row_pos] = static_cast<uint8_t>(std::max<int64_t>(s, 0));
    m[r.row_neg] = static_cast<uint8_t>(std::max<int64_t>(-s, 0));
  }
}

void loop_update(const LoopProgram& prog, std::span<const uint32_t> acc, std::span<const uint8_t> m,
                 LoopState& state, std::span<int32_t> outputs) {
  const int64_t c = prog.clamp;
  const bool feedback = prog.flags & kLoopErrorFeedback;
  // Device fixes: the listed devices' known excess charge, per column (a column index is a
  // u8, so a fixed array; no allocation in the step).
  std::array<int64_t, 256> fix{};
  for (const LoopFix& f : prog.fixes) {
    if (f.row < m.size()) fix[f.col] += rshift_round(int64_t{m[f.row]} * f.mul, f.shift);
  }
  auto a = [&](uint8_t col) { return int64_t{acc[col]} - fix[col]; };
  for (size_t f = 0; f < prog.routes.size(); ++f) {
    const LoopRoute& r = prog.routes[f];
    const int64_t d = a(r.col_pos) - a(r.col_neg);
    int64_t q = d * r.mul;
    const int unit = std::max(int{r.shift} - 8, 0);  // residual unit: 2^unit
    if (feedback) q += int64_t{state.e[f]} * (int64_t{1} << unit);
    const int64_t x = std::clamp(rshift_round(q, r.shift), -c, c);
    state.x[f] = static_cast<int32_t>(x);
    if (feedback) {
      // What the rounding (and a saturation) left out, carried into the next step: at most half
      // a state code, 1/256 code resolution.
      const int64_t lim = (int64_t{1} << std::min<int>(r.shift, 8)) >> 1;
      const int64_t res = q - x * (int64_t{1} << r.shift);
      state.e[f] = static_cast<int32_t>(std::clamp(rshift_round(res, unit), -lim, lim));
    }
  }
  for (size_t o = 0; o < prog.outputs.size(); ++o) {
    outputs[o] = static_cast<int32_t>(std::clamp<int64_t>(
        a(prog.outputs[o].col_pos) - a(prog.outputs[o].col_neg), INT32_MIN, INT32_MAX));
  }
}

}  // namespace xbar::wire
